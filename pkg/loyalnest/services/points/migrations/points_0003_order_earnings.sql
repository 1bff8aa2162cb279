-- Points' copy of each merchant's program settings (Core's program_settings.updated): earning
-- from orders reads it on its hot path instead of calling Core. The highest version wins.
CREATE TABLE program_settings_copies (
    merchant_id text        PRIMARY KEY,
    version     bigint      NOT NULL,
    settings    bytea       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per Shopify order that reached Points: what it earns, and where it stands.
CREATE TABLE order_earnings (
    merchant_id      text        NOT NULL,
    order_id         text        NOT NULL,
    customer_id      text        NOT NULL,
    points           bigint      NOT NULL CHECK (points >= 0),
    eligible_amount  numeric     NOT NULL,
    currency         text        NOT NULL DEFAULT '',
    status           text        NOT NULL
        CHECK (status IN ('pending', 'approving', 'approved', 'not_earning')),
    approve_at       timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    settings_version bigint      NOT NULL,
    note             text        NOT NULL DEFAULT '',
    approved_points  bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (merchant_id, order_id)
);
-- The settlement loop's scan: only rows with work left are indexed.
CREATE INDEX order_earnings_due ON order_earnings (approve_at)
    WHERE status IN ('pending', 'approving');
CREATE INDEX order_earnings_month ON order_earnings (merchant_id, created_at)
    WHERE status <> 'not_earning';

-- Points taken back from an order: refunds and its cancellation, once each.
CREATE TABLE order_adjustments (
    merchant_id   text        NOT NULL,
    order_id      text        NOT NULL,
    adjustment_id text        NOT NULL,
    points        bigint      NOT NULL CHECK (points >= 0),
    reason        text        NOT NULL,
    applied       boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, order_id, adjustment_id),
    FOREIGN KEY (merchant_id, order_id) REFERENCES order_earnings (merchant_id, order_id)
);
CREATE INDEX order_adjustments_unapplied ON order_adjustments (merchant_id, order_id)
    WHERE NOT applied;
