"""Shopify's Admin GraphQL API (DESIGN §7: GraphQL only for new public apps).

`ShopifyAdminClient.graphql(shop, access_token, query, variables)` posts to
`{base_url}/admin/api/{version}/graphql.json` with the shop's offline access token and returns
the `data` object. `base_url` is `https://{shop}` in production (`{shop}` is filled in); tests
point it at a local stand-in. Mutations report business errors in their own `userErrors`,
which callers read from `data`; everything else becomes an exception here:

- 423 Locked (the shop is locked, e.g. unpaid): ShopLocked (FAILED_PRECONDITION);
- 401/403 (token revoked, scope missing) and GraphQL `errors`: ShopifyRejected (INTERNAL:
  the request or the credentials are wrong, a retry will not help);
- no answer, 429/5xx after the HTTP client's retries: ShopifyUnavailable (UNAVAILABLE).
"""

from __future__ import annotations

from typing import Any

import httpx

from loyalnest.platform.errors import FailedPrecondition, Internal, Unavailable
from loyalnest.platform.http import HttpClient

API_VERSION = "2025-10"


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
        self, shop: str, access_token: str, query: str, variables: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            response = await self._http.post_json(
                self.endpoint(shop),
                {"query": query, "variables": variables},
                headers={"X-Shopify-Access-Token": access_token},
            )
        except httpx.TransportError as exc:
            raise ShopifyUnavailable(f"Shopify did not answer for {shop}: {exc!r}") from exc
        if response.status_code == 423:
            raise ShopLocked(shop)
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
