-- Issue 14: webhook bodies bound to their topic, customer data sealed per customer, retention.

-- The bodies accepted in the last retry horizon, by their SHA-256 (per shop): the same bytes
-- under another topic (a captured orders/paid body sent as orders/cancelled) are refused.
-- Purged with webhook_idempotency_keys (LOYALNEST_WEBHOOK_IDEMPOTENCY_RETENTION_SECONDS).
CREATE TABLE webhook_accepted_bodies (
    shop_domain      text        NOT NULL,
    body_sha256      bytea       NOT NULL,
    -- The topic the bytes were first accepted under.
    topic            text        NOT NULL,
    accepted_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_domain, body_sha256)
);
CREATE INDEX webhook_accepted_bodies_accepted ON webhook_accepted_bodies USING brin (accepted_at);

-- One AES-256 key per merchant and customer, wrapped (AES-256-GCM) under the edge's master key
-- (LOYALNEST_EDGE_ENCRYPTION_KEY). webhook.received seals the customer's personal data under it;
-- deleting the row (crypto-shredding) makes every copy of that data unreadable.
CREATE TABLE customer_keys (
    merchant_id      text        NOT NULL,
    customer_id      text        NOT NULL,
    -- A new key after an erasure gets a new id: ciphertexts name the key they need.
    key_id           text        NOT NULL UNIQUE,
    wrapped_key      bytea       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, customer_id)
);

-- Dead letters are now sealed under the master key (`body` holds the ciphertext when
-- body_sealed) and purged after LOYALNEST_WEBHOOK_DEAD_LETTER_RETENTION_SECONDS. Older rows
-- (in clear) go with the first purge that finds them past it.
ALTER TABLE webhook_dead_letters ADD COLUMN body_sealed boolean NOT NULL DEFAULT false;
CREATE INDEX webhook_dead_letters_received ON webhook_dead_letters USING brin (received_at);
