"""Orders, refunds and each customer's facts and scores in PostgreSQL (schema `rfm`).

Every event's effect is one transaction that also records the event (inbox) and, when the
customer's scores, group or stage changed, their history row, their group move and the
`rfm.updated` announcing it (outbox): an event applied twice changes nothing, and an
announcement leaves if and only if its change committed.

A customer's facts are recomputed from their orders on every change (a handful of rows), not
patched: a redelivered, reordered or refunded order leaves the same facts as a first delivery.
The scoring itself is SQL (the functions of rfm_0001) against the merchant's stored cutoffs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from loyalnest.platform import personal_data
from loyalnest.platform.events import inbox, outbox
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.postgres import Database
from loyalnest.services.rfm import events
from loyalnest.services.rfm.domain import (
    EPOCH,
    Change,
    CustomerNotFound,
    CustomerRfm,
    Cutoffs,
    Group,
    HistoryEntry,
    Scores,
    Stage,
    activity_at,
)

CUSTOMER_COLUMNS = (
    "merchant_id, customer_id, orders, monetary, currency, first_order_at, last_order_at,"
    " activity_key, r_score, f_score, m_score, rfm_group, stage, scored_at"
)

# A customer's facts from their orders and their scores against the merchant's cutoffs, in
# one statement. An order counts unless cancelled or wholly refunded; activity_key is the
# log-sum-exp of the counted orders' t/H (domain.activity_key).
_RESCORE_CUSTOMER = f"""
WITH counted AS (
    SELECT o.placed_at, o.currency,
           o.amount - coalesce((SELECT sum(r.amount) FROM refunds r
                                WHERE r.merchant_id = o.merchant_id AND r.order_id = o.order_id),
                               0) AS net,
           extract(epoch FROM o.placed_at - %(epoch)s::timestamptz)::float8
               / 86400 / %(half_life)s::float8 AS x
    FROM orders o
    WHERE o.merchant_id = %(merchant)s AND o.customer_id = %(customer)s AND NOT o.cancelled
), kept AS (
    SELECT *, max(x) OVER () AS top FROM counted WHERE net > 0
), facts AS (
    SELECT count(*)::int AS orders, coalesce(sum(net), 0) AS monetary,
           coalesce(max(currency), '') AS currency,
           min(placed_at) AS first_at, max(placed_at) AS last_at,
           max(top) + ln(sum(power(2::float8, x - top))) / ln(2::float8) AS key
    FROM kept
), scored AS MATERIALIZED (
    SELECT f.*,
           CASE WHEN f.orders = 0 THEN 0
                WHEN c.recency_key IS NULL THEN rfm_recency_days_score(
                    extract(epoch FROM %(now)s::timestamptz - f.last_at)::float8 / 86400)
                ELSE rfm_quintile(f.key, c.recency_key) END AS r,
           rfm_frequency_score(f.orders) AS fs,
           CASE WHEN f.orders = 0 THEN 0
                WHEN c.monetary IS NULL THEN 3
                ELSE rfm_quintile(f.monetary::float8, c.monetary) END AS m
    FROM facts f LEFT JOIN rfm_cutoffs c ON c.merchant_id = %(merchant)s
), named AS (
    SELECT s.*, rfm_group(s.r, s.fs, s.m) AS grp, rfm_stage(s.r, s.orders) AS stg FROM scored s
)
UPDATE customer_rfm t
SET orders = n.orders, monetary = n.monetary,
    currency = CASE WHEN n.currency <> '' THEN n.currency ELSE t.currency END,
    first_order_at = n.first_at, last_order_at = n.last_at, activity_key = n.key,
    r_score = n.r, f_score = n.fs, m_score = n.m, rfm_group = n.grp, stage = n.stg,
    scored_at = CASE WHEN (t.r_score, t.f_score, t.m_score, t.rfm_group, t.stage)
                          IS DISTINCT FROM (n.r::smallint, n.fs, n.m::smallint, n.grp, n.stg)
                     THEN %(now)s::timestamptz ELSE t.scored_at END
