-- One row per (merchant, customer): the current balance, guarded so it can never go negative.
CREATE TABLE ledgers (
    merchant_id       text        NOT NULL,
    customer_id       text        NOT NULL,
    balance           bigint      NOT NULL DEFAULT 0 CHECK (balance >= 0),
    lifetime_earned   bigint      NOT NULL DEFAULT 0,
    lifetime_redeemed bigint      NOT NULL DEFAULT 0,
    last_sequence     bigint      NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, customer_id)
);

-- Immutable movements; sequence orders one customer's ledger and drives pagination.
CREATE TABLE points_transactions (
    transaction_id          uuid        PRIMARY KEY,
    merchant_id             text        NOT NULL,
    customer_id             text        NOT NULL,
    sequence                bigint      NOT NULL,
    type                    text        NOT NULL CHECK (type IN ('earn', 'redeem', 'adjust')),
    points                  bigint      NOT NULL CHECK (points <> 0),
    reason                  text        NOT NULL DEFAULT '',
    balance_after           bigint      NOT NULL CHECK (balance_after >= 0),
    lifetime_earned_after   bigint      NOT NULL,
    lifetime_redeemed_after bigint      NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, customer_id, sequence),
    FOREIGN KEY (merchant_id, customer_id) REFERENCES ledgers (merchant_id, customer_id)
);
CREATE INDEX points_transactions_created_at ON points_transactions USING brin (created_at);
