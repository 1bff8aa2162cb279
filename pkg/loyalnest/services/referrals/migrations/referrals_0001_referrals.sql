-- depends: audit_0001_audit_logs
-- Referrals (seed §5): codes, the friends' orders that used them, the rewards they earned.

-- Referrals' copy of each merchant's program (Core's program_settings.updated), by version.
CREATE TABLE program_settings (
    merchant_id text   NOT NULL PRIMARY KEY,
    version     bigint NOT NULL,
    settings    bytea  NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The merchant's shop (its myshopify domain), for links: from Auth or webhook.received.
CREATE TABLE shops (
    merchant_id text NOT NULL PRIMARY KEY,
    shop        text NOT NULL
);

-- A referrer's code; one active at a time.
CREATE TABLE referrals (
    merchant_id text        NOT NULL,
    referral_id uuid        NOT NULL,
    referrer_id text        NOT NULL,
    code        text        NOT NULL,
    shop        text        NOT NULL,
    status      text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'expired')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    -- The friend's discount code at Shopify (the referral's code): none (the program gives
    -- no discount), pending (to create; retried), created.
    discount_status   text    NOT NULL DEFAULT 'none'
        CHECK (discount_status IN ('none', 'pending', 'created')),
    discount_attempts integer NOT NULL DEFAULT 0,
    discount_error    text    NOT NULL DEFAULT '',
    discount_next_attempt_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, referral_id)
);
CREATE INDEX referrals_discount_pending ON referrals (created_at) WHERE discount_status = 'pending';
CREATE UNIQUE INDEX referrals_code ON referrals (merchant_id, code);
-- Public clicks name a code, not a merchant (codes are 60 random bits: no collisions in fact).
CREATE INDEX referrals_code_any_merchant ON referrals (code);
CREATE UNIQUE INDEX referrals_one_active ON referrals (merchant_id, referrer_id)
    WHERE status = 'active';
CREATE INDEX referrals_expiring ON referrals (expires_at) WHERE status = 'active';

-- A friend's order (or a completion by hand) under a referral.
CREATE TABLE conversions (
    merchant_id    text        NOT NULL,
    conversion_id  uuid        NOT NULL,
    referral_id    uuid        NOT NULL,
    referrer_id    text        NOT NULL,
    referee_id     text        NOT NULL,
    -- Empty for a completion by hand without an order.
    order_id       text        NOT NULL DEFAULT '',
    status         text        NOT NULL
        CHECK (status IN ('pending', 'completed', 'refused', 'cancelled')),
    refusal_reason text        NOT NULL DEFAULT '',
    reward_points  bigint      NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz,
    PRIMARY KEY (merchant_id, conversion_id),
    FOREIGN KEY (merchant_id, referral_id) REFERENCES referrals (merchant_id, referral_id)
);
-- An order converts once, whichever of orders/create and orders/paid came first.
CREATE UNIQUE INDEX conversions_order ON conversions (merchant_id, order_id) WHERE order_id <> '';
-- One referrer per friend.
CREATE UNIQUE INDEX conversions_one_referrer ON conversions (merchant_id, referee_id)
    WHERE status IN ('pending', 'completed');
CREATE INDEX conversions_referral ON conversions (merchant_id, referral_id, created_at);
CREATE INDEX conversions_referrer ON conversions (merchant_id, referrer_id, status);

-- Clicks on referral links, counted per referral and hour.
CREATE TABLE clicks (
    merchant_id text        NOT NULL,
    referral_id uuid        NOT NULL,
    hour        timestamptz NOT NULL,
    clicks      bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (merchant_id, referral_id, hour)
);
CREATE INDEX clicks_merchant_hour ON clicks (merchant_id, hour);

-- The first order Referrals saw of each customer: a friend with an earlier one is no new
-- customer.
CREATE TABLE customer_orders (
    merchant_id    text NOT NULL,
    customer_id    text NOT NULL,
    first_order_id text NOT NULL,
    PRIMARY KEY (merchant_id, customer_id)
);

-- Orders Points approved (points.earned `order:<id>`): the approval may arrive before the
-- order's webhook.received, on another topic.
CREATE TABLE order_approvals (
    merchant_id text        NOT NULL,
    order_id    text        NOT NULL,
    approved_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, order_id)
);

-- Points due to referrers: `reward_key` is Points' idempotency key (credited once).
CREATE TABLE rewards (
    merchant_id text        NOT NULL,
    reward_key  text        NOT NULL,
    referrer_id text        NOT NULL,
    points      bigint      NOT NULL CHECK (points > 0),
    reason      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    credited_at timestamptz,
    attempts    integer     NOT NULL DEFAULT 0,
    last_error  text        NOT NULL DEFAULT '',
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, reward_key)
);
CREATE INDEX rewards_due ON rewards (next_attempt_at) WHERE credited_at IS NULL;
CREATE INDEX rewards_referrer ON rewards (merchant_id, referrer_id);

CREATE TRIGGER referrals_audit AFTER INSERT OR UPDATE OR DELETE ON referrals
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('referral_id', 'referrer_id');
CREATE TRIGGER conversions_audit AFTER INSERT OR UPDATE OR DELETE ON conversions
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('conversion_id', 'referrer_id');
