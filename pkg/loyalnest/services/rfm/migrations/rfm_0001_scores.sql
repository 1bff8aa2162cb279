-- depends: platform_0004_idempotency_namespaces
-- The RFM service (seed §8; README "RFM"). Orders and refunds as webhook.received carries them,
-- each customer's facts and scores, the merchant's quintile cutoffs, and the time series
-- (score history, group moves: monthly partitions, BRIN on time, retention by dropping them).

-- Orders seen, once each (redeliveries and orders/create + orders/paid of one order are one row).
CREATE TABLE orders (
    merchant_id text          NOT NULL,
    order_id    text          NOT NULL,
    customer_id text          NOT NULL,
    placed_at   timestamptz   NOT NULL,
    -- Line items less their discounts, in the shop's currency (as Points earns on).
    amount      numeric(20,4) NOT NULL,
    currency    text          NOT NULL DEFAULT '',
    cancelled   boolean       NOT NULL DEFAULT false,
    PRIMARY KEY (merchant_id, order_id)
);
CREATE INDEX orders_customer ON orders (merchant_id, customer_id);

-- Refunds, once each; they may arrive before their order.
CREATE TABLE refunds (
    merchant_id text          NOT NULL,
    refund_id   text          NOT NULL,
    order_id    text          NOT NULL,
    amount      numeric(20,4) NOT NULL,
    PRIMARY KEY (merchant_id, refund_id)
);
CREATE INDEX refunds_order ON refunds (merchant_id, order_id);

-- Each customer's facts (from their orders) and current scores, group and stage.
CREATE TABLE customer_rfm (
    merchant_id    text             NOT NULL,
    customer_id    text             NOT NULL,
    -- Orders that count: not cancelled, not wholly refunded.
    orders         integer          NOT NULL DEFAULT 0,
    monetary       numeric(20,4)    NOT NULL DEFAULT 0,
    currency       text             NOT NULL DEFAULT '',
    first_order_at timestamptz,
    last_order_at  timestamptz,
    -- log2 of the sum over counted orders of 2^(t_i / H), t_i in days since 2020-01-01 and H
    -- the half-life in days: ranks decayed activity the same at every read time (README "RFM").
    activity_key   double precision,
    r_score        smallint         NOT NULL DEFAULT 0,
    f_score        smallint         NOT NULL DEFAULT 0,
    m_score        smallint         NOT NULL DEFAULT 0,
    rfm_group      text             NOT NULL DEFAULT 'prospect',
    stage          text             NOT NULL DEFAULT 'prospect',
    scored_at      timestamptz      NOT NULL DEFAULT now(),
    created_at     timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, customer_id)
);
-- Nudges and previews: a group's biggest spenders first.
CREATE INDEX customer_rfm_group ON customer_rfm (merchant_id, rfm_group, monetary DESC);

-- The seed's customer_segments: each customer's current segment, as a view of the same rows
-- (one row to update per change instead of two).
CREATE VIEW customer_segments AS
SELECT merchant_id, customer_id, rfm_group, stage,
       CASE WHEN rfm_group IN ('champions', 'loyal') THEN 'high_value'
            WHEN rfm_group IN ('at_risk', 'cant_lose') THEN 'at_risk'
            WHEN rfm_group = 'new' THEN 'new' END AS segment,
       scored_at AS created_at
FROM customer_rfm;

-- The merchant's current quintile cutoffs (lower bounds of scores 2..5); NULL arrays below the
-- minimum number of customers (README "RFM": the small-merchant rule).
CREATE TABLE rfm_cutoffs (
    merchant_id    text               PRIMARY KEY,
    recency_key    double precision[],
    monetary       double precision[],
    customers      bigint             NOT NULL,
    half_life_days double precision   NOT NULL,
    computed_at    timestamptz        NOT NULL DEFAULT now()
);

-- Customers per group now, maintained with every change (and recounted by each rescore).
CREATE TABLE rfm_segment_counts (
    merchant_id text        NOT NULL,
    rfm_group   text        NOT NULL,
    customers   bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, rfm_group)
);

-- The counts at each nightly rescore, for GetSegments over a period.
CREATE TABLE rfm_segment_count_history (
    merchant_id text  NOT NULL,
    day         date  NOT NULL,
    counts      jsonb NOT NULL,
    PRIMARY KEY (merchant_id, day)
);

-- Every change of a customer's scores, group or stage.
CREATE TABLE rfm_score_history (
    history_id   uuid          NOT NULL DEFAULT gen_random_uuid(),
    merchant_id  text          NOT NULL,
    customer_id  text          NOT NULL,
    r_score      smallint      NOT NULL,
    f_score      smallint      NOT NULL,
    m_score      smallint      NOT NULL,
    rfm_group    text          NOT NULL,
    stage        text          NOT NULL,
    orders       integer       NOT NULL,
    monetary     numeric(20,4) NOT NULL,
    created_at   timestamptz   NOT NULL DEFAULT now()
) PARTITION BY RANGE (created_at);
CREATE INDEX rfm_score_history_customer ON rfm_score_history (merchant_id, customer_id, created_at);
CREATE INDEX rfm_score_history_time ON rfm_score_history USING brin (created_at);

