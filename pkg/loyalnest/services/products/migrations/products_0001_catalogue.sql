-- depends: audit_0001_audit_logs
-- Seed §15 (Products). merchant_id is text, as in every service: the token's merchant claim.
-- Ids are Shopify's numeric ids (text).

-- The catalogue, from SyncProducts and the products/* webhooks. variants: [{variant_id,
-- title, sku, price}]; search: the words ListProducts matches.
CREATE TABLE products (
    merchant_id    text        NOT NULL,
    product_id     text        NOT NULL,
    title          text        NOT NULL,
    handle         text        NOT NULL DEFAULT '',
    vendor         text        NOT NULL DEFAULT '',
    product_type   text        NOT NULL DEFAULT '',
    status         text        NOT NULL DEFAULT '',
    tags           text[]      NOT NULL DEFAULT '{}',
    variants       jsonb       NOT NULL DEFAULT '[]',
    -- Shopify's updatedAt of the version kept: an older one (a late webhook) never wins.
    shopify_updated_at timestamptz NOT NULL,
    search         text        NOT NULL,
    synced_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, product_id)
);
CREATE INDEX products_title ON products (merchant_id, title, product_id);

-- Collections membership (SyncProducts; webhooks do not carry it).
CREATE TABLE product_collections (
    merchant_id   text NOT NULL,
    product_id    text NOT NULL,
    collection_id text NOT NULL,
    PRIMARY KEY (merchant_id, product_id, collection_id)
);
CREATE INDEX product_collections_collection ON product_collections (merchant_id, collection_id);

-- Where the incremental sync resumes: the newest updatedAt read.
CREATE TABLE sync_state (
    merchant_id    text        PRIMARY KEY,
    synced_through timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Sales per product and order, from order line items (webhook.received). One row per
-- product and order however often the order arrives (orders/create, orders/paid); a
-- cancelled order's rows are removed. customer_id: the Shopify customer (personal data,
-- exported and erased with the customer); empty for guests.
CREATE TABLE product_sales (
    merchant_id   text        NOT NULL,
    product_id    text        NOT NULL,
    order_id      text        NOT NULL,
    customer_id   text        NOT NULL DEFAULT '',
    quantity      bigint      NOT NULL CHECK (quantity >= 0),
    revenue_minor bigint      NOT NULL,
    currency      text        NOT NULL,
    ordered_at    timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, product_id, order_id)
);
CREATE INDEX product_sales_order ON product_sales (merchant_id, order_id);
CREATE INDEX product_sales_customer ON product_sales (merchant_id, customer_id)
    WHERE customer_id <> '';

-- Each product's RFM as last announced (product_rfm.updated is published when it changes).
CREATE TABLE product_rfm (
    merchant_id   text        NOT NULL,
    product_id    text        NOT NULL,
    last_order_at timestamptz NOT NULL,
    frequency     bigint      NOT NULL,
    buyers        bigint      NOT NULL,
    monetary_minor bigint     NOT NULL,
    currency      text        NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, product_id)
);

-- Customers' latest RFM segment (rfm.updated), for the segments of a product's buyers.
CREATE TABLE customer_segments (
    merchant_id text        NOT NULL,
    customer_id text        NOT NULL,
    segment     text        NOT NULL,
    scored_at   timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, customer_id)
);

-- Campaigns as Campaign announces them (campaign.created, campaign.state_changed): which
-- products and collections each touches (both empty: the whole order).
CREATE TABLE campaigns (
    merchant_id    text        NOT NULL,
    campaign_id    text        NOT NULL,
    name           text        NOT NULL,
    state          text        NOT NULL,
    product_ids    text[]      NOT NULL DEFAULT '{}',
    collection_ids text[]      NOT NULL DEFAULT '{}',
    changed_at     timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, campaign_id)
);
CREATE INDEX campaigns_products ON campaigns USING gin (product_ids);
CREATE INDEX campaigns_collections ON campaigns USING gin (collection_ids);
