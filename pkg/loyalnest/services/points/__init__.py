"""Points: each customer's points ledger per merchant (seed §4)."""
