-- Applied to every service schema: see loyalnest.platform.idempotency.
CREATE TABLE idempotency_keys (
    merchant_id         text        NOT NULL,
    idempotency_key     text        NOT NULL,
    request_fingerprint text        NOT NULL,
    result_ref          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, idempotency_key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys USING brin (created_at);
