-- depends: core_0001_core
-- Shopify Billing (issue 14): a paid plan is a Shopify app subscription the merchant approves.
-- One row per subscription Core asked Shopify for (ChangePlan to a paid plan); its status
-- follows Shopify's app_subscriptions/update webhooks. The plan in program_settings changes
-- only when one becomes ACTIVE.
CREATE TABLE plan_subscriptions (
    -- Shopify's id, "gid://shopify/AppSubscription/<n>".
    subscription_id  text        PRIMARY KEY,
    merchant_id      text        NOT NULL,
    plan             text        NOT NULL,
    -- Shopify's AppSubscriptionStatus.
    status           text        NOT NULL CHECK (status IN ('PENDING', 'ACCEPTED', 'ACTIVE',
                                 'DECLINED', 'EXPIRED', 'FROZEN', 'CANCELLED')),
    confirmation_url text        NOT NULL,
    -- A test charge (development stores): Shopify charges nothing.
    test             boolean     NOT NULL,
    -- The webhook's updated_at of the status held: an older delivery changes nothing.
    status_updated_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plan_subscriptions_merchant ON plan_subscriptions (merchant_id, created_at);

-- The subscription that pays for the merchant's current plan, if it is a paid one: only its
-- end (CANCELLED, EXPIRED, FROZEN) takes the plan back to the default. A merchant without a
-- row is on a free plan.
CREATE TABLE plan_billing (
    merchant_id     text        PRIMARY KEY,
    subscription_id text        NOT NULL REFERENCES plan_subscriptions (subscription_id),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
