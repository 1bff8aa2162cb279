-- depends: points_0011_tier_job
-- Reward eligibility (issue 21): the sales channels a reward may be redeemed on ('online',
-- 'pos'); empty: every channel (every reward before this).
ALTER TABLE rewards
    ADD COLUMN channels text[] NOT NULL DEFAULT '{}'
        CHECK (channels <@ ARRAY['online', 'pos']::text[]);
