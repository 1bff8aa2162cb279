"""Where Core keeps its state, all in PostgreSQL (the record) with Redis caches in front:
the program (`program`), plan usage (`usage`), customers and their projections
(`customers`), and the Redis keys (`cache`)."""
