"""Ledger stores: PostgreSQL (default, local stack and CI) and MongoDB (seed's choice)."""
