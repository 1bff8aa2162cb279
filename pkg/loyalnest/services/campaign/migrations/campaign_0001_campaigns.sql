-- depends: audit_0001_audit_logs
-- Seed §12 (Campaign). merchant_id is text, as in every service: the token's merchant claim.

-- A merchant's discount campaigns. rules and audience: loyalnest.campaign.v1.DiscountRules and
-- Audience as protobuf JSON; product_ids mirrors rules.product_ids for ListCampaigns' filter.
CREATE TABLE campaigns (
    campaign_id         uuid        NOT NULL,
    merchant_id         text        NOT NULL,
    name                text        NOT NULL,
    kind                text        NOT NULL CHECK (kind IN ('shared_code', 'automatic', 'unique_codes')),
    -- The code customers enter (shared_code; unique_codes: the discount's first code, each
    -- customer's own is derived), empty for automatic discounts.
    code                text        NOT NULL DEFAULT '',
    rules               jsonb       NOT NULL,
    audience            jsonb       NOT NULL,
    product_ids         text[]      NOT NULL DEFAULT '{}',
    start_at            timestamptz,
    end_at              timestamptz,
    state               text        NOT NULL
        CHECK (state IN ('draft', 'scheduled', 'active', 'paused', 'ended')),
    -- The Shopify discount's GID, once published.
    shopify_discount_id text        NOT NULL DEFAULT '',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, campaign_id),
    CHECK ((state = 'draft') = (shopify_discount_id = '') OR state = 'ended')
);
CREATE INDEX campaigns_merchant_created ON campaigns (merchant_id, created_at DESC, campaign_id);
CREATE INDEX campaigns_products ON campaigns USING gin (product_ids);
-- Two published campaigns of a merchant never share a code (Shopify's codes are per shop).
CREATE UNIQUE INDEX campaigns_code ON campaigns (merchant_id, code)
    WHERE code <> '' AND state <> 'draft';
-- What the reconcile job walks.
CREATE INDEX campaigns_live ON campaigns (state) WHERE state IN ('scheduled', 'active', 'paused');

CREATE TRIGGER campaigns_audit AFTER INSERT OR UPDATE OR DELETE ON campaigns
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('campaign_id', '');

-- Each customer's latest RFM segment (rfm.updated), for audiences. customer_id: the id RFM
-- scores (the Shopify customer id). Personal data: exported and erased with the customer.
CREATE TABLE customer_segments (
    merchant_id text        NOT NULL,
    customer_id text        NOT NULL,
    segment     text        NOT NULL,
    -- The producer's time of the newest event applied: an older one arriving late loses.
    scored_at   timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, customer_id)
);
CREATE INDEX customer_segments_segment ON customer_segments (merchant_id, segment);
