-- depends: points_0014_integrations
-- The liability summary table (liability.py, store/postgres_liability.py): per merchant, the
-- totals of its ledger movements, kept from Points' own ledger events (each applied once).
CREATE TABLE liability_totals (
    merchant_id  text        PRIMARY KEY,
    outstanding  bigint      NOT NULL,
    earned       bigint      NOT NULL,
    redeemed     bigint      NOT NULL,
    expired      bigint      NOT NULL,
    adjusted     bigint      NOT NULL,
    reversed     bigint      NOT NULL,
    events       bigint      NOT NULL,
    updated_at   timestamptz NOT NULL
);
-- Each transaction counted in the table, by whichever counted it first (the consumer of its
-- event, or `loyalnest points liability-backfill` for a ledger older than the table): kept
-- for good, unlike processed_events, so a later backfill never counts one twice.
CREATE TABLE liability_counted (
    transaction_id  uuid  PRIMARY KEY,
    merchant_id     text  NOT NULL
);
CREATE INDEX liability_counted_merchant ON liability_counted (merchant_id);
