"""Where RFM keeps its state: PostgreSQL (`scores`: orders, facts, scores, time series;
`rescore`: the set-based rescore of a merchant) and Redis (`live`: previews, scatter updates)."""
