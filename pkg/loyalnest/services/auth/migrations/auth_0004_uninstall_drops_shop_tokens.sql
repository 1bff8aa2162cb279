-- depends: auth_0003_staff_sessions_and_shop_tokens
-- An uninstall drops the shop's Shopify tokens (app/uninstalled, issue 14): Shopify revokes
-- them anyway, and a secret the merchant took back must not stay in our database. A
-- reinstall stores new ones.
ALTER TABLE merchants ALTER COLUMN access_token DROP NOT NULL;
ALTER TABLE merchants ADD CONSTRAINT merchants_active_has_token
    CHECK (status <> 'active' OR access_token IS NOT NULL) NOT VALID;
-- Merchants uninstalled before this migration: their tokens go now.
UPDATE merchants SET access_token = NULL, access_token_expires_at = NULL,
    refresh_token = NULL, refresh_token_expires_at = NULL
    WHERE status = 'uninstalled';
ALTER TABLE merchants VALIDATE CONSTRAINT merchants_active_has_token;
