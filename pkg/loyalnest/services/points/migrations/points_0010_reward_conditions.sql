-- depends: points_0009_audit points_0009_order_replay
-- Reward catalogue depth (issue 21): conditions on the code (minimum subtotal, products or
-- collections, expiry), per-customer limits, tier-only rewards, free product and gift card.
ALTER TABLE rewards DROP CONSTRAINT rewards_kind_check;
ALTER TABLE rewards ADD CONSTRAINT rewards_kind_check
    CHECK (kind IN ('fixed_amount', 'percentage', 'free_shipping', 'free_product', 'gift_card'));
ALTER TABLE rewards
    ADD COLUMN min_subtotal text NOT NULL DEFAULT '',
    ADD COLUMN product_ids text[] NOT NULL DEFAULT '{}',
    ADD COLUMN collection_ids text[] NOT NULL DEFAULT '{}',
    ADD COLUMN code_expiry_days integer NOT NULL DEFAULT 0 CHECK (code_expiry_days >= 0),
    ADD COLUMN limit_max integer NOT NULL DEFAULT 0 CHECK (limit_max >= 0),
    ADD COLUMN limit_period text NOT NULL DEFAULT 'ever'
        CHECK (limit_period IN ('ever', 'day', 'month', 'year')),
    ADD COLUMN tier_ids text[] NOT NULL DEFAULT '{}',
    ADD COLUMN variant_id text NOT NULL DEFAULT '';

-- A gift card's code is never stored: only Shopify's id and the code's last characters.
ALTER TABLE reward_redemptions
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN gift_card_id text NOT NULL DEFAULT '',
    ADD COLUMN gift_card_last_characters text NOT NULL DEFAULT '';
-- The per-customer limit counts a customer's redemptions of one reward since a time, under
-- the ledger row's lock (store.redeem).
CREATE INDEX reward_redemptions_customer_reward
    ON reward_redemptions (merchant_id, customer_id, reward_id, created_at);
