-- depends: admin_core_0001_gdpr
-- Seed §10 /admin/merchants: every merchant as Auth's and Core's events announced it, so a
-- page of merchants is one query here, never a call to every service.
CREATE TABLE merchants (
    merchant_id      text        PRIMARY KEY,
    shop_domain      text        NOT NULL DEFAULT '',
    plan             text        NOT NULL DEFAULT '',
    -- The program settings version the plan came from: an older one arriving late loses.
    settings_version bigint      NOT NULL DEFAULT 0,
    status           text        NOT NULL DEFAULT 'installed'
        CHECK (status IN ('installed', 'uninstalled')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    uninstalled_at   timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX merchants_created ON merchants (created_at DESC, merchant_id);
