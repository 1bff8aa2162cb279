-- depends: points_0012_reward_channels
-- RFM-segment eligibility (issue 21): each customer's RFM segment as RFM last published it
-- (rfm.updated, consumed by Points: never RFM's tables), and the segments a reward is for.
CREATE TABLE customer_segments (
    merchant_id text NOT NULL,
    customer_id text NOT NULL,
    -- '' once RFM puts the customer in no segment (kept: it is newer than what it replaced).
    segment text NOT NULL CHECK (segment IN ('', 'high_value', 'at_risk', 'new')),
    -- The rfm.updated's occurred_at: an older event arriving late changes nothing.
    scored_at timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, customer_id)
);
ALTER TABLE rewards
    ADD COLUMN eligible_segments text[] NOT NULL DEFAULT '{}'
        CHECK (eligible_segments <@ ARRAY['high_value', 'at_risk', 'new']::text[]);
