"""The catalogue: products (variants inside), collections membership, the sync cursor.

A product's row is replaced only by a newer version (Shopify's updatedAt): a webhook
delivered late, or a sync page read before a webhook, never brings an old version back. A
deleted product's row goes (its sales stay: they happened).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from loyalnest.platform.events import inbox
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.postgres import Database
from loyalnest.services.products.domain import Product, ProductNotFound, Variant

_COLUMNS = (
    "product_id, title, handle, vendor, product_type, status, tags, variants, shopify_updated_at"
)


def _variants(raw: Any) -> tuple[Variant, ...]:
    items = json.loads(raw) if isinstance(raw, str) else raw
    return tuple(Variant(**item) for item in items)


def _product(row: dict[str, Any], collections: Sequence[str]) -> Product:
    return Product(
        product_id=row["product_id"],
        title=row["title"],
        handle=row["handle"],
        vendor=row["vendor"],
        product_type=row["product_type"],
        status=row["status"],
        tags=tuple(row["tags"]),
        variants=_variants(row["variants"]),
        updated_at=row["shopify_updated_at"],
        collection_ids=tuple(collections),
    )


class CatalogueStore:
    def __init__(self, database: Database) -> None:
        self._pool = database.pool

    @staticmethod
    async def _upsert(conn: AsyncConnection, merchant_id: str, product: Product) -> bool:
        cursor = await conn.execute(
            "INSERT INTO products (merchant_id, product_id, title, handle, vendor, product_type,"
            " status, tags, variants, shopify_updated_at, search)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (merchant_id, product_id) DO UPDATE SET title = excluded.title,"
            " handle = excluded.handle, vendor = excluded.vendor,"
            " product_type = excluded.product_type, status = excluded.status,"
            " tags = excluded.tags, variants = excluded.variants,"
            " shopify_updated_at = excluded.shopify_updated_at, search = excluded.search,"
            " synced_at = now()"
            " WHERE products.shopify_updated_at < excluded.shopify_updated_at",
            (
                merchant_id,
                product.product_id,
                product.title,
                product.handle,
                product.vendor,
                product.product_type,
                product.status,
                list(product.tags),
                Jsonb([v.__dict__ for v in product.variants]),
                product.updated_at,
                product.search_text(),
            ),
        )
        written = cursor.rowcount == 1
        if product.collection_ids is not None:
            # Membership as the sync read it (it can change without the product's updatedAt).
            await conn.execute(
                "DELETE FROM product_collections WHERE merchant_id = %s AND product_id = %s",
                (merchant_id, product.product_id),
            )
            for collection_id in product.collection_ids:
                await conn.execute(
                    "INSERT INTO product_collections (merchant_id, product_id, collection_id)"
                    " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    (merchant_id, product.product_id, collection_id),
                )
        return written

    async def save_page(
        self, merchant_id: str, products: Sequence[Product], synced_through: datetime | None
    ) -> int:
        """One sync page and the cursor after it, in one transaction; products written."""
        async with self._pool.connection() as conn, conn.transaction():
            written = 0
            for product in products:
                written += await self._upsert(conn, merchant_id, product)
            if synced_through is not None:
                await conn.execute(
                    "INSERT INTO sync_state (merchant_id, synced_through) VALUES (%s, %s)"
                    " ON CONFLICT (merchant_id) DO UPDATE SET"
                    " synced_through ="
                    " greatest(sync_state.synced_through, excluded.synced_through),"
                    " updated_at = now()",
                    (merchant_id, synced_through),
                )
        return written

    async def synced_merchants(self) -> list[str]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute("SELECT merchant_id FROM sync_state ORDER BY merchant_id")
            return [row[0] for row in await cursor.fetchall()]

    @contextlib.asynccontextmanager
    async def sync_lock(self, merchant_id: str) -> AsyncIterator[bool]:
        """Whether this process may sync the merchant now (a session advisory lock, held on a
        connection of its own for the sync's duration)."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT pg_try_advisory_lock(hashtextextended('products-sync:' || %s, 0))",
                (merchant_id,),
            )
            row = await cursor.fetchone()
            held = bool(row and row[0])
            try:
                yield held
            finally:
                if held:
                    await conn.execute(
                        "SELECT pg_advisory_unlock(hashtextextended('products-sync:' || %s, 0))",
                        (merchant_id,),
                    )

    async def synced_through(self, merchant_id: str) -> datetime | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT synced_through FROM sync_state WHERE merchant_id = %s", (merchant_id,)
            )
            row = await cursor.fetchone()
        return None if row is None else row[0]

    @staticmethod
    async def upsert(conn: AsyncConnection, merchant_id: str, product: Product) -> bool:
        return await CatalogueStore._upsert(conn, merchant_id, product)

    @staticmethod
    async def delete(conn: AsyncConnection, merchant_id: str, product_id: str) -> None:
        await conn.execute(
            "DELETE FROM products WHERE merchant_id = %s AND product_id = %s",
            (merchant_id, product_id),
        )
        await conn.execute(
            "DELETE FROM product_collections WHERE merchant_id = %s AND product_id = %s",
            (merchant_id, product_id),
        )

    async def get(self, merchant_id: str, product_id: str) -> Product:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"SELECT {_COLUMNS} FROM products WHERE merchant_id = %s AND product_id = %s",
                (merchant_id, product_id),
            )
            row = await cursor.fetchone()
            if row is None:
                raise ProductNotFound(product_id)
            return _product(row, await self.collections_of(conn, merchant_id, product_id))

    @staticmethod
    async def collections_of(conn: AsyncConnection, merchant_id: str, product_id: str) -> list[str]:
        cursor = await conn.execute(
            "SELECT collection_id FROM product_collections"
            " WHERE merchant_id = %s AND product_id = %s ORDER BY collection_id",
            (merchant_id, product_id),
        )
        return [row[0] for row in await cursor.fetchall()]

    async def page(
        self, merchant_id: str, words: Sequence[str], *, limit: int, offset: int
    ) -> list[Product]:
        conditions = ["merchant_id = %s"]
        params: list[Any] = [merchant_id]
        for word in words:
            # A word, not a pattern: % and _ match themselves.
            escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append("search LIKE %s")
            params.append(f"%{escaped}%")
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"SELECT {_COLUMNS} FROM products WHERE {' AND '.join(conditions)}"
                " ORDER BY title, product_id LIMIT %s OFFSET %s",
                (*params, limit, offset),
            )
            rows = await cursor.fetchall()
            return [
                _product(row, await self.collections_of(conn, merchant_id, row["product_id"]))
                for row in rows
            ]

    async def apply_webhook(
        self, event: ConsumedEvent, product_id: str, product: Product | None
    ) -> bool:
        """products/create or products/update (`product`), products/delete (None), once."""
        async with self._pool.connection() as conn, conn.transaction():
            if not await inbox.claim(conn, event):
                return False
            if product is None:
                await self.delete(conn, event.merchant_id, product_id)
            else:
                await self._upsert(conn, event.merchant_id, product)
        return True
