"""Authentication and authorisation for every service: JWT access tokens, per-RPC policies."""
