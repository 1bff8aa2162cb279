"""LoyalNest services: each directory holds a servicer, domain logic, storage and migrations."""
