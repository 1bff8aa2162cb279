-- depends: points_0012_integrations
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
