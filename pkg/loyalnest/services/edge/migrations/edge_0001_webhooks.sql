-- The record of every verified Shopify webhook event (seed §10 webhook_idempotency_keys): one row
-- per X-Shopify-Event-Id and shop, written in the same transaction as its webhook.received
-- outbox row, so a redelivery finds it and is not published again.
CREATE TABLE webhook_idempotency_keys (
    shop_domain      text        NOT NULL,
    event_id         text        NOT NULL,
    merchant_id      text        NOT NULL,
    topic            text        NOT NULL,
    -- The first delivery's X-Shopify-Webhook-Id.
    webhook_id       text        NOT NULL,
    outcome          text        NOT NULL CHECK (outcome IN ('accepted', 'dead_lettered')),
    received_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_domain, event_id)
);
CREATE INDEX webhook_idempotency_keys_received ON webhook_idempotency_keys USING brin (received_at);

-- Correctly signed deliveries that could not be published (e.g. a body that is not JSON):
-- kept byte for byte for an operator, never dropped.
CREATE TABLE webhook_dead_letters (
    dead_letter_id   bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    shop_domain      text        NOT NULL,
    event_id         text        NOT NULL,
    topic            text        NOT NULL,
    webhook_id       text        NOT NULL,
    headers          jsonb       NOT NULL,
    body             bytea       NOT NULL,
    reason           text        NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now()
);

-- Each merchant's plan, from Core's program_settings.updated: the rate limiter's tiers.
CREATE TABLE merchant_plans (
    merchant_id      text        PRIMARY KEY,
    plan             text        NOT NULL,
    settings_version bigint      NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
