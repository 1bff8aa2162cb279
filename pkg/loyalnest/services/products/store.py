"""The Products service's items in PostgreSQL (schema `products`).

One row per merchant and item. Every write runs in one transaction with its idempotency key
and (by trigger) its audit row naming the caller: `idempotency.write_once(..., audited=True)`,
or `audit.transaction(self._pool)` for a write without a key.
"""

from __future__ import annotations

import uuid

from psycopg import AsyncConnection
from psycopg.rows import class_row

from loyalnest.platform import idempotency
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.postgres import Database
from loyalnest.services.products.domain import Item, ItemNotFound

_SELECT_ITEM = "SELECT item_id::text AS item_id, merchant_id, name, created_at FROM items"


class ItemStore:
    def __init__(self, database: Database) -> None:
        self._pool = database.pool

    @staticmethod
    async def _item(conn: AsyncConnection, merchant_id: str, item_id: str) -> Item:
        # Always by merchant and id: another merchant's item is NOT_FOUND, like a missing one.
        cursor = conn.cursor(row_factory=class_row(Item))
        await cursor.execute(
            f"{_SELECT_ITEM} WHERE merchant_id = %s AND item_id = %s",
            (merchant_id, item_id),
            prepare=True,
        )
        item = await cursor.fetchone()
        if item is None:
            raise ItemNotFound(item_id)
        return item

    async def get(self, merchant_id: str, item_id: str) -> Item:
        async with self._pool.connection() as conn:
            return await self._item(conn, merchant_id, item_id)

    async def create(self, merchant_id: str, *, name: str, key: IdempotencyKey) -> Item:
        """A new item, once per idempotency key: a retry gets the first call's item."""

        async def insert(conn: AsyncConnection) -> tuple[Item, str]:
            item_id = str(uuid.uuid4())
            await conn.execute(
                "INSERT INTO items (item_id, merchant_id, name) VALUES (%s, %s, %s)",
                (item_id, merchant_id, name),
            )
            # An event announcing it would be enqueued here (events.py), in this transaction.
            return await self._item(conn, merchant_id, item_id), item_id

        return await idempotency.write_once(
            self._pool,
            merchant_id,
            key,
            write=insert,
            replay=lambda conn, item_id: self._item(conn, merchant_id, item_id),
            audited=True,  # its audit row names the caller of the RPC
        )
