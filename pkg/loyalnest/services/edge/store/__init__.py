"""Where the edge keeps its state: deliveries, dead letters and merchants' plans in PostgreSQL
(`postgres`, the record); in Redis the deduplication fast path (`seen`) and the rate-limit
token buckets (`buckets`); each process's memo of merchants' plans (`plans`)."""
