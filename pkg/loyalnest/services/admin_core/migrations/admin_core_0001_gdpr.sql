-- depends: audit_0001_audit_logs
-- Seed §10 gdpr_requests, with the progress of every service's part (gdpr_request_steps) and
-- the export packages of data requests (gdpr_exports). No audit trigger on these tables: a
-- row image in audit_logs would copy the customer's id where erasure cannot reach it.
CREATE TABLE gdpr_requests (
    request_id          uuid        PRIMARY KEY,
    merchant_id         text        NOT NULL,
    type                text        NOT NULL
        CHECK (type IN ('data_request', 'customer_redact', 'shop_redact')),
    source              text        NOT NULL CHECK (source IN ('shopify', 'admin')),
    -- Shopify's customer id while the request is open; NULL for shop/redact and once a
    -- redaction completed (the record of an erasure does not name whom it erased).
    customer_id         text,
    -- Keyed digest of (merchant, customer id): finds a customer's requests without naming them.
    customer_digest     bytea,
    -- The customer's identifiers the services reported (emails, account ids), sealed
    -- (AES-256-GCM under AdminCore's key), kept between attempts of a redaction, NULL once done.
    identifiers_sealed  bytea,
    status              text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'completed')),
    attempts            integer     NOT NULL DEFAULT 0,
    last_error          text        NOT NULL DEFAULT '',
    -- When the worker may take it (again): a lease while it works, backoff after a failure.
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now(),
    completed_at        timestamptz,
    CHECK ((type = 'shop_redact') = (customer_digest IS NULL))
);
CREATE INDEX gdpr_requests_merchant_created ON gdpr_requests (merchant_id, created_at DESC, request_id);
CREATE INDEX gdpr_requests_due ON gdpr_requests (next_attempt_at) WHERE status = 'pending';
CREATE INDEX gdpr_requests_customer ON gdpr_requests (merchant_id, customer_digest);

CREATE TABLE gdpr_request_steps (
    request_id   uuid        NOT NULL REFERENCES gdpr_requests (request_id) ON DELETE CASCADE,
    service      text        NOT NULL,
    status       text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'completed')),
    records      bigint      NOT NULL DEFAULT 0,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text        NOT NULL DEFAULT '',
    completed_at timestamptz,
    PRIMARY KEY (request_id, service)
);

-- A data request's package: every service's section, sealed; deleted once expired, and when
-- the customer (or merchant) is erased.
CREATE TABLE gdpr_exports (
    request_id      uuid        PRIMARY KEY REFERENCES gdpr_requests (request_id) ON DELETE CASCADE,
    merchant_id     text        NOT NULL,
    customer_digest bytea       NOT NULL,
    package_sealed  bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX gdpr_exports_expires ON gdpr_exports (expires_at);
CREATE INDEX gdpr_exports_customer ON gdpr_exports (merchant_id, customer_digest);
