"""The set-based rescore of one merchant (nightly, and when its customer count moved past the
threshold): new quintile cutoffs, every customer rescored by one UPDATE, and for those whose
scores, group or stage changed their history rows, group moves and `rfm.updated` events, all
in one transaction. No statement runs per customer: the events are built from a server-side
cursor in batches and COPYed into the outbox, so memory stays flat at any size.

The merchant's advisory lock is held exclusively for the transaction: its events wait (they
take it shared), so a rescore never overwrites facts an order changed meanwhile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection

from loyalnest.platform.events import outbox
from loyalnest.platform.postgres import Database
from loyalnest.services.rfm import events
from loyalnest.services.rfm.domain import (
    EPOCH,
    MIN_CUSTOMERS_FOR_QUINTILES,
    Change,
    CustomerRfm,
    Group,
    Scores,
    Stage,
    activity_at,
)
from loyalnest.services.rfm.store.scores import merchant_lock_key

_BATCH = 5_000

# Cutoffs from the customers with an order; NULL (the small-merchant rule) below the minimum.
_CUTOFFS = """
INSERT INTO rfm_cutoffs (merchant_id, recency_key, monetary, customers, half_life_days,
                         computed_at)
SELECT %(merchant)s,
       CASE WHEN count(*) >= %(minimum)s THEN percentile_cont(ARRAY[.2, .4, .6, .8])
            WITHIN GROUP (ORDER BY activity_key) END,
       CASE WHEN count(*) >= %(minimum)s THEN percentile_cont(ARRAY[.2, .4, .6, .8])
            WITHIN GROUP (ORDER BY monetary::float8) END,
       count(*), %(half_life)s, %(now)s
FROM customer_rfm WHERE merchant_id = %(merchant)s AND orders > 0
ON CONFLICT (merchant_id) DO UPDATE
SET recency_key = excluded.recency_key, monetary = excluded.monetary,
    customers = excluded.customers, half_life_days = excluded.half_life_days,
    computed_at = excluded.computed_at
"""

# Every customer's scores against the new cutoffs (the same SQL functions as one customer's);
# only the rows that change are kept, with what they were.
_SCORED = """
CREATE TEMP TABLE rescored ON COMMIT DROP AS
WITH scored AS (
    SELECT t.customer_id, t.orders, t.monetary, t.currency, t.first_order_at, t.last_order_at,
           t.activity_key, t.r_score AS old_r, t.f_score AS old_f, t.m_score AS old_m,
           t.rfm_group AS old_group, t.stage AS old_stage,
           (CASE WHEN t.orders = 0 THEN 0
                 WHEN c.recency_key IS NULL THEN rfm_recency_days_score(
                     extract(epoch FROM %(now)s::timestamptz - t.last_order_at)::float8 / 86400)
                 ELSE rfm_quintile(t.activity_key, c.recency_key) END)::smallint AS r,
           rfm_frequency_score(t.orders) AS f,
           (CASE WHEN t.orders = 0 THEN 0 WHEN c.monetary IS NULL THEN 3
                 ELSE rfm_quintile(t.monetary::float8, c.monetary) END)::smallint AS m
    FROM customer_rfm t JOIN rfm_cutoffs c ON c.merchant_id = t.merchant_id
    WHERE t.merchant_id = %(merchant)s
), named AS (
    SELECT s.*, rfm_group(s.r, s.f, s.m) AS grp, rfm_stage(s.r, s.orders) AS stg FROM scored s
)
SELECT * FROM named
WHERE (old_r, old_f, old_m, old_group, old_stage) IS DISTINCT FROM (r, f, m, grp, stg)
"""

_UPDATE = """
UPDATE customer_rfm t
SET r_score = n.r, f_score = n.f, m_score = n.m, rfm_group = n.grp, stage = n.stg,
    scored_at = %(now)s
FROM rescored n
WHERE t.merchant_id = %(merchant)s AND t.customer_id = n.customer_id
"""

_HISTORY = """
INSERT INTO rfm_score_history (merchant_id, customer_id, r_score, f_score, m_score, rfm_group,
                               stage, orders, monetary, created_at)
SELECT %(merchant)s, customer_id, r, f, m, grp, stg, orders, monetary, %(now)s FROM rescored
"""

_DELTAS = """
INSERT INTO rfm_segment_deltas (merchant_id, customer_id, from_group, to_group, recency,
                                frequency, monetary, created_at)
SELECT %(merchant)s, customer_id, old_group, grp, activity_key, orders, monetary, %(now)s
FROM rescored WHERE old_group <> grp
"""

# The counts recounted (the maintained ones may only drift by a bug, never by design) and
# today's entry of their history.
_RECOUNT = """
DELETE FROM rfm_segment_counts WHERE merchant_id = %(merchant)s;
INSERT INTO rfm_segment_counts (merchant_id, rfm_group, customers, updated_at)
SELECT %(merchant)s, rfm_group, count(*), %(now)s FROM customer_rfm
WHERE merchant_id = %(merchant)s GROUP BY rfm_group;
"""

_COUNT_HISTORY = """
INSERT INTO rfm_segment_count_history (merchant_id, day, counts)
SELECT %(merchant)s, %(now)s::timestamptz::date,
       coalesce(jsonb_object_agg(rfm_group, customers), '{}')
