"""Plan usage: counted in PostgreSQL (usage_counters, the record) inside the transaction of
what is counted, cached in Redis `usage:{merchant_id}` after commit, and warned about.

A plan_limit_warning is enqueued in the counting transaction when the count reaches 80 % or
100 % of the limit; plan_limit_warnings remembers it per (metric, period, limit, threshold),
so a retry, a redelivery or a concurrent count never announces the same threshold twice,
while a new period or a changed limit (another plan) may warn again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection

from loyalnest.platform.events import inbox, outbox
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.postgres import Database
from loyalnest.services.core import events
from loyalnest.services.core.domain import (
    CUSTOMERS,
    ORDERS_PER_MONTH,
    MetricUsage,
    PlanLimits,
    limit_of,
    month_period,
    period_of,
    thresholds_reached,
)
from loyalnest.services.core.store.cache import UsageCache, usage_field
from loyalnest.services.core.store.program import ProgramStore

METRICS = (CUSTOMERS, ORDERS_PER_MONTH)


@dataclass(frozen=True)
class Count:
    """A committed count, for the cache."""

    merchant_id: str
    metric: str
    period: str
    used: int


class UsageStore:
    def __init__(
        self, database: Database, programs: ProgramStore, cache: UsageCache | None
    ) -> None:
        self._pool = database.pool
        self._programs = programs
        self._cache = cache

    async def plan_in(self, conn: AsyncConnection, merchant_id: str) -> PlanLimits:
        return (await self._programs.load(conn, merchant_id)).plan

    async def count(
        self,
        conn: AsyncConnection,
        merchant_id: str,
        metric: str,
        moment: datetime,
        plan: PlanLimits,
    ) -> Count:
        """Adds one to the metric inside the caller's transaction and enqueues the warnings
        now due. The counter row stays locked until commit: concurrent counts of the same
        merchant and metric queue, so a limit check on the result is exact."""
        period = period_of(metric, moment)
        cursor = await conn.execute(
            "INSERT INTO usage_counters (merchant_id, metric, period, used) VALUES (%s, %s, %s, 1)"
            " ON CONFLICT (merchant_id, metric, period)"
            " DO UPDATE SET used = usage_counters.used + 1 RETURNING used",
            (merchant_id, metric, period),
            prepare=True,
        )
        row = await cursor.fetchone()
        assert row is not None  # INSERT ... RETURNING always returns the row
        used = int(row[0])
        await self._warn(conn, merchant_id, plan, metric, period, used)
        return Count(merchant_id, metric, period, used)

    async def _warn(
        self,
        conn: AsyncConnection,
        merchant_id: str,
        plan: PlanLimits,
        metric: str,
        period: str,
        used: int,
    ) -> None:
        limit = limit_of(plan, metric)
        for threshold in thresholds_reached(used, limit):
            cursor = await conn.execute(
                "INSERT INTO plan_limit_warnings"
                " (merchant_id, metric, period, usage_limit, threshold_percent, used, plan)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                (merchant_id, metric, period, limit, threshold, used, plan.plan),
            )
            if await cursor.fetchone() is not None:
                await outbox.enqueue(
                    conn, merchant_id, events.plan_limit_warning(plan, metric, used, limit)
                )

    async def count_order(self, event: ConsumedEvent, order_id: str) -> bool:
        """One more order rewarded in the month of the event, unless counted before."""
        merchant_id = event.merchant_id
        count = None
        async with self._pool.connection() as conn, conn.transaction():
            if not await inbox.claim(conn, event):
                return False
            period = month_period(event.occurred_at)
            cursor = await conn.execute(
                "INSERT INTO rewarded_orders (merchant_id, period, order_id) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING RETURNING 1",
                (merchant_id, period, order_id),
            )
            if await cursor.fetchone() is not None:
                plan = await self.plan_in(conn, merchant_id)
                count = await self.count(
                    conn, merchant_id, ORDERS_PER_MONTH, event.occurred_at, plan
                )
        if count is not None:
            await self.cache_counts([count])
        return True

    async def cache_counts(self, counts: list[Count]) -> None:
        """After commit: the committed counts into `usage:{merchant_id}` (only upwards)."""
        if self._cache is None:
            return
        by_merchant: dict[str, dict[str, int]] = {}
        for count in counts:
            fields = by_merchant.setdefault(count.merchant_id, {})
            field = usage_field(count.metric, count.period)
            fields[field] = max(fields.get(field, 0), count.used)
        for merchant_id, fields in by_merchant.items():
            await self._cache.raise_counts(merchant_id, fields)

    async def usage(self, merchant_id: str, now: datetime) -> tuple[PlanLimits, list[MetricUsage]]:
        plan = (await self._programs.get(merchant_id)).plan
        periods = {metric: period_of(metric, now) for metric in METRICS}
        fields = [usage_field(metric, period) for metric, period in periods.items()]
        cached = await self._cache.get(merchant_id, fields) if self._cache else None
        if cached is None:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(
                    "SELECT metric, used FROM usage_counters"
                    " WHERE merchant_id = %s AND (metric, period) IN ((%s, %s), (%s, %s))",
                    (
                        merchant_id,
                        CUSTOMERS,
                        periods[CUSTOMERS],
                        ORDERS_PER_MONTH,
                        periods[ORDERS_PER_MONTH],
                    ),
                )
                stored: dict[str, int] = dict(await cursor.fetchall())
            counts = [Count(merchant_id, m, p, int(stored.get(m, 0))) for m, p in periods.items()]
            await self.cache_counts(counts)
            used = {c.metric: c.used for c in counts}
        else:
            used = {
                metric: cached[usage_field(metric, period)] for metric, period in periods.items()
            }
        return plan, [
            MetricUsage(metric, period, used[metric], limit_of(plan, metric))
            for metric, period in periods.items()
        ]
