-- depends: audit_0001_audit_logs
-- Seed §6. No plaintext PII: the email is an AES-256-GCM ciphertext bound to the row
-- (loyalnest.platform.crypto) plus a keyed blind index for lookups and uniqueness.
CREATE TABLE users (
    user_id          uuid        PRIMARY KEY,
    merchant_id      text        NOT NULL,
    -- Insertion order: ListUsers pages on it.
    seq              bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    kind             text        NOT NULL CHECK (kind IN ('customer', 'staff')),
    email_ciphertext bytea,
    -- HMAC-SHA256 of (merchant, normalised email): the same email at two merchants differs.
    email_index      bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((email_ciphertext IS NULL) = (email_index IS NULL))
);
CREATE UNIQUE INDEX users_email ON users (merchant_id, email_index) WHERE email_index IS NOT NULL;
CREATE INDEX users_merchant_seq ON users (merchant_id, seq);
CREATE INDEX users_created_at ON users USING brin (created_at);

CREATE TRIGGER users_audit AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('user_id', 'user_id', 'email_ciphertext', 'email_index');

-- Roles-Service owns role assignments; this is its projection, fed by role.assigned. A table
-- of its own, not a users column: an assignment may arrive before the user it names (the
-- topics are not ordered with each other), and it must not be lost then.
CREATE TABLE user_roles (
    merchant_id text        NOT NULL,
    user_id     uuid        NOT NULL,
    role_id     uuid        NOT NULL,
    -- The assignment's time at the producer: a late, older event never overwrites a newer one.
    assigned_at timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, user_id)
);
