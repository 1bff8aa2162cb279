"""Sales per product and order, each product's RFM, and customers' RFM segments.

An order's lines (webhook.received) are recorded once per product and order, whichever of
orders/create, orders/paid and orders/updated brings them and however often; orders/cancelled
removes them. The products whose sales changed get their RFM recomputed in the same
transaction, and product_rfm.updated is enqueued for each whose figures moved.

`product:{merchant_id}:{product_id}:rfm` in Redis caches GetProductRFM's answer (the seed's
key, with the merchant: one shop's request must never read another's entry); it is dropped
when the product's sales or a buyer's segment change, and expires anyway.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as redis
from psycopg import AsyncConnection

from loyalnest.gen.events.v1 import gateway_pb2 as gateway_events
from loyalnest.gen.events.v1 import rfm_pb2
from loyalnest.platform import personal_data
from loyalnest.platform.cache import REDIS_ERRORS, key_part
from loyalnest.platform.events import inbox, outbox
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.observability import get_logger
from loyalnest.platform.postgres import Database
from loyalnest.services.products import events
from loyalnest.services.products.domain import NeverSold, ProductRfm, order_sales

log = get_logger(__name__)
UNSCORED = "UNSCORED"
_MERCHANT_TABLES = (
    "product_sales",
    "product_rfm",
    "customer_segments",
    "products",
    "product_collections",
    "sync_state",
    "campaigns",
)


def rfm_key(merchant_id: str, product_id: str) -> str:
    return f"product:{key_part(merchant_id)}:{key_part(product_id)}:rfm"


async def _current(conn: AsyncConnection, merchant_id: str, product_id: str) -> ProductRfm | None:
    cursor = await conn.execute(
        "SELECT max(ordered_at), count(*), count(DISTINCT nullif(customer_id, '')),"
        " coalesce(sum(revenue_minor), 0), coalesce(min(currency), '')"
        " FROM product_sales WHERE merchant_id = %s AND product_id = %s",
        (merchant_id, product_id),
    )
    row = await cursor.fetchone()
    if row is None or not row[1]:
        return None
    return ProductRfm(product_id, row[0], int(row[1]), int(row[2]), int(row[3]), row[4])


class SalesStore:
    def __init__(self, database: Database, client: redis.Redis | None, *, ttl_seconds: int) -> None:
        self._pool = database.pool
        self._redis = client
        self._ttl = ttl_seconds

    async def apply_order(
        self, event: ConsumedEvent, order: gateway_events.ShopifyOrder, *, cancelled: bool
    ) -> bool:
        """An order's lines recorded (or, cancelled, removed) once; False when the event was
        applied before."""
        changed: list[str] = []
        async with self._pool.connection() as conn, conn.transaction():
            if not await inbox.claim(conn, event):
                return False
            merchant_id = event.merchant_id
            if cancelled:
                cursor = await conn.execute(
                    "DELETE FROM product_sales WHERE merchant_id = %s AND order_id = %s"
                    " RETURNING product_id",
                    (merchant_id, order.order_id),
                )
                changed = [row[0] for row in await cursor.fetchall()]
            else:
                ordered_at = (
                    order.created_time.ToDatetime(tzinfo=UTC)
                    if order.HasField("created_time")
                    else event.occurred_at
                )
                for sale in order_sales(order):
                    cursor = await conn.execute(
                        "INSERT INTO product_sales (merchant_id, product_id, order_id,"
                        " customer_id, quantity, revenue_minor, currency, ordered_at)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (
                            merchant_id,
                            sale.product_id,
                            order.order_id,
                            order.customer_id,
                            sale.quantity,
                            sale.revenue_minor,
                            order.currency,
                            ordered_at,
                        ),
                    )
                    if cursor.rowcount:
                        changed.append(sale.product_id)
            await self._announce(conn, merchant_id, changed)
        await self._forget(event.merchant_id, changed)
        return True

    async def _announce(
        self, conn: AsyncConnection, merchant_id: str, product_ids: Sequence[str]
    ) -> None:
        now = datetime.now(UTC)
        for product_id in sorted(set(product_ids)):
            current = await _current(conn, merchant_id, product_id)
            cursor = await conn.execute(
                "SELECT last_order_at, frequency, buyers, monetary_minor, currency"
                " FROM product_rfm WHERE merchant_id = %s AND product_id = %s",
                (merchant_id, product_id),
            )
            before = await cursor.fetchone()
            if current is None:
                if before is None:
                    continue
                await conn.execute(
                    "DELETE FROM product_rfm WHERE merchant_id = %s AND product_id = %s",
                    (merchant_id, product_id),
                )
                gone = ProductRfm(product_id, before[0], 0, 0, 0, before[4])
                await outbox.enqueue(conn, merchant_id, events.product_rfm_updated(gone, now))
                continue
            if before is not None and tuple(before) == current.score_key():
                continue
            await conn.execute(
                "INSERT INTO product_rfm (merchant_id, product_id, last_order_at, frequency,"
                " buyers, monetary_minor, currency) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (merchant_id, product_id) DO UPDATE SET"
                " last_order_at = excluded.last_order_at, frequency = excluded.frequency,"
                " buyers = excluded.buyers, monetary_minor = excluded.monetary_minor,"
                " currency = excluded.currency, updated_at = now()",
                (merchant_id, product_id, *current.score_key()),
            )
            await outbox.enqueue(conn, merchant_id, events.product_rfm_updated(current, now))

    async def _forget(self, merchant_id: str, product_ids: Sequence[str]) -> None:
        if self._redis is None or not product_ids:
            return
        try:
            await self._redis.delete(*(rfm_key(merchant_id, p) for p in set(product_ids)))
        except REDIS_ERRORS as exc:
            log.warning("product RFM cache not invalidated (expires anyway)", error=repr(exc))

    async def rfm(self, merchant_id: str, product_id: str) -> ProductRfm:
        key = rfm_key(merchant_id, product_id)
        if self._redis is not None:
            try:
                cached = await self._redis.get(key)
            except REDIS_ERRORS:
                cached = None
            if cached is not None:
                return _decode(product_id, cached)
        async with self._pool.connection() as conn:
            current = await _current(conn, merchant_id, product_id)
            if current is None:
                raise NeverSold(product_id)
            cursor = await conn.execute(
                "SELECT coalesce(s.segment, %s), count(*) FROM"
                " (SELECT DISTINCT customer_id FROM product_sales"
                "  WHERE merchant_id = %s AND product_id = %s AND customer_id <> '') b"
                " LEFT JOIN customer_segments s"
                "  ON s.merchant_id = %s AND s.customer_id = b.customer_id"
                " GROUP BY 1",
                (UNSCORED, merchant_id, product_id, merchant_id),
            )
            segments = {row[0]: int(row[1]) for row in await cursor.fetchall()}
        found = ProductRfm(
            product_id,
            current.last_order_at,
            current.frequency,
            current.buyers,
            current.monetary_minor,
            current.currency,
            segments,
        )
        if self._redis is not None:
            try:
                await self._redis.set(key, _encode(found), ex=self._ttl)
            except REDIS_ERRORS as exc:
                log.debug("product RFM not cached", error=repr(exc))
        return found

    async def apply_segment(self, event: ConsumedEvent, customer_id: str, segment: int) -> bool:
        """A customer's newest RFM segment; the cached RFM of what they bought is dropped."""
        async with self._pool.connection() as conn, conn.transaction():
            if not await inbox.claim(conn, event):
                return False
            await conn.execute(
                "INSERT INTO customer_segments (merchant_id, customer_id, segment, scored_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (merchant_id, customer_id) DO UPDATE"
                " SET segment = excluded.segment, scored_at = excluded.scored_at"
                " WHERE customer_segments.scored_at < excluded.scored_at",
                (
                    event.merchant_id,
                    customer_id,
                    rfm_pb2.RfmSegment.Name(segment),
                    event.occurred_at,
                ),
            )
            cursor = await conn.execute(
                "SELECT DISTINCT product_id FROM product_sales"
                " WHERE merchant_id = %s AND customer_id = %s",
                (event.merchant_id, customer_id),
            )
            bought = [row[0] for row in await cursor.fetchall()]
        await self._forget(event.merchant_id, bought)
        return True

    # ---- personal data (issue 18's contract) ----------------------------------------------

    async def export_customer(self, merchant_id: str, customer_id: str) -> dict[str, Any]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT product_id, order_id, quantity, revenue_minor, currency, ordered_at"
                " FROM product_sales WHERE merchant_id = %s AND customer_id = %s"
                " ORDER BY ordered_at, product_id",
                (merchant_id, customer_id),
            )
            purchases = [
                {
                    "product_id": r[0],
                    "order_id": r[1],
                    "quantity": r[2],
                    "revenue_minor_units": r[3],
                    "currency": r[4],
                    "ordered_at": r[5].isoformat(),
                }
                for r in await cursor.fetchall()
            ]
            cursor = await conn.execute(
                "SELECT segment FROM customer_segments WHERE merchant_id = %s AND customer_id = %s",
                (merchant_id, customer_id),
            )
            segment = await cursor.fetchone()
        exported: dict[str, Any] = {}
        if purchases:
            exported["product_purchases"] = purchases
        if segment is not None:
            exported["rfm_segment"] = segment[0]
        return exported

    async def erase_customer(self, merchant_id: str, customer_id: str) -> int:
        """The customer's link to their purchases is cut (the sales stay, anonymous: the
        products' figures do not change) and their segment goes. Returns the rows changed
        (0 on a repeat)."""
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "UPDATE product_sales SET customer_id = '' WHERE merchant_id = %s"
                " AND customer_id = %s RETURNING product_id",
                (merchant_id, customer_id),
            )
            bought = [row[0] for row in await cursor.fetchall()]
            segments = await conn.execute(
                "DELETE FROM customer_segments WHERE merchant_id = %s AND customer_id = %s",
                (merchant_id, customer_id),
            )
            erased = len(bought) + segments.rowcount
        await self._forget(merchant_id, bought)
        return erased

    async def erase_merchant(self, merchant_id: str) -> int:
        """Everything Products keeps of the merchant (catalogue, sales, segments, campaigns)."""
        erased = 0
        async with self._pool.connection() as conn, conn.transaction():
            for table in _MERCHANT_TABLES:
                cursor = await conn.execute(
                    f"DELETE FROM {table} WHERE merchant_id = %s", (merchant_id,)
                )
                erased += cursor.rowcount
            erased += await personal_data.erase_platform_rows(conn, merchant_id)
        return erased


def _encode(rfm: ProductRfm) -> str:
    return json.dumps(
        {
            "last_order_at": rfm.last_order_at.isoformat(),
            "frequency": rfm.frequency,
            "buyers": rfm.buyers,
            "monetary_minor": rfm.monetary_minor,
            "currency": rfm.currency,
            "buyer_segments": rfm.buyer_segments,
        }
    )


def _decode(product_id: str, raw: bytes | str) -> ProductRfm:
    data = json.loads(raw)
    return ProductRfm(
        product_id,
        datetime.fromisoformat(data["last_order_at"]),
        data["frequency"],
        data["buyers"],
        data["monetary_minor"],
        data["currency"],
        data["buyer_segments"],
    )