FROM rfm_segment_counts WHERE merchant_id = %(merchant)s
ON CONFLICT (merchant_id, day) DO UPDATE SET counts = excluded.counts
"""

_CHANGED = """
SELECT customer_id, orders, monetary, currency, first_order_at, last_order_at, activity_key,
       old_r, old_f, old_m, old_group, old_stage, r, f, m, grp, stg
FROM rescored
"""


@dataclass(frozen=True)
class RescoreResult:
    merchant_id: str
    customers: int
    changed: int
    seconds: float


class Rescorer:
    def __init__(self, database: Database, *, half_life_days: float) -> None:
        self._pool = database.pool
        self._half_life_days = half_life_days

    async def merchants(self) -> list[str]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute("SELECT DISTINCT merchant_id FROM customer_rfm")
            return sorted(merchant for (merchant,) in await cursor.fetchall())

    async def rescore(self, merchant_id: str, now: datetime) -> RescoreResult:
        started = time.perf_counter()
        params: dict[str, Any] = {
            "merchant": merchant_id,
            "now": now,
            "minimum": MIN_CUSTOMERS_FOR_QUINTILES,
            "half_life": self._half_life_days,
            "epoch": EPOCH,
        }
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (merchant_lock_key(merchant_id),),
            )
            await self._rebuild_if_half_life_changed(conn, params)
            await conn.execute(_CUTOFFS, params)
            await conn.execute(_SCORED, params)
            await conn.execute("ANALYZE rescored")
            changed = (await conn.execute(_UPDATE, params)).rowcount
            await conn.execute(_HISTORY, params)
            await conn.execute(_DELTAS, params)
            for statement in _RECOUNT.split(";")[:2]:
                await conn.execute(statement, params)
            await conn.execute(_COUNT_HISTORY, params)
            await self._announce(conn, merchant_id, now)
            cursor = await conn.execute(
                "SELECT customers FROM rfm_cutoffs WHERE merchant_id = %s", (merchant_id,)
            )
            row = await cursor.fetchone()
        return RescoreResult(
            merchant_id, int(row[0]) if row else 0, changed, time.perf_counter() - started
        )

    async def _rebuild_if_half_life_changed(
        self, conn: AsyncConnection, params: dict[str, Any]
    ) -> None:
        """Activity keys depend on the half-life: after a change of it, recompute every key
        from the orders (one aggregate over them) before ranking."""
        cursor = await conn.execute(
            "SELECT half_life_days FROM rfm_cutoffs WHERE merchant_id = %(merchant)s", params
        )
        row = await cursor.fetchone()
        if row is None or float(row[0]) == self._half_life_days:
            return
        await conn.execute(
            """
            WITH counted AS (
                SELECT o.customer_id,
                       extract(epoch FROM o.placed_at - %(epoch)s::timestamptz)::float8
                           / 86400 / %(half_life)s::float8 AS x
                FROM orders o
                WHERE o.merchant_id = %(merchant)s AND NOT o.cancelled
                  AND o.amount > coalesce((SELECT sum(r.amount) FROM refunds r
                      WHERE r.merchant_id = o.merchant_id AND r.order_id = o.order_id), 0)
            ), tops AS (SELECT *, max(x) OVER (PARTITION BY customer_id) AS top FROM counted),
            keys AS (
                SELECT customer_id,
                       max(top) + ln(sum(power(2::float8, x - top))) / ln(2::float8) AS key
                FROM tops GROUP BY customer_id
            )
            UPDATE customer_rfm t SET activity_key = k.key FROM keys k
            WHERE t.merchant_id = %(merchant)s AND t.customer_id = k.customer_id
            """,
            params,
        )

    async def _announce(self, conn: AsyncConnection, merchant_id: str, now: datetime) -> None:
        """rfm.updated for every changed customer: read in batches from a server-side cursor,
        written with COPY (one round trip per batch, not per customer)."""
        async with conn.cursor(name="rfm_rescored") as changed:
            await changed.execute(_CHANGED)
            while batch := await changed.fetchmany(_BATCH):
                async with conn.cursor().copy(f"COPY outbox {outbox.COLUMNS} FROM STDIN") as copy:
                    for row in batch:
                        change = self._change(merchant_id, row, now)
                        activity = activity_at(change.after.activity_key, now, self._half_life_days)
                        event = outbox.row(
                            merchant_id,
                            events.rfm_updated(change, activity=activity),
                            occurred_at=now,
                        )
                        await copy.write_row(event.params)

    @staticmethod
    def _change(merchant_id: str, row: tuple[Any, ...], now: datetime) -> Change:
        (
            customer_id,
            orders,
            monetary,
            currency,
            first_order_at,
            last_order_at,
            activity_key,
            old_r,
            old_f,
            old_m,
            old_group,
            old_stage,
            r,
            f,
            m,
            group,
            stage,
        ) = row

        def customer(scores: Scores, group: str, stage: str) -> CustomerRfm:
            return CustomerRfm(
                merchant_id=merchant_id,
                customer_id=customer_id,
                orders=orders,
                monetary=Decimal(monetary),
                currency=currency,
                first_order_at=first_order_at,
                last_order_at=last_order_at,
                activity_key=activity_key,
                scores=scores,
                group=Group(group),
                stage=Stage(stage),
                scored_at=now,
            )

        return Change(
            before=customer(Scores(old_r, old_f, old_m), old_group, old_stage),
            after=customer(Scores(r, f, m), group, stage),
        )
