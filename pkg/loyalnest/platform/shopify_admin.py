"""Shopify's Admin GraphQL API (DESIGN §7: GraphQL only for new public apps).

`ShopifyAdminClient.graphql(shop, access_token, query, variables)` posts to
`{base_url}/admin/api/{version}/graphql.json` with the shop's offline access token and returns
the `data` object. `base_url` is `https://{shop}` in production (`{shop}` is filled in); tests
point it at a local stand-in. Mutations report business errors in their own `userErrors`,
which callers read from `data`; everything else becomes an exception here:

- 423 Locked (the shop is locked, e.g. unpaid): ShopLocked (FAILED_PRECONDITION);
- 401/403 (token revoked, scope missing) and GraphQL `errors`: ShopifyRejected (INTERNAL:
  the request or the credentials are wrong, a retry will not help);
- no answer, 429/5xx after the HTTP client's retries: ShopifyUnavailable (UNAVAILABLE, with
  RetryInfo; the transport error is logged, not sent to the caller);
- `THROTTLED` in `errors` (the cost-based leaky bucket is empty; Shopify answers it as 200 or
  429): the request was not executed, so it is sent again after the time the bucket needs to
  refill (from `extensions.cost`), a few times, then ShopifyUnavailable with that delay as
  RetryInfo.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from loyalnest.platform.errors import FailedPrecondition, Internal, Unavailable
from loyalnest.platform.http import HttpClient
from loyalnest.platform.observability import get_logger

API_VERSION = "2025-10"
# Attempts of a throttled query, and the longest wait between two: beyond it the caller gets
# UNAVAILABLE with RetryInfo rather than a handler held for long.
THROTTLED_ATTEMPTS = 3
MAX_THROTTLE_WAIT_SECONDS = 2.0
# What a caller is told to wait when Shopify did not answer at all (the HTTP client has retried).
TRANSPORT_RETRY_SECONDS = 2.0

log = get_logger(__name__)


class ShopLocked(FailedPrecondition):
    def __init__(self, shop: str) -> None:
        super().__init__(
            f"the Shopify shop {shop} is locked (HTTP 423): no discount can be created now",
            violation_type="SHOP_LOCKED",
            subject=f"shop/{shop}",
        )


class ShopifyUnavailable(Unavailable):
    pass


class ShopifyRejected(Internal):
    pass


class ShopifyThrottled(Exception):
    """A query Shopify did not run for want of cost points; retried in `graphql`."""

    def __init__(self, wait_seconds: float) -> None:
        super().__init__(f"throttled; retry in {wait_seconds:.2f}s")
        self.wait_seconds = wait_seconds


def _throttled(response: httpx.Response) -> ShopifyThrottled | None:
    """The throttle a response reports (`errors[].extensions.code == "THROTTLED"`), with the
    time the bucket needs to hold the query's cost again; None when it is not throttled."""
    if response.status_code not in (200, 429):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not any(
        isinstance(e, dict) and (e.get("extensions") or {}).get("code") == "THROTTLED"
        for e in errors
    ):
        return None
    cost = (body.get("extensions") or {}).get("cost") or {}
    status = cost.get("throttleStatus") or {}
    try:
        missing = float(cost["requestedQueryCost"]) - float(status["currentlyAvailable"])
        wait = max(missing, 0.0) / float(status["restoreRate"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        wait = 1.0
    return ShopifyThrottled(min(max(wait, 0.05), MAX_THROTTLE_WAIT_SECONDS))


class ShopifyAdminClient:
    def __init__(
        self, http: HttpClient, *, base_url: str = "https://{shop}", api_version: str = API_VERSION
    ) -> None:
        self._http = http
        self._base_url = base_url
        self._version = api_version

    def endpoint(self, shop: str) -> str:
        origin = self._base_url.format(shop=shop).rstrip("/")
        return f"{origin}/admin/api/{self._version}/graphql.json"

    async def graphql(
        self,
        shop: str,
        access_token: str,
        query: str,
        variables: dict[str, Any],
        *,
        repeatable: bool = True,
    ) -> dict[str, Any]:
        """`repeatable=False` for a mutation that must not run twice (Shopify's mutations take
        no idempotency key): after a 5xx or a lost answer it is not sent again, and the caller
        finds out whether it ran. Queries, and mutations made idempotent by their input (a
        discount's unique code: a second run answers TAKEN), are repeatable."""
        for _ in range(THROTTLED_ATTEMPTS - 1):
            try:
                return await self._graphql_once(shop, access_token, query, variables, repeatable)
            except ShopifyThrottled as throttled:
                await asyncio.sleep(throttled.wait_seconds)
        try:
            return await self._graphql_once(shop, access_token, query, variables, repeatable)
        except ShopifyThrottled as throttled:
            raise ShopifyUnavailable(
                f"Shopify throttled the calls for {shop}",
                retry_after_seconds=max(throttled.wait_seconds, 1.0),
            ) from throttled

    async def _graphql_once(
        self,
        shop: str,
        access_token: str,
        query: str,
        variables: dict[str, Any],
        repeatable: bool,
    ) -> dict[str, Any]:
        try:
            response = await self._http.post_json(
                self.endpoint(shop),
                {"query": query, "variables": variables},
                headers={"X-Shopify-Access-Token": access_token},
                repeatable=repeatable,
            )
        except httpx.TransportError as exc:
            # The client's error names hosts and internals: logged here, not sent to callers.
            log.warning("shopify admin api unreachable", shop=shop, error=repr(exc))
            raise ShopifyUnavailable(
                f"Shopify did not answer for {shop}; try again",
                retry_after_seconds=TRANSPORT_RETRY_SECONDS,
            ) from exc
        if response.status_code == 423:
            raise ShopLocked(shop)
        throttled = _throttled(response)
        if throttled is not None:
            raise throttled
        if response.status_code == 429 or response.status_code >= 500:
            raise ShopifyUnavailable(
                f"Shopify answered {response.status_code} for {shop}", retry_after_seconds=1.0
            )
        if response.status_code != 200:
            raise ShopifyRejected(f"Shopify answered {response.status_code} for {shop}")
        try:
            body = response.json()
        except ValueError as exc:
            raise ShopifyRejected(f"Shopify answered {shop} with a non-JSON body") from exc
        if body.get("errors"):
            raise ShopifyRejected(f"Shopify GraphQL errors for {shop}: {body['errors']}")
        data: dict[str, Any] = body.get("data") or {}
        return data
