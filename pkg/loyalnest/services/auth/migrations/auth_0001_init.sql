-- Shops that installed the app. Shopify's tokens are AES-256-GCM ciphertexts
-- (loyalnest.platform.crypto), bound to the row's merchant_id: never stored in clear.
CREATE TABLE merchants (
    merchant_id              uuid        PRIMARY KEY,
    shop_domain              text        NOT NULL UNIQUE,
    access_token             bytea       NOT NULL,
    access_token_expires_at  timestamptz,
    -- Expiring offline tokens only: Shopify rotates it on every use.
    refresh_token            bytea,
    refresh_token_expires_at timestamptz,
    scopes                   text[]      NOT NULL DEFAULT '{}',
    status                   text        NOT NULL DEFAULT 'active'
                                         CHECK (status IN ('active', 'uninstalled')),
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX merchants_created_at ON merchants (created_at);

-- OAuth state nonces (SHA-256 of the nonce): consumed by deleting the row, so each is used once.
CREATE TABLE oauth_states (
    state_hash  bytea       PRIMARY KEY,
    shop_domain text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX oauth_states_expires_at ON oauth_states (expires_at);

-- Admin users: a password, then TOTP. merchant_id NULL = a platform admin. The email is
-- encrypted and found through its blind index; the TOTP secret is encrypted.
CREATE TABLE admin_users (
    user_id           uuid        PRIMARY KEY,
    merchant_id       uuid        REFERENCES merchants (merchant_id),
    email             bytea       NOT NULL,
    email_index       bytea       NOT NULL UNIQUE,
    password_hash     text        NOT NULL,
    permissions       text[]      NOT NULL DEFAULT '{}',
    totp_secret       bytea,
    mfa_enabled_at    timestamptz,
    -- The last TOTP time step accepted: a code is good once.
    totp_last_step    bigint,
    failed_attempts   integer     NOT NULL DEFAULT 0,
    locked_until      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX admin_users_merchant_id ON admin_users (merchant_id);

-- A sign-in: one refresh-token family. kind 'merchant' (Shopify OAuth owner session) or
-- 'admin' (password + TOTP). Revoking it ends every token of the family.
CREATE TABLE sessions (
    session_id     uuid        PRIMARY KEY,
    kind           text        NOT NULL CHECK (kind IN ('merchant', 'admin')),
    subject        text        NOT NULL,
    merchant_id    uuid,
    permissions    text[]      NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- Absolute end: refreshing never extends a session past it.
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text
);
CREATE INDEX sessions_subject ON sessions (subject);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- Refresh tokens, by SHA-256 (the tokens are 256-bit random values). Each is spent by its
-- first use (rotated_at); the access token issued with it is remembered so that revoking the
-- family can revoke the access tokens still alive.
CREATE TABLE refresh_tokens (
    token_hash        bytea       PRIMARY KEY,
    session_id        uuid        NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    issued_at         timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    rotated_at        timestamptz,
    access_jti        text        NOT NULL,
    access_expires_at timestamptz NOT NULL
);
CREATE INDEX refresh_tokens_session_id ON refresh_tokens (session_id);

-- An admin acting as a merchant, at most one hour.
CREATE TABLE impersonation_sessions (
    session_id  uuid        PRIMARY KEY,
    admin_id    uuid        NOT NULL REFERENCES admin_users (user_id),
    merchant_id uuid        NOT NULL REFERENCES merchants (merchant_id),
    reason      text        NOT NULL,
    token_id    text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL CHECK (expires_at <= created_at + interval '1 hour'),
    ended_at    timestamptz
);
CREATE INDEX impersonation_sessions_admin_id ON impersonation_sessions (admin_id);
CREATE INDEX impersonation_sessions_merchant_id ON impersonation_sessions (merchant_id);

-- Every change of a merchant (install, reinstall, token refresh) and of an impersonation
-- session is in audit_logs, written by the platform's trigger (loyalnest.platform.audit);
-- the Shopify tokens are left out of the log.
CREATE TRIGGER merchants_audit AFTER INSERT OR UPDATE OR DELETE ON merchants
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('merchant_id', '', 'access_token', 'refresh_token');
CREATE TRIGGER impersonation_sessions_audit AFTER INSERT OR UPDATE OR DELETE ON impersonation_sessions
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('session_id', '');
