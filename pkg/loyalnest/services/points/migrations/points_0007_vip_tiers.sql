-- VIP tiers (tiers.py): each customer's tier, changed by compare-and-set on version.
CREATE TABLE customer_tiers (
    merchant_id text        NOT NULL,
    customer_id text        NOT NULL,
    tier_id     text        NOT NULL,
    qualifying  bigint      NOT NULL,
    term_end    timestamptz,
    changed_at  timestamptz NOT NULL,
    version     bigint      NOT NULL DEFAULT 1,
    PRIMARY KEY (merchant_id, customer_id)
);
