"""The API-Gateway's Python half (seed §3): Shopify webhook ingress and Envoy's rate-limit
service. Envoy itself is configured by `loyalnest.gateway`."""
