"""The set-based rescore of one merchant (nightly, and when its customer count moved past the
threshold): new quintile cutoffs, every customer rescored by one UPDATE, and for those whose
scores, group or stage changed their history rows, group moves and `rfm.updated` events, all
in one transaction. No statement runs per customer: the events are built from a server-side
cursor in batches and COPYed into the outbox, so memory stays flat at any size.

The merchant's advisory lock is held exclusively for the transaction: its events wait (they
take it shared), so a rescore never overwrites facts an order changed meanwhile.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from opentelemetry import propagate
from psycopg import AsyncConnection

from loyalnest.gen.events.v1 import envelope_pb2, rfm_pb2
from loyalnest.platform.events import outbox, topics
from loyalnest.platform.events.envelope import EVENT_ID_HEADER, EVENT_TYPE_HEADER
from loyalnest.platform.postgres import Database
from loyalnest.services.rfm import events
from loyalnest.services.rfm.domain import (
    EPOCH,
    MIN_CUSTOMERS_FOR_QUINTILES,
    Group,
    Stage,
    days_since_epoch,
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
-- MATERIALIZED: r, f and m reach rfm_group() as plain columns, so the function is
-- inlined (PostgreSQL does not inline a function whose argument is an expensive expression
-- used several times in its body; called, it costs tens of microseconds a row).
WITH scored AS MATERIALIZED (
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
    # Seconds per step, for the log and bench/bench_rfm.py.
    steps: dict[str, float]


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
        steps: dict[str, float] = {}
        mark = started

        def step(name: str) -> None:
            nonlocal mark
            now_mark = time.perf_counter()
            steps[name] = round(now_mark - mark, 3)
            mark = now_mark

        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (merchant_lock_key(merchant_id),),
            )
            step("lock")
            await self._rebuild_if_half_life_changed(conn, params)
            await conn.execute(_CUTOFFS, params)
            step("cutoffs")
            await conn.execute(_SCORED, params)
            await conn.execute("ANALYZE rescored")
            step("score")
            changed = (await conn.execute(_UPDATE, params)).rowcount
            step("update")
            await conn.execute(_HISTORY, params)
            await conn.execute(_DELTAS, params)
            step("history")
            for statement in _RECOUNT.split(";")[:2]:
                await conn.execute(statement, params)
            await conn.execute(_COUNT_HISTORY, params)
            step("counts")
            await self._announce(conn, merchant_id, now)
            step("announce")
            cursor = await conn.execute(
                "SELECT customers FROM rfm_cutoffs WHERE merchant_id = %s", (merchant_id,)
            )
            row = await cursor.fetchone()
        step("commit")
        return RescoreResult(
            merchant_id, int(row[0]) if row else 0, changed, time.perf_counter() - started, steps
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
        written with COPY (one round trip per batch, not per customer).

        Lean on purpose (a first scoring announces every customer): one envelope template and
        one trace context for the run, the payload built straight from the row; the result is
        what `outbox.row(merchant_id, events.rfm_updated(...))` gives, byte for byte but the ids.
        """
        spec = topics.spec_for_type("rfm.updated")
        template = envelope_pb2.Envelope(
            event_type=spec.event_type, merchant_id=merchant_id, producer=spec.topic.producer
        )
        template.occurred_at.FromDatetime(now)
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        template.trace_context.update(carrier)
        headers = {**carrier, EVENT_TYPE_HEADER: spec.event_type}
        now_key = days_since_epoch(now) / self._half_life_days
        async with conn.cursor(name="rfm_rescored") as changed:
            await changed.execute(_CHANGED)
            while batch := await changed.fetchmany(_BATCH):
                async with conn.cursor().copy(f"COPY outbox {outbox.COLUMNS} FROM STDIN") as copy:
                    for row in batch:
                        customer_id = row[0]
                        payload = self._payload(row, now_key)
                        event_id = str(uuid.uuid4())
                        template.event_id = event_id
                        template.payload.Pack(payload)
                        key = f"{merchant_id}/{customer_id}"
                        await copy.write_row(
                            (
                                event_id,
                                spec.event_type,
                                spec.topic.name,
                                key,
                                outbox.lane_for(key),
                                template.SerializeToString(),
                                json.dumps({**headers, EVENT_ID_HEADER: event_id}),
                            )
                        )

    @staticmethod
    def _payload(row: tuple[Any, ...], now_key: float) -> rfm_pb2.RfmUpdated:
        """rfm.updated of a `_CHANGED` row (events.rfm_updated's fields, from the row)."""
        (customer_id, orders, monetary, currency, _, _, key) = row[:7]
        old_group, r, f, m, group, stage = row[10], row[12], row[13], row[14], row[15], row[16]
        before, after = Group(old_group), Group(group)
        return rfm_pb2.RfmUpdated(
            customer_id=customer_id,
            score=rfm_pb2.RfmScore(
                recency=0.0 if key is None else float(2 ** (key - now_key)),
                frequency=orders,
                monetary_minor_units=int(
                    (Decimal(monetary) * 100).to_integral_value(ROUND_HALF_UP)
                ),
                currency_code=currency,
            ),
            segment=events.segment_enum(after),
            previous_segment=events.segment_enum(before),
            scores=rfm_pb2.RfmScores(recency=r, frequency=f, monetary=m),
            group=events.group_enum(after),
            previous_group=events.group_enum(before),
            stage=events.stage_enum(Stage(stage)),
        )
