"""The shared runtime every LoyalNest service is built from.

A service directory holds only its servicer, domain logic, storage and migrations; server
bootstrap, configuration, errors, observability, storage plumbing and idempotency live here.
"""
