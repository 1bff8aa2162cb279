"""Catalogue sync from Shopify's GraphQL `products` connection (a domain sub-area).

Pages of 250 (Shopify's maximum) in updatedAt order, following `pageInfo.endCursor`;
incremental by `updated_at:>='<newest updatedAt read>'` (inclusive: a product updated in the
same second as the last one read is not missed; re-reading it writes nothing). Each page and
the cursor after it are saved in one transaction, so a sync cut short (Shopify throttling
longer than the call waits, a lost connection) keeps its progress and the next one goes on
from there. `THROTTLED` answers are waited out by ShopifyAdminClient from the cost figures
Shopify reports (requested cost, available points, restore rate). Besides SyncProducts, each
process syncs every merchant synced once, incrementally, every
`LOYALNEST_PRODUCTS_SYNC_INTERVAL_SECONDS` (webhooks Shopify gave up on are caught up).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.platform import shop_access
from loyalnest.platform.errors import LoyalNestError
from loyalnest.platform.observability import get_logger
from loyalnest.platform.shop_access import ShopTokens
from loyalnest.platform.shopify_admin import ShopifyAdminClient, ShopifyRejected
from loyalnest.services.products.domain import UnfitProduct, from_graphql
from loyalnest.services.products.store.catalogue import CatalogueStore

log = get_logger(__name__)
PAGE_SIZE = 250

_PRODUCTS = """
query CatalogueSync($first: Int!, $after: String, $query: String) {
  products(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    edges {
      cursor
      node {
        id title handle vendor productType status tags updatedAt
        variants(first: 100) { nodes { id title sku price } }
        collections(first: 50) { nodes { id } }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}"""


class ShopNotConnected(shop_access.ShopNotConnected):
    def __init__(self, merchant_id: str) -> None:
        super().__init__(merchant_id, "the catalogue cannot be read from Shopify")


@dataclass(frozen=True)
class SyncResult:
    written: int
    pages: int
    synced_through: datetime | None


class CatalogueSync:
    def __init__(
        self,
        admin: ShopifyAdminClient,
        auth: auth_pb2_grpc.AuthServiceStub | None,
        catalogue: CatalogueStore,
    ) -> None:
        self._admin = admin
        self._tokens = ShopTokens(auth, component="products", not_connected=ShopNotConnected)
        self._catalogue = catalogue

    async def run(self, interval_seconds: float) -> None:
        """The periodic incremental sync of every merchant synced once (a safety net for
        webhooks Shopify never delivered). One process at a time per merchant: the others
        skip it (a PostgreSQL advisory lock)."""
        while True:
            await asyncio.sleep(interval_seconds)
            for merchant_id in await self._catalogue.synced_merchants():
                try:
                    async with self._catalogue.sync_lock(merchant_id) as held:
                        if held:
                            await self.sync(merchant_id, full=False)
                except LoyalNestError as error:  # not connected, throttled: next round
                    log.info("periodic sync skipped", merchant_id=merchant_id, error=str(error))
                except Exception:
                    log.exception("periodic sync failed", merchant_id=merchant_id)

    async def sync(self, merchant_id: str, *, full: bool) -> SyncResult:
        access = await self._tokens.shop_access(merchant_id)
        since = None if full else await self._catalogue.synced_through(merchant_id)
        query = None if since is None else f"updated_at:>='{since.isoformat()}'"
        after: str | None = None
        written = pages = 0
        newest = since
        while True:
            data = await self._admin.graphql(
                access.shop,
                access.access_token,
                _PRODUCTS,
                {"first": PAGE_SIZE, "after": after, "query": query},
            )
            connection = data.get("products") or {}
            try:
                products = [from_graphql(edge["node"]) for edge in connection.get("edges") or []]
            except (UnfitProduct, KeyError, TypeError) as exc:
                raise ShopifyRejected(f"Shopify's products page is not as expected: {exc}") from exc
            if products:
                page_newest = max(p.updated_at for p in products)
                newest = page_newest if newest is None else max(newest, page_newest)
            written += await self._catalogue.save_page(merchant_id, products, newest)
            pages += 1
            info = connection.get("pageInfo") or {}
            if not info.get("hasNextPage") or not info.get("endCursor"):
                break
            after = str(info["endCursor"])
        log.info("catalogue synced", merchant_id=merchant_id, written=written, pages=pages)
        return SyncResult(written, pages, newest)
