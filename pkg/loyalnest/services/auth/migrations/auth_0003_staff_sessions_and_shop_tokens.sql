-- depends: auth_0002_admin_audit
-- Staff sessions (IssueStaffSession): a Users user of a merchant, whose permissions come
-- from the role Roles assigns them. role_id is the role the session's permissions were read
-- from, so a role.updated finds the sessions it concerns; role.assigned finds them by subject.
ALTER TABLE sessions DROP CONSTRAINT sessions_kind_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_kind_check
    CHECK (kind IN ('merchant', 'admin', 'staff'));
ALTER TABLE sessions ADD COLUMN role_id uuid;
CREATE INDEX sessions_staff_subject ON sessions (merchant_id, subject)
    WHERE kind = 'staff' AND revoked_at IS NULL;
CREATE INDEX sessions_staff_role ON sessions (merchant_id, role_id)
    WHERE kind = 'staff' AND revoked_at IS NULL;

-- Expiring offline tokens (DESIGN §7): when Auth last refreshed the shop's token with
-- Shopify (the refresh token rotates each time). installed_at: the latest install, so an
-- app/uninstalled delivered late (triggered before a reinstall) cannot undo the reinstall.
ALTER TABLE merchants ADD COLUMN access_token_refreshed_at timestamptz;
ALTER TABLE merchants ADD COLUMN installed_at timestamptz;
UPDATE merchants SET installed_at = updated_at;
ALTER TABLE merchants ALTER COLUMN installed_at SET DEFAULT now();
ALTER TABLE merchants ALTER COLUMN installed_at SET NOT NULL;
ALTER TABLE merchants ADD COLUMN uninstalled_at timestamptz;

-- Every hand-out of a shop's access token (GetShopAccessToken): which service, for which
-- merchant, under which service token. Audited like the merchants themselves.
CREATE TABLE shop_token_reads (
    read_id     uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    merchant_id uuid        NOT NULL REFERENCES merchants (merchant_id),
    service     text        NOT NULL,
    token_id    text        NOT NULL,
    refreshed   boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shop_token_reads_merchant_created ON shop_token_reads (merchant_id, created_at);
CREATE TRIGGER shop_token_reads_audit AFTER INSERT OR UPDATE OR DELETE ON shop_token_reads
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('read_id', '');