FROM named n
WHERE t.merchant_id = %(merchant)s AND t.customer_id = %(customer)s
RETURNING {", ".join("t." + c.strip() for c in CUSTOMER_COLUMNS.split(","))}
"""


# What a customer's change writes besides the customer, in one statement (data-modifying CTEs
# all run; the flags skip what does not apply): the group counts, the history row, the group
# move and the rfm.updated row of the outbox.
_RECORD_CHANGE = f"""
WITH counts AS (
    INSERT INTO rfm_segment_counts (merchant_id, rfm_group, customers)
    SELECT %s, g, d FROM unnest(%s::text[], %s::bigint[]) AS moves(g, d) ORDER BY g
    ON CONFLICT (merchant_id, rfm_group) DO UPDATE
    SET customers = rfm_segment_counts.customers + excluded.customers, updated_at = now()
), history AS (
    INSERT INTO rfm_score_history (merchant_id, customer_id, r_score, f_score, m_score,
                                   rfm_group, stage, orders, monetary, created_at)
    SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::timestamptz WHERE %s
), deltas AS (
    INSERT INTO rfm_segment_deltas (merchant_id, customer_id, from_group, to_group, recency,
                                    frequency, monetary, created_at)
    SELECT %s, %s, %s, %s, %s::float8, %s, %s, %s::timestamptz WHERE %s
)
INSERT INTO outbox {outbox.COLUMNS} SELECT {outbox.VALUES} WHERE %s
"""


def merchant_lock_key(merchant_id: str) -> str:
    """The advisory lock a merchant's rescore holds exclusively and each event shares."""
    return f"rfm:{merchant_id}"


def customer_of(row: dict[str, Any]) -> CustomerRfm:
    return CustomerRfm(
        merchant_id=row["merchant_id"],
        customer_id=row["customer_id"],
        orders=row["orders"],
        monetary=Decimal(row["monetary"]),
        currency=row["currency"],
        first_order_at=row["first_order_at"],
        last_order_at=row["last_order_at"],
        activity_key=row["activity_key"],
        scores=Scores(row["r_score"], row["f_score"], row["m_score"]),
        group=Group(row["rfm_group"]),
        stage=Stage(row["stage"]),
        scored_at=row["scored_at"],
    )


@dataclass(frozen=True)
class OrderFacts:
    """What RFM keeps of an order."""

    order_id: str
    customer_id: str
    placed_at: datetime
    amount: Decimal
    currency: str
    cancelled: bool


@dataclass(frozen=True)
class Applied:
    """An event's outcome: whether it was applied now, the change it made (None: scores,
    group and stage as before), and whether the merchant's customer count moved past the
    rescore threshold (the caller rescored the merchant then)."""

    applied: bool
    change: Change | None = None
    needs_rescore: bool = False


# What an event writes before its customer is rescored; returns that customer (None: nobody).
Write = Callable[[AsyncConnection], Awaitable[str | None]]


