"""Developer tooling that writes into a LoyalNest checkout (`loyalnest new-service`)."""
