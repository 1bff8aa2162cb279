"""Where Users keeps its accounts: PostgreSQL (`postgres`), and Redis in front of it (`cache`)."""
