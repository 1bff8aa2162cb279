-- depends: points_0013_customer_segments
-- Merchant integrations (integrations.py): the secrets signed custom activities are checked
-- with, AES-256-GCM encrypted (an HMAC needs the secret itself, so it cannot be hashed).
CREATE TABLE integrations (
    integration_id        uuid        PRIMARY KEY,
    merchant_id           text        NOT NULL,
    name                  text        NOT NULL,
    generation            integer     NOT NULL CHECK (generation >= 1),
    secret                bytea       NOT NULL,
    previous_secret       bytea,
    previous_valid_until  timestamptz,
    secret_key            text        NOT NULL,
    created_at            timestamptz NOT NULL,
    rotated_at            timestamptz NOT NULL
);
CREATE INDEX integrations_merchant ON integrations (merchant_id, created_at);
-- Who issued or rotated a merchant's secrets is audited; the ciphertexts never reach the log.
CREATE TRIGGER integrations_audit AFTER INSERT OR UPDATE OR DELETE ON integrations
    FOR EACH ROW EXECUTE FUNCTION audit_row_change(
        'integration_id', '', 'secret', 'previous_secret', 'secret_key');
