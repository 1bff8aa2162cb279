"""The integration suite's real Valkey and Shopify stand-in, for the fuzzer's stack."""

from tests.integration.conftest import redis_url, shopify

__all__ = ["redis_url", "shopify"]
