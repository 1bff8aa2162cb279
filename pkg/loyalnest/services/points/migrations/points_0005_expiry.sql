-- Points expiry (expiry.py): a transaction type of its own, never a silent balance change.
ALTER TABLE points_transactions DROP CONSTRAINT points_transactions_type_check;
ALTER TABLE points_transactions ADD CONSTRAINT points_transactions_type_check
    CHECK (type IN ('earn', 'redeem', 'adjust', 'reversal', 'expire'));

-- One points.expiring notice per customer and expiry time: the row is written in the
-- transaction that enqueues the event, so a rerun of the job publishes nothing twice.
CREATE TABLE points_expiry_notices (
    merchant_id text        NOT NULL,
    customer_id text        NOT NULL,
    expire_at   timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, customer_id, expire_at)
);

-- The expiry job's walk over a merchant's customers who have points.
CREATE INDEX ledgers_with_points ON ledgers (merchant_id, customer_id) WHERE balance > 0;
