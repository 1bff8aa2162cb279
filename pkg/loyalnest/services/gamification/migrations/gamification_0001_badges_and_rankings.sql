-- depends: audit_0001_audit_logs
-- Gamification (seed §13): badge rules, awarded badges, customers' counters, leaderboards.

-- A merchant's declarative badge rules.
CREATE TABLE badge_rules (
    rule_id     uuid        NOT NULL,
    merchant_id text        NOT NULL,
    name        text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN
                    ('points', 'orders', 'referrals', 'streak_months', 'rfm_segment', 'manual')),
    threshold   bigint      NOT NULL DEFAULT 0,
    segment     text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, rule_id)
);
CREATE TRIGGER badge_rules_audit AFTER INSERT OR UPDATE OR DELETE ON badge_rules
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('rule_id', '');

-- Badges held (seed: customer_badges). One per customer and rule: awarded once, whatever
-- redelivers or retries.
CREATE TABLE customer_badges (
    badge_id    uuid        NOT NULL,
    merchant_id text        NOT NULL,
    customer_id text        NOT NULL,
    rule_id     uuid        NOT NULL,
    -- The rule's kind when awarded (seed: badge type).
    badge_type  text        NOT NULL,
    awarded_by  text        NOT NULL CHECK (awarded_by IN ('rule', 'manual')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, badge_id),
    CONSTRAINT customer_badges_once UNIQUE (merchant_id, customer_id, rule_id),
    FOREIGN KEY (merchant_id, rule_id) REFERENCES badge_rules (merchant_id, rule_id)
        ON DELETE CASCADE
);
CREATE INDEX customer_badges_created ON customer_badges (merchant_id, created_at);
-- Manual awards name who made them (the audit row's actor).
CREATE TRIGGER customer_badges_audit AFTER INSERT OR UPDATE OR DELETE ON customer_badges
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('badge_id', 'customer_id');

-- What badge rules count, per customer, kept from the customer's events.
CREATE TABLE customer_progress (
    merchant_id      text    NOT NULL,
    customer_id      text    NOT NULL,
    lifetime_points  bigint  NOT NULL DEFAULT 0,
    orders           integer NOT NULL DEFAULT 0,
    referrals        integer NOT NULL DEFAULT 0,
    last_order_month integer NOT NULL DEFAULT 0,
    current_streak   integer NOT NULL DEFAULT 0,
    best_streak      integer NOT NULL DEFAULT 0,
    rfm_segment      text    NOT NULL DEFAULT '',
    -- Hidden from leaderboard listings (still ranked).
    leaderboard_opt_out boolean NOT NULL DEFAULT false,
    PRIMARY KEY (merchant_id, customer_id)
);

-- The record the Redis sorted sets are rebuilt from: a customer's score per board.
-- period_key: 'all', '2026-12' (month), '2026-W49' (ISO week).
CREATE TABLE leaderboard_rankings (
    merchant_id text        NOT NULL,
    period_key  text        NOT NULL,
    customer_id text        NOT NULL,
    score       bigint      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, period_key, customer_id)
);
-- Rank order, for the PostgreSQL answer when Redis is away.
CREATE INDEX leaderboard_rankings_rank
    ON leaderboard_rankings (merchant_id, period_key, score DESC, customer_id DESC);
