-- Seed §1 (Core). merchant_id is text, as in every service: it is the token's merchant claim.

-- The merchant's loyalty program: loyalnest.events.v1.ProgramSettings as protobuf JSON
-- (field names as in the proto), the plan and its limits included, the version aside. A
-- merchant without a row has the defaults (version 0).
CREATE TABLE program_settings (
    merchant_id text        PRIMARY KEY,
    -- Increases by one with every change; program_settings.updated carries it.
    version     bigint      NOT NULL CHECK (version > 0),
    settings    jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX program_settings_created_at ON program_settings USING brin (created_at);

-- The record of plan usage (Redis `usage:{merchant_id}` only caches it). period: "all" for
-- customers, the calendar month (UTC, "2026-11") for orders_per_month.
CREATE TABLE usage_counters (
    merchant_id text   NOT NULL,
    metric      text   NOT NULL CHECK (metric IN ('customers', 'orders_per_month')),
    period      text   NOT NULL,
    used        bigint NOT NULL CHECK (used >= 0),
    PRIMARY KEY (merchant_id, metric, period)
);

-- Orders already counted: points.earned of the same order twice (two credits, a replay
-- under a new event id) counts it once.
CREATE TABLE rewarded_orders (
    merchant_id text        NOT NULL,
    period      text        NOT NULL,
    order_id    text        NOT NULL,
    counted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, period, order_id)
);

-- plan_limit_warning events published: one per metric, period, limit and threshold.
CREATE TABLE plan_limit_warnings (
    merchant_id       text        NOT NULL,
    metric            text        NOT NULL,
    period            text        NOT NULL,
    usage_limit       bigint      NOT NULL,
    threshold_percent smallint    NOT NULL,
    used              bigint      NOT NULL,
    plan              text        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, metric, period, usage_limit, threshold_percent)
);

-- No plaintext PII: email and names are AES-256-GCM ciphertexts bound to the row
-- (loyalnest.platform.pii), the email also a keyed blind index. A GDPR redaction nulls them.
CREATE TABLE customers (
    customer_id           uuid        PRIMARY KEY,
    merchant_id           text        NOT NULL,
    shopify_customer_id   text        NOT NULL,
    user_id               uuid,
    email_ciphertext      bytea,
    email_index           bytea,
    first_name_ciphertext bytea,
    last_name_ciphertext  bytea,
    redacted_at           timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT customers_shopify_id UNIQUE (merchant_id, shopify_customer_id),
    CHECK ((email_ciphertext IS NULL) = (email_index IS NULL))
);
CREATE INDEX customers_email ON customers (merchant_id, email_index) WHERE email_index IS NOT NULL;
CREATE INDEX customers_user ON customers (merchant_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX customers_created_at ON customers USING brin (created_at);

-- Users-Service accounts as announced by user.created / user.updated (no PII): a customer
-- naming one is linked to it. Its own table: the account may be announced before the
-- customer that names it is registered.
CREATE TABLE user_accounts (
    merchant_id text        NOT NULL,
    user_id     uuid        NOT NULL,
    kind        text        NOT NULL,
    role_id     text        NOT NULL DEFAULT '',
    -- The producer's time of the newest event applied: an older one arriving late loses.
    changed_at  timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, user_id)
);

-- The latest RFM score of a customer (rfm.updated), newest first whatever the arrival order.
CREATE TABLE customer_rfm (
    merchant_id text        NOT NULL,
    customer_id uuid        NOT NULL,
    score       jsonb       NOT NULL,
    segment     text        NOT NULL,
    scored_at   timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, customer_id)
);

-- GDPR requests Core has completed (gdpr_request.created): what was erased, and when.
CREATE TABLE gdpr_redactions (
    merchant_id text        NOT NULL,
    request_id  text        NOT NULL,
    customer_id text        NOT NULL,
    -- 'redacted': the customer's PII was erased; 'no_data': Core held none for it.
    outcome     text        NOT NULL CHECK (outcome IN ('redacted', 'no_data')),
    completed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, request_id)
);

-- Seed §1 customer_import_logs: one row per ImportCustomers batch, its per-item results in
-- log_details.
CREATE TABLE customer_import_logs (
    import_id   uuid        PRIMARY KEY,
    merchant_id text        NOT NULL,
    batch_id    text        NOT NULL,
    status      text        NOT NULL CHECK (status IN ('pending', 'completed', 'failed')),
    log_details jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT customer_import_logs_batch UNIQUE (merchant_id, batch_id)
);
CREATE INDEX customer_import_logs_merchant ON customer_import_logs (merchant_id, created_at);
CREATE INDEX customer_import_logs_created_at ON customer_import_logs USING brin (created_at);
