"""The Referrals service: customers' referral codes and links, the friends' first orders
that complete them, and the referrers' rewards (credited through Points) (seed §5)."""
