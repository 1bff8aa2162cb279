-- Admin accounts are audited (platform admins have no merchant: merchant_id NULL in the log).
-- Creation, deletion and changes of what an admin may do or how they sign in; not the
-- bookkeeping of every sign-in (failed_attempts, totp_last_step). Secrets never reach the log.
CREATE TRIGGER admin_users_audit_insert_delete AFTER INSERT OR DELETE ON admin_users
    FOR EACH ROW EXECUTE FUNCTION
    audit_row_change('user_id', 'user_id', 'email', 'email_index', 'password_hash', 'totp_secret');
CREATE TRIGGER admin_users_audit_update AFTER UPDATE ON admin_users
    FOR EACH ROW
    WHEN (OLD.merchant_id IS DISTINCT FROM NEW.merchant_id
          OR OLD.permissions IS DISTINCT FROM NEW.permissions
          OR OLD.password_hash IS DISTINCT FROM NEW.password_hash
          OR OLD.totp_secret IS DISTINCT FROM NEW.totp_secret
          OR OLD.mfa_enabled_at IS DISTINCT FROM NEW.mfa_enabled_at
          OR OLD.locked_until IS DISTINCT FROM NEW.locked_until)
    EXECUTE FUNCTION
    audit_row_change('user_id', 'user_id', 'email', 'email_index', 'password_hash', 'totp_secret');

-- Every revocation through RevokeToken, with who did it and why: the audit trail of a
-- revocation by token id alone (a platform admin's action, no merchant) included.
CREATE TABLE token_revocations (
    revocation_id uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    token_id      text        NOT NULL,
    merchant_id   uuid,
    -- The token's subject, when the token itself was presented.
    subject       text,
    session_id    uuid,
    reason        text        NOT NULL,
    revoked_by    text        NOT NULL,
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX token_revocations_token_id ON token_revocations (token_id);
CREATE TRIGGER token_revocations_audit AFTER INSERT OR UPDATE OR DELETE ON token_revocations
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('revocation_id', '');
