-- Reversals: a credit gives back redeemed points, a debit takes back earned ones.
ALTER TABLE points_transactions DROP CONSTRAINT points_transactions_type_check;
ALTER TABLE points_transactions ADD CONSTRAINT points_transactions_type_check
    CHECK (type IN ('earn', 'redeem', 'adjust', 'reversal'));

-- The merchant's rewards catalog. reward_id is derived from the create call's idempotency key;
-- request_fingerprint tells a retry from a reuse of the key with other parameters.
CREATE TABLE rewards (
    merchant_id         text        NOT NULL,
    reward_id           uuid        NOT NULL,
    name                text        NOT NULL,
    kind                text        NOT NULL
        CHECK (kind IN ('fixed_amount', 'percentage', 'free_shipping')),
    value               text        NOT NULL DEFAULT '',
    points_cost         bigint      NOT NULL CHECK (points_cost > 0),
    active              boolean     NOT NULL DEFAULT true,
    request_fingerprint text        NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, reward_id)
);

-- One row per reward redemption; redemption_id is the id of its debit transaction.
CREATE TABLE reward_redemptions (
    merchant_id    text        NOT NULL,
    redemption_id  uuid        NOT NULL,
    customer_id    text        NOT NULL,
    reward_id      uuid        NOT NULL,
    points         bigint      NOT NULL CHECK (points > 0),
    status         text        NOT NULL CHECK (status IN ('pending', 'completed', 'refunded')),
    discount_code  text        NOT NULL DEFAULT '',
    failure        text        NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, redemption_id),
    FOREIGN KEY (merchant_id, reward_id) REFERENCES rewards (merchant_id, reward_id)
);
CREATE INDEX reward_redemptions_customer ON reward_redemptions (merchant_id, customer_id);
