"""Gamification's persistence: PostgreSQL, the record (`postgres`), and the leaderboards'
Redis sorted sets rebuilt from it (`boards`)."""
