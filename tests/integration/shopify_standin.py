"""The Shopify OAuth stand-in the tests start (it lives in the package so `loyalnest up` runs
it too: loyalnest/devstack/standins/shopify.py), and the app credentials the tests share."""

from loyalnest.devstack.standins.shopify import Exchange, ShopifyStandIn

# The app credentials the integration tests' Auth service and stand-in share.
API_KEY = "test-shopify-api-key"
API_SECRET = "test-shopify-api-secret"

__all__ = ["API_KEY", "API_SECRET", "Exchange", "ShopifyStandIn"]
