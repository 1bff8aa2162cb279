"""Running LoyalNest's backing servers locally without Docker (the local stack and tests)."""
