-- Earning rules (rules.py): the rule that gave a transaction, an order's awards per rule, and
-- each rule's past per customer (limits, punch cards, goals), one row per occurrence.
ALTER TABLE points_transactions ADD COLUMN rule_id text NOT NULL DEFAULT '';
ALTER TABLE order_earnings ADD COLUMN awards text NOT NULL DEFAULT '';

CREATE TABLE rule_events (
    merchant_id text        NOT NULL,
    customer_id text        NOT NULL,
    rule_id     text        NOT NULL,
    -- The order id, or the activity's idempotency key: one decision per occurrence.
    occurrence  text        NOT NULL,
    points      bigint      NOT NULL CHECK (points >= 0),
    amount      numeric     NOT NULL DEFAULT 0,
    at          timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, customer_id, rule_id, occurrence)
);
CREATE INDEX rule_events_recent ON rule_events (merchant_id, customer_id, rule_id, at);