-- Every move of a customer from one group to another, with the raw R/F/M at the move.
CREATE TABLE rfm_segment_deltas (
    merchant_id  text             NOT NULL,
    customer_id  text             NOT NULL,
    from_group   text             NOT NULL,
    to_group     text             NOT NULL,
    recency      double precision,
    frequency    integer          NOT NULL,
    monetary     numeric(20,4)    NOT NULL,
    created_at   timestamptz      NOT NULL DEFAULT now()
) PARTITION BY RANGE (created_at);
CREATE INDEX rfm_segment_deltas_merchant ON rfm_segment_deltas (merchant_id, created_at);
CREATE INDEX rfm_segment_deltas_time ON rfm_segment_deltas USING brin (created_at);

-- Monthly partitions of both time series from this month to `months_ahead` months on.
-- Idempotent; the service runs it at start and every few hours, the rescore job nightly.
CREATE FUNCTION rfm_ensure_partitions(months_ahead integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    month date;
    parent text;
BEGIN
    FOREACH parent IN ARRAY ARRAY['rfm_score_history', 'rfm_segment_deltas'] LOOP
        FOR i IN 0..months_ahead LOOP
            month := (date_trunc('month', now()) + make_interval(months => i))::date;
            EXECUTE format(
                'CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                parent || '_' || to_char(month, 'YYYYMM'), parent,
                month, (month + interval '1 month')::date);
        END LOOP;
    END LOOP;
END $$;

-- Drops the partitions wholly older than `retention_months` months: retention without a
-- DELETE (no dead rows, no vacuum). Returns the partitions dropped.
CREATE FUNCTION rfm_drop_partitions(retention_months integer) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    part record;
    horizon timestamptz := date_trunc('month', now()) - make_interval(months => retention_months);
BEGIN
    FOR part IN
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname IN ('rfm_score_history', 'rfm_segment_deltas')
          AND p.relnamespace = to_regnamespace(current_schema())::oid
    LOOP
        -- The bound reads FOR VALUES FROM ('...') TO ('...'): the upper one decides.
        IF substring(part.bound FROM 'TO \(''([^'']+)''\)')::timestamptz <= horizon THEN
            EXECUTE format('DROP TABLE %I', part.relname);
            RETURN NEXT part.relname;
        END IF;
    END LOOP;
END $$;

DO $$ BEGIN PERFORM rfm_ensure_partitions(2); END $$;

-- The scoring rules, in SQL so the incremental path (one customer) and the nightly rescore
-- (every customer, set-based) share one definition; domain.py mirrors them for the README's
-- worked example and a test compares both on every cell. Inlinable: plain SQL, IMMUTABLE.

-- A quintile score from the four lower bounds of 2..5. A value equal to several cutoffs (a tie
-- group spanning quintiles) gets the upper middle of the quintiles it spans; with no duplicate
-- cutoffs that is width_bucket's rule (a value equal to a bound is in the bucket above).
CREATE FUNCTION rfm_quintile(v double precision, cut double precision[]) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (1 + (cut[1] < v)::int + (cut[2] < v)::int + (cut[3] < v)::int + (cut[4] < v)::int
            + ((cut[1] = v)::int + (cut[2] = v)::int + (cut[3] = v)::int + (cut[4] = v)::int + 1) / 2
           )::smallint
$$;

-- F from fixed thresholds (orders are heavily tied: most customers have one).
CREATE FUNCTION rfm_frequency_score(orders integer) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (CASE WHEN orders >= 6 THEN 5 WHEN orders >= 4 THEN 4 WHEN orders >= 1 THEN orders
                 ELSE 0 END)::smallint
$$;

-- R of a merchant with too few customers for quintiles: days since the last order.
CREATE FUNCTION rfm_recency_days_score(days double precision) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (CASE WHEN days <= 30 THEN 5 WHEN days <= 90 THEN 4 WHEN days <= 180 THEN 3
                 WHEN days <= 365 THEN 2 ELSE 1 END)::smallint
$$;

-- The named group: first match wins (README "RFM" has the table).
CREATE FUNCTION rfm_group(r integer, f integer, m integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN f = 0 THEN 'prospect'
        WHEN r >= 4 AND f + m >= 8 THEN 'champions'
        WHEN r = 1 AND f + m >= 8 THEN 'cant_lose'
        WHEN r >= 4 AND f = 1 THEN 'new'
        WHEN r >= 3 AND f >= 2 AND f + m >= 6 THEN 'loyal'
        WHEN r <= 2 AND f + m >= 6 THEN 'at_risk'
        WHEN r >= 4 THEN 'potential_loyalist'
        WHEN r = 3 AND f = 1 THEN 'promising'
        WHEN r = 3 THEN 'needs_attention'
        WHEN r = 2 AND f + m >= 4 THEN 'about_to_sleep'
        WHEN r = 2 THEN 'hibernating'
        ELSE 'lost' END
$$;

CREATE FUNCTION rfm_stage(r integer, orders integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN orders = 0 THEN 'prospect' WHEN r = 1 THEN 'churned'
                WHEN r = 2 THEN 'lapsing' WHEN orders = 1 THEN 'new' ELSE 'active' END
$$;
