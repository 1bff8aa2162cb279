"""The Auth service (seed §2): Shopify OAuth install, JWT sessions, admin MFA, impersonation."""