class ScoreStore:
    def __init__(
        self,
        database: Database,
        *,
        half_life_days: float,
        rescore_threshold: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._pool = database.pool
        self.half_life_days = half_life_days
        self._threshold = rescore_threshold
        self._clock = clock

    # ---- events -------------------------------------------------------------------------

    async def record_order(self, event: ConsumedEvent, order: OrderFacts) -> Applied:
        """An order (orders/create, orders/paid, orders/cancelled): stored once, its
        cancellation kept whichever topic comes first."""

        async def write(conn: AsyncConnection) -> str:
            cursor = await conn.execute(
                "INSERT INTO orders (merchant_id, order_id, customer_id, placed_at, amount,"
                " currency, cancelled) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (merchant_id, order_id) DO UPDATE"
                " SET cancelled = orders.cancelled OR excluded.cancelled"
                " RETURNING customer_id",
                (
                    event.merchant_id,
                    order.order_id,
                    order.customer_id,
                    order.placed_at,
                    order.amount,
                    order.currency,
                    order.cancelled,
                ),
                prepare=True,
            )
            row = await cursor.fetchone()
            assert row is not None  # an upsert always returns its row
            return str(row[0])

        return await self.apply(event, write)

    async def record_refund(
        self, event: ConsumedEvent, refund_id: str, order_id: str, amount: Decimal
    ) -> Applied:
        """A refund, once; it rescores the order's customer (none yet when the refund arrives
        before its order: the order's own event then counts it)."""

        async def write(conn: AsyncConnection) -> str | None:
            await conn.execute(
                "INSERT INTO refunds (merchant_id, refund_id, order_id, amount)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (event.merchant_id, refund_id, order_id, amount),
            )
            cursor = await conn.execute(
                "SELECT customer_id FROM orders WHERE merchant_id = %s AND order_id = %s",
                (event.merchant_id, order_id),
            )
            row = await cursor.fetchone()
            return None if row is None else str(row[0])

        return await self.apply(event, write)

    async def record_customer(self, event: ConsumedEvent, customer_id: str) -> Applied:
        """A customer Shopify told of (customers/create): a prospect until a first order."""

        async def write(conn: AsyncConnection) -> str:
            return customer_id

        return await self.apply(event, write)

    async def apply(self, event: ConsumedEvent, write: Write) -> Applied:
        merchant_id = event.merchant_id
        async with self._pool.connection() as conn, conn.transaction():
            if not await inbox.claim(conn, event):
                return Applied(False)
            # Shared: events of a merchant go on side by side, but not during its rescore
            # (which holds the lock exclusively), so a rescore never overwrites newer facts.
            await conn.execute(
                "SELECT pg_advisory_xact_lock_shared(hashtextextended(%s, 0))",
                (merchant_lock_key(merchant_id),),
                prepare=True,
            )
            customer_id = await write(conn)
            if customer_id is None:
                return Applied(True)
            return await self._rescore_customer(conn, merchant_id, customer_id)

    async def _rescore_customer(
        self, conn: AsyncConnection, merchant_id: str, customer_id: str
    ) -> Applied:
        cursor = conn.cursor(row_factory=dict_row)
        # Creates or locks the customer in one statement (a no-op update locks the row and
        # returns it as it was; xmax = 0 only for a row this statement inserted). The rescore
        # below then reads (a new statement, a new snapshot) every order committed before, a
        # concurrent refund's included.
        await cursor.execute(
            "INSERT INTO customer_rfm (merchant_id, customer_id) VALUES (%s, %s)"
            " ON CONFLICT (merchant_id, customer_id) DO UPDATE"
            " SET merchant_id = excluded.merchant_id"
            f" RETURNING (xmax = 0) AS inserted, {CUSTOMER_COLUMNS}",
            (merchant_id, customer_id),
            prepare=True,
        )
        before_row = await cursor.fetchone()
        assert before_row is not None  # an upsert always returns its row
        inserted = bool(before_row["inserted"])
        before = customer_of(before_row)
        now = self._clock()
        await cursor.execute(
            _RESCORE_CUSTOMER,
            {
                "merchant": merchant_id,
                "customer": customer_id,
                "epoch": EPOCH,
                "half_life": self.half_life_days,
                "now": now,
            },
            prepare=True,
        )
        after_row = await cursor.fetchone()
        assert after_row is not None
        after = customer_of(after_row)
        change = await self._record_change(conn, before if not inserted else None, after, now)
        counted_before = 0 if inserted else before.orders
        needs_rescore = (counted_before == 0) != (after.orders == 0) and await self._past_threshold(
            conn, merchant_id
        )
        return Applied(True, change, needs_rescore)

    async def _record_change(
        self, conn: AsyncConnection, before: CustomerRfm | None, after: CustomerRfm, now: datetime
    ) -> Change | None:
        """The group counts moved, and for a visible change its history row, its group move
        and its rfm.updated: one statement (a round trip per event is most of its cost)."""
        merchant_id = after.merchant_id
        previous_group = Group.PROSPECT if before is None else before.group
        moves: list[tuple[str, int]] = []
        if before is None:
            moves = [(after.group.value, 1)]
        elif before.group != after.group:
            moves = [(before.group.value, -1), (after.group.value, 1)]
        # Sorted: two transactions moving customers between the same two groups lock the count
        # rows in one order, never in a cycle.
        moves.sort()
        old = (
            (Scores(0, 0, 0), Group.PROSPECT, Stage.PROSPECT)
            if before is None
            else (before.scores, before.group, before.stage)
        )
        visible = (after.scores, after.group, after.stage) != old
        if not visible and not moves:
            return None
        change = Change(before, after)
        activity = activity_at(after.activity_key, now, self.half_life_days)
        event = outbox.row(
            merchant_id, events.rfm_updated(change, activity=activity), occurred_at=now
        )
        await conn.execute(
            _RECORD_CHANGE,
            (
                # counts
                merchant_id,
                [group for group, _ in moves],
                [delta for _, delta in moves],
                # history
                merchant_id,
                after.customer_id,
                after.scores.recency,
                after.scores.frequency,
                after.scores.monetary,
                after.group.value,
                after.stage.value,
                after.orders,
                after.monetary,
                now,
                visible,
                # deltas
                merchant_id,
                after.customer_id,
                previous_group.value,
                after.group.value,
                after.activity_key,
                after.orders,
                after.monetary,
                now,
                visible and previous_group != after.group,
                # outbox
                *event.params,
                visible,
            ),
            prepare=True,
        )
        # Nothing a consumer would see changed (a new prospect: counted only): no event.
        return change if visible else None

    async def _past_threshold(self, conn: AsyncConnection, merchant_id: str) -> bool:
        """Whether the merchant's customers with an order moved by more than the threshold
        since its cutoffs were computed (always, before its first cutoffs)."""
        cursor = await conn.execute(
            "SELECT (SELECT coalesce(sum(customers), 0) FROM rfm_segment_counts"
            "        WHERE merchant_id = %s AND rfm_group <> 'prospect'),"
            "       (SELECT customers FROM rfm_cutoffs WHERE merchant_id = %s)",
            (merchant_id, merchant_id),
        )
        row = await cursor.fetchone()
        assert row is not None
        now_count, then_count = int(row[0]), row[1]
        if then_count is None:
            return True
        return abs(now_count - int(then_count)) > self._threshold * int(then_count)

    # ---- reads --------------------------------------------------------------------------

    async def customer(self, merchant_id: str, customer_id: str) -> CustomerRfm:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"SELECT {CUSTOMER_COLUMNS} FROM customer_rfm"
                " WHERE merchant_id = %s AND customer_id = %s",
                (merchant_id, customer_id),
                prepare=True,
            )
            row = await cursor.fetchone()
        if row is None:
            raise CustomerNotFound(customer_id)
        return customer_of(row)

    async def history(self, merchant_id: str, customer_id: str, limit: int) -> list[HistoryEntry]:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                "SELECT r_score, f_score, m_score, rfm_group, stage, orders, monetary, created_at"
                " FROM rfm_score_history WHERE merchant_id = %s AND customer_id = %s"
                " ORDER BY created_at DESC LIMIT %s",
                (merchant_id, customer_id, limit),
            )
            rows = await cursor.fetchall()
        return [
            HistoryEntry(
                scores=Scores(r["r_score"], r["f_score"], r["m_score"]),
                group=Group(r["rfm_group"]),
                stage=Stage(r["stage"]),
                orders=r["orders"],
                monetary=Decimal(r["monetary"]),
                created_at=r["created_at"],
            )
            for r in rows
        ]

    async def cutoffs(self, merchant_id: str) -> Cutoffs | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT recency_key, monetary, customers, half_life_days, computed_at"
                " FROM rfm_cutoffs WHERE merchant_id = %s",
                (merchant_id,),
            )
            row = await cursor.fetchone()
        if row is None:
            return None
        recency, monetary, customers, half_life, computed_at = row
        return Cutoffs(
            recency_key=None if recency is None else tuple(recency),
            monetary=None if monetary is None else tuple(monetary),
            customers=int(customers),
            half_life_days=float(half_life),
            computed_at=computed_at,
        )

    async def group_counts(self, merchant_id: str) -> dict[Group, int]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT rfm_group, customers FROM rfm_segment_counts"
                " WHERE merchant_id = %s AND customers > 0 ORDER BY rfm_group",
                (merchant_id,),
            )
            return {Group(group): int(n) for group, n in await cursor.fetchall()}

    async def group_count_history(
        self, merchant_id: str, start: datetime, end: datetime
    ) -> list[tuple[datetime, dict[Group, int]]]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT day, counts FROM rfm_segment_count_history"
                " WHERE merchant_id = %s AND day BETWEEN %s::timestamptz::date"
                " AND %s::timestamptz::date ORDER BY day",
                (merchant_id, start, end),
            )
            rows = await cursor.fetchall()
        return [
            (
                datetime.combine(day, datetime.min.time(), tzinfo=start.tzinfo),
                {Group(g): int(n) for g, n in counts.items()},
            )
            for day, counts in rows
        ]

    async def matching(
        self, merchant_id: str, where: str, params: Sequence[Any], limit: int, offset: int = 0
    ) -> tuple[int, list[CustomerRfm]]:
        """How many of the merchant's customers match `where` (a condition the caller built
        from fixed SQL and parameters only) and the first `limit` of them, biggest spenders
        first."""
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"SELECT count(*) AS n FROM customer_rfm WHERE merchant_id = %s AND ({where})",
                (merchant_id, *params),
            )
            counted = await cursor.fetchone()
            await cursor.execute(
                f"SELECT {CUSTOMER_COLUMNS} FROM customer_rfm"
                f" WHERE merchant_id = %s AND ({where})"
                " ORDER BY monetary DESC, customer_id LIMIT %s OFFSET %s",
                (merchant_id, *params, limit, offset),
            )
            rows = await cursor.fetchall()
        assert counted is not None
        return int(counted["n"]), [customer_of(row) for row in rows]

    async def nudges(
        self, merchant_id: str, groups: Sequence[Group], limit: int, offset: int
    ) -> list[CustomerRfm]:
        """Customers of `groups` in that order of urgency, then biggest spenders first."""
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"SELECT {CUSTOMER_COLUMNS} FROM customer_rfm"
                " WHERE merchant_id = %s AND rfm_group = ANY(%s)"
                " ORDER BY array_position(%s::text[], rfm_group), monetary DESC, customer_id"
                " LIMIT %s OFFSET %s",
                (merchant_id, [g.value for g in groups], [g.value for g in groups], limit, offset),
            )
            return [customer_of(row) for row in await cursor.fetchall()]

    async def scatter_sample(self, merchant_id: str, limit: int) -> tuple[int, list[CustomerRfm]]:
        """Up to `limit` customers with an order, a uniform sample when there are more, and
        how many there are."""
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                "SELECT coalesce(sum(customers), 0) AS n FROM rfm_segment_counts"
                " WHERE merchant_id = %s AND rfm_group <> 'prospect'",
                (merchant_id,),
            )
            counted = await cursor.fetchone()
            assert counted is not None
            total = int(counted["n"])
            # Every customer's row is read when sampling; a random order over the few columns
            # needed keeps that one pass (1M rows: well under a second).
            await cursor.execute(
                f"SELECT {CUSTOMER_COLUMNS} FROM customer_rfm"
                " WHERE merchant_id = %s AND orders > 0"
                + (" ORDER BY random()" if total > limit else " ORDER BY customer_id")
                + " LIMIT %s",
                (merchant_id, limit),
            )
            return total, [customer_of(row) for row in await cursor.fetchall()]

    # ---- personal data ------------------------------------------------------------------

    async def export_customer(self, merchant_id: str, customer_id: str) -> dict[str, Any]:
        """Everything RFM holds of one customer (GDPR data request)."""
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"SELECT {CUSTOMER_COLUMNS} FROM customer_rfm"
                " WHERE merchant_id = %s AND customer_id = %s",
                (merchant_id, customer_id),
            )
            customer = await cursor.fetchone()
            await cursor.execute(
                "SELECT order_id, placed_at, amount, currency, cancelled FROM orders"
                " WHERE merchant_id = %s AND customer_id = %s ORDER BY placed_at",
                (merchant_id, customer_id),
            )
            orders = await cursor.fetchall()
            await cursor.execute(
                "SELECT r.refund_id, r.order_id, r.amount FROM refunds r JOIN orders o"
                " ON o.merchant_id = r.merchant_id AND o.order_id = r.order_id"
                " WHERE o.merchant_id = %s AND o.customer_id = %s ORDER BY r.refund_id",
                (merchant_id, customer_id),
            )
            refunds = await cursor.fetchall()
            await cursor.execute(
                "SELECT r_score, f_score, m_score, rfm_group, stage, orders, monetary, created_at"
                " FROM rfm_score_history WHERE merchant_id = %s AND customer_id = %s"
                " ORDER BY created_at",
                (merchant_id, customer_id),
            )
            history = await cursor.fetchall()
        return {
            "customer": customer,
            "orders": orders,
            "refunds": refunds,
            "score_history": history,
        }

    async def erase_customer(self, merchant_id: str, customer_id: str) -> int:
        """Forgets one customer: facts, scores, orders, refunds, history, group moves (the
        group counts lose them too) and their published `rfm.updated` rows. Returns the rows
        deleted (0 on a repeat)."""
        erased = 0
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock_shared(hashtextextended(%s, 0))",
                (merchant_lock_key(merchant_id),),
            )
            cursor = await conn.execute(
                "DELETE FROM customer_rfm WHERE merchant_id = %s AND customer_id = %s"
                " RETURNING rfm_group",
                (merchant_id, customer_id),
            )
            groups = await cursor.fetchall()
            erased += len(groups)
            for (group,) in groups:
                await conn.execute(
                    "UPDATE rfm_segment_counts SET customers = customers - 1, updated_at = now()"
                    " WHERE merchant_id = %s AND rfm_group = %s",
                    (merchant_id, group),
                )
            cursor = await conn.execute(
                "DELETE FROM refunds WHERE merchant_id = %s AND order_id IN"
                " (SELECT order_id FROM orders WHERE merchant_id = %s AND customer_id = %s)",
                (merchant_id, merchant_id, customer_id),
            )
            erased += cursor.rowcount
            for table in ("orders", "rfm_score_history", "rfm_segment_deltas"):
                cursor = await conn.execute(
                    f"DELETE FROM {table} WHERE merchant_id = %s AND customer_id = %s",
                    (merchant_id, customer_id),
                )
                erased += cursor.rowcount
            # rfm.updated is keyed by customer: its rows name them (README "GDPR").
            await personal_data.redact_unsent_events(conn, merchant_id, (customer_id,))
            await personal_data.forget_sent_events(conn, merchant_id, customer_id)
        return erased

    async def erase_merchant(self, merchant_id: str) -> int:
        """Forgets a merchant (shop/redact): every table of this schema. Returns the rows
        deleted."""
        erased = 0
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (merchant_lock_key(merchant_id),),
            )
            for table in (
                "customer_rfm",
                "orders",
                "refunds",
                "rfm_cutoffs",
                "rfm_segment_counts",
                "rfm_segment_count_history",
                "rfm_score_history",
                "rfm_segment_deltas",
            ):
                cursor = await conn.execute(
                    f"DELETE FROM {table} WHERE merchant_id = %s", (merchant_id,)
                )
                erased += cursor.rowcount
            erased += await personal_data.erase_platform_rows(conn, merchant_id)
        return erased

    # ---- upkeep -------------------------------------------------------------------------

    async def ensure_partitions(self, months_ahead: int = 2) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("SELECT rfm_ensure_partitions(%s)", (months_ahead,))

    async def drop_partitions(self, retention_months: int) -> list[str]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute("SELECT rfm_drop_partitions(%s)", (retention_months,))
            return [name for (name,) in await cursor.fetchall()]
