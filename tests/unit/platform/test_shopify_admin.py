"""ShopifyAdminClient and Shopify's cost-based throttling (THROTTLED, as 200 or 429)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from loyalnest.platform import shopify_admin
from loyalnest.platform.errors import Unavailable
from loyalnest.platform.http import HttpClient
from loyalnest.platform.shopify_admin import ShopifyAdminClient

THROTTLED: dict[str, Any] = {
    "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
    "extensions": {
        "cost": {
            "requestedQueryCost": 11,
            "actualQueryCost": None,
            "throttleStatus": {
                "maximumAvailable": 1000.0,
                "currentlyAvailable": 1,
                "restoreRate": 1000.0,
            },
        }
    },
}


def _client(answers: list[tuple[int, dict[str, Any]]], seen: list[int]) -> ShopifyAdminClient:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(len(seen))
        status, body = answers[min(len(seen) - 1, len(answers) - 1)]
        return httpx.Response(status, content=json.dumps(body).encode())

    http = HttpClient(
        api="test", transport=httpx.MockTransport(handle), backoff_initial_seconds=0.001
    )
    return ShopifyAdminClient(http, base_url="http://shop.test/{shop}")


@pytest.mark.parametrize("status", [200, 429])
async def test_a_throttled_query_is_sent_again_once_the_bucket_refilled(status: int) -> None:
    seen: list[int] = []
    client = _client([(status, THROTTLED), (200, {"data": {"ok": True}})], seen)
    assert await client.graphql("s.myshopify.com", "t", "query { ok }", {}) == {"ok": True}
    # A 429 is retried by the HTTP client as well; either way the query ran once in the end.
    assert len(seen) == 2


async def test_throttled_for_good_is_unavailable_with_retry_info(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shopify_admin, "MAX_THROTTLE_WAIT_SECONDS", 0.01)
    seen: list[int] = []
    client = _client([(200, THROTTLED)], seen)
    with pytest.raises(Unavailable) as caught:
        await client.graphql("s.myshopify.com", "t", "query { ok }", {})
    assert "throttled" in caught.value.message
    assert len(seen) == shopify_admin.THROTTLED_ATTEMPTS


async def test_no_answer_is_unavailable_with_retry_info_and_no_client_internals() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed to 10.0.0.7:443")

    http = HttpClient(
        api="test", transport=httpx.MockTransport(refuse), backoff_initial_seconds=0.001
    )
    client = ShopifyAdminClient(http, base_url="http://shop.test/{shop}")
    with pytest.raises(Unavailable) as caught:
        await client.graphql("s.myshopify.com", "t", "query { ok }", {})
    assert str(caught.value) == "Shopify did not answer for s.myshopify.com; try again"
    assert caught.value.retry_after_seconds == shopify_admin.TRANSPORT_RETRY_SECONDS


@pytest.mark.parametrize(("repeatable", "sent"), [(True, 3), (False, 1)])
async def test_a_mutation_that_may_have_run_is_not_sent_again(repeatable: bool, sent: int) -> None:
    """A 503 may come after Shopify ran the mutation: one that must not run twice is not
    sent again."""
    seen: list[int] = []
    client = _client([(503, {})], seen)
    with pytest.raises(Unavailable):
        await client.graphql(
            "s.myshopify.com", "t", "mutation { giftCardCreate { id } }", {}, repeatable=repeatable
        )
    assert len(seen) == sent


async def test_a_mutation_refused_with_429_is_sent_again() -> None:
    seen: list[int] = []
    client = _client([(429, {}), (200, {"data": {"ok": True}})], seen)
    answer = await client.graphql("s.myshopify.com", "t", "mutation { ok }", {}, repeatable=False)
    assert answer == {"ok": True}
    assert len(seen) == 2
