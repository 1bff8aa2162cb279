"""The points liability sums (liability.py) in one set-based pass over a merchant's ledger.

First-in first-out without walking each customer's history: on a customer's "credit axis" each
credit occupies [lo, hi) (the credits before it, then itself), and each debit [lo, hi) on the
debit axis likewise. Since a debit consumes the oldest points left and a balance never goes
below zero, the debit's range consumes exactly the same range of the credit axis, so
    what is left of a lot       = hi - greatest(lo, least(hi, the customer's total debits)),
    what a debit took of a lot  = the overlap of their ranges,
which is what expiry.open_lots computes transaction by transaction.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from datetime import datetime, timedelta
from typing import Protocol, cast

from psycopg import AsyncConnection

from loyalnest.platform.events import inbox
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.postgres import Database
from loyalnest.services.points.liability import (
    BreakageFigures,
    Bucket,
    LedgerTotals,
    LiabilityFigures,
    age_cutoffs,
    ledger_movement,
)

_RANGES = """
WITH tx AS (
    SELECT customer_id, type, points, created_at,
           sum(greatest(points, 0)) OVER w - greatest(points, 0) AS c_lo,
           sum(greatest(-points, 0)) OVER w - greatest(-points, 0) AS d_lo
      FROM points_transactions
     WHERE merchant_id = %(merchant)s AND created_at <= %(now)s
    WINDOW w AS (PARTITION BY customer_id ORDER BY sequence)
),
credits AS (
    SELECT customer_id, created_at, c_lo AS lo, c_lo + points AS hi FROM tx WHERE points > 0
),
debits AS (
    SELECT customer_id, type, d_lo AS lo, d_lo - points AS hi FROM tx WHERE points < 0
),
spent AS (
    SELECT customer_id, max(hi) AS total FROM debits GROUP BY customer_id
),
lots AS (
    SELECT c.customer_id, c.created_at, c.lo, c.hi,
           c.hi - greatest(c.lo, least(c.hi, coalesce(s.total, 0))) AS open
      FROM credits c LEFT JOIN spent s USING (customer_id)
)
"""

_OUTSTANDING = (
    _RANGES
    + """
SELECT CASE WHEN l.created_at > %(c0)s THEN %(b0)s
            WHEN l.created_at > %(c1)s THEN %(b1)s
            WHEN l.created_at > %(c2)s THEN %(b2)s
            WHEN l.created_at > %(c3)s THEN %(b3)s
            ELSE %(b4)s END AS bucket,
       coalesce(t.tier_id, '') AS tier_id,
       l.customer_id, l.open
  FROM lots l
  LEFT JOIN customer_tiers t
    ON t.merchant_id = %(merchant)s AND t.customer_id = l.customer_id
 WHERE l.open > 0
"""
)

_GROUPED = f"""
WITH open_lots AS ({_OUTSTANDING})
SELECT bucket, tier_id, grouping(bucket) AS by_tier, sum(open)::bigint,
       count(DISTINCT customer_id)
  FROM open_lots
 GROUP BY GROUPING SETS ((bucket), (tier_id))
"""

_BREAKAGE = (
    _RANGES
    + """,
cohort AS (SELECT * FROM lots WHERE created_at <= %(horizon)s)
SELECT coalesce((SELECT sum(hi - lo) FROM cohort), 0)::bigint,
       coalesce((SELECT sum(open) FROM cohort), 0)::bigint,
       coalesce(sum(least(c.hi, d.hi) - greatest(c.lo, d.lo))
                FILTER (WHERE d.type = 'redeem'), 0)::bigint,
       coalesce(sum(least(c.hi, d.hi) - greatest(c.lo, d.lo))
                FILTER (WHERE d.type = 'expire'), 0)::bigint,
       coalesce(sum(least(c.hi, d.hi) - greatest(c.lo, d.lo))
                FILTER (WHERE d.type NOT IN ('redeem', 'expire')), 0)::bigint
  FROM cohort c
  JOIN debits d ON d.customer_id = c.customer_id AND d.lo < c.hi AND d.hi > c.lo
"""
)


async def liability(
    conn: AsyncConnection, merchant_id: str, now: datetime, horizon_days: int
) -> LiabilityFigures:
    params: dict[str, object] = {"merchant": merchant_id, "now": now}
    cutoffs = age_cutoffs(now)
    for i, (label, cutoff) in enumerate(cutoffs):
        params[f"b{i}"] = label
        if cutoff is not None:
            params[f"c{i}"] = cutoff
    params["horizon"] = now - timedelta(days=horizon_days)
    by_age: dict[str, Bucket] = {}
    by_tier: list[Bucket] = []
    cursor = await conn.execute(_GROUPED, params)
    for bucket, tier_id, tier_row, points, customers in await cursor.fetchall():
        if tier_row:
            by_tier.append(Bucket(tier_id, points, customers))
        else:
            by_age[bucket] = Bucket(bucket, points, customers)
    cursor = await conn.execute(_BREAKAGE, params)
    row = await cursor.fetchone()
    assert row is not None  # an aggregate without GROUP BY always answers one row
    earned, outstanding, redeemed, expired, taken_back = row
    return LiabilityFigures(
        by_age=[by_age[label] for label, _ in cutoffs if label in by_age],
        by_tier=sorted(by_tier, key=lambda b: b.key),
        breakage=BreakageFigures(
            earned=earned,
            redeemed=redeemed,
            expired=expired,
            outstanding=outstanding,
            taken_back=taken_back,
        ),
    )


class _Movement(Protocol):
    """What every ledger event (PointsEarned, PointsRedeemed, ...) has."""

    points: int
    transaction_id: str


_UPSERT = (
    " ON CONFLICT (merchant_id) DO UPDATE SET"
    " outstanding = t.outstanding + EXCLUDED.outstanding,"
    " earned = t.earned + EXCLUDED.earned, redeemed = t.redeemed + EXCLUDED.redeemed,"
    " expired = t.expired + EXCLUDED.expired, adjusted = t.adjusted + EXCLUDED.adjusted,"
    " reversed = t.reversed + EXCLUDED.reversed, events = t.events + EXCLUDED.events,"
    " updated_at = EXCLUDED.updated_at"
)
# A ledger event counted once, in one statement: recorded for the consumer (inbox), its
# transaction marked counted unless the backfill did, then its movement added to the row.
_COUNT_EVENT = (
    f"WITH {inbox.CLAIMED},"
    " counted AS (INSERT INTO liability_counted (transaction_id, merchant_id)"
    f" SELECT %(transaction_id)s::uuid, %(merchant_id)s WHERE {inbox.CLAIMED_NOW}"
    " ON CONFLICT DO NOTHING RETURNING 1),"
    " added AS (INSERT INTO liability_totals AS t (merchant_id, outstanding, earned, redeemed,"
    " expired, adjusted, reversed, events, updated_at)"
    " SELECT %(merchant_id)s, %(outstanding)s, %(earned)s, %(redeemed)s, %(expired)s,"
    " %(adjusted)s, %(reversed)s, %(events)s, now() WHERE EXISTS (SELECT 1 FROM counted)"
    + _UPSERT
    + " RETURNING 1)"
    f" SELECT {inbox.CLAIMED_NOW}"
)


_TOTALS = ("outstanding", "earned", "redeemed", "expired", "adjusted", "reversed", "events")


def _movement_params(event: ConsumedEvent) -> dict[str, object]:
    movement = cast(_Movement, event.payload)
    m = ledger_movement(event.event_type, movement.points)
    return {
        "transaction_id": movement.transaction_id,
        "merchant_id": event.merchant_id,
        **{column: getattr(m, column) for column in _TOTALS},
    }


# A run of ledger events counted in one statement, as _COUNT_EVENT counts each: the events
# claimed, their transactions marked counted, and the movements of those marked now summed
# per merchant into its row (merchants in order: two runs lock shared rows in the same
# order). A transaction is counted once even if two events announce it. Answers the event
# ids claimed now.
_COUNT_EVENTS = (
    "WITH "
    + inbox.claimed_run(
        {"transaction_id": "uuid", "merchant_id": "text", **dict.fromkeys(_TOTALS, "bigint")}
    )
    + ","
    " counted AS (INSERT INTO liability_counted (transaction_id, merchant_id)"
    " SELECT transaction_id, merchant_id FROM run"
    " WHERE event_id IN (SELECT event_id FROM claimed)"
    " ON CONFLICT DO NOTHING RETURNING transaction_id),"
    " movements AS (SELECT DISTINCT ON (transaction_id) * FROM run"
    " WHERE transaction_id IN (SELECT transaction_id FROM counted) ORDER BY transaction_id),"
    " added AS (INSERT INTO liability_totals AS t (merchant_id, "
    + ", ".join(_TOTALS)
    + ", updated_at) SELECT merchant_id, "
    + ", ".join(f"sum({column})" for column in _TOTALS)
    + ", now() FROM movements GROUP BY merchant_id ORDER BY merchant_id"
    + _UPSERT
    + " RETURNING 1)"
    " SELECT event_id FROM claimed"
)


class _LedgerEventCounter(inbox.BatchHandler):
    """The summary table's handler: each ledger event alone in one statement (_COUNT_EVENT),
    or a partition's run of them in one (_COUNT_EVENTS): one round trip and one commit for
    the run instead of one each."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._one = inbox.in_one_statement(database, _COUNT_EVENT, _movement_params)

    @property
    def batch_key(self) -> Hashable:
        return self

    async def __call__(self, event: ConsumedEvent) -> bool:
        return await self._one(event)

    async def apply_many(
        self,
        items: Sequence[tuple[ConsumedEvent, inbox.BatchHandler]],
        scope: inbox.EventScope,
    ) -> list[bool]:
        events = [event for event, _ in items]
        columns: dict[str, list[object]] = {}
        for event in events:
            for name, value in _movement_params(event).items():
                columns.setdefault(name, []).append(value)
        async with self._database.pool.connection() as conn:
            cursor = await conn.execute(
                _COUNT_EVENTS, {**inbox.run_claim_params(events), **columns}, prepare=True
            )
            claimed = {row[0] for row in await cursor.fetchall()}
        return inbox.first_deliveries(events, claimed)


# One merchant's transactions not counted yet: marked, then summed into the row (the
# movements as ledger_movement adds them: redeemed and expired as positive amounts).
_BACKFILL = (
    "WITH fresh AS ("
    " INSERT INTO liability_counted (transaction_id, merchant_id)"
    " SELECT transaction_id, merchant_id FROM points_transactions"
    " WHERE merchant_id = %(merchant)s ON CONFLICT DO NOTHING RETURNING transaction_id"
    "), sums AS ("
    " SELECT %(merchant)s AS merchant_id, coalesce(sum(p.points), 0) AS outstanding,"
    " coalesce(sum(p.points) FILTER (WHERE p.type = 'earn'), 0) AS earned,"
    " coalesce(-sum(p.points) FILTER (WHERE p.type = 'redeem'), 0) AS redeemed,"
    " coalesce(-sum(p.points) FILTER (WHERE p.type = 'expire'), 0) AS expired,"
    " coalesce(sum(p.points) FILTER (WHERE p.type = 'adjust'), 0) AS adjusted,"
    " coalesce(sum(p.points) FILTER (WHERE p.type = 'reversal'), 0) AS reversed,"
    " count(*) AS events, now() AS updated_at"
    " FROM points_transactions p JOIN fresh f USING (transaction_id)"
    " WHERE p.merchant_id = %(merchant)s HAVING count(*) > 0"
    "), up AS ("
    " INSERT INTO liability_totals AS t (merchant_id, outstanding, earned, redeemed, expired,"
    " adjusted, reversed, events, updated_at) SELECT * FROM sums" + _UPSERT + " RETURNING 1"
    ") SELECT events FROM sums"
)


class PostgresLiabilityTable:
    """The liability summary table (`liability_totals`, one row per merchant), fed by Points'
    own ledger events: `handler` applies each once (inbox: the event's id is recorded in the
    transaction that adds its movement), so a redelivery adds nothing.

    Each transaction is also marked counted, for good (`liability_counted`), so `backfill`
    can count the ledger written before the table existed (or while events were off) without
    counting any transaction twice, while the consumer runs: both insert the same marker, and
    the unique key makes the second wait for the first and then skip."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def handler(self) -> inbox.BatchHandler:
        return _LedgerEventCounter(self._database)

    async def backfill(self, merchant_id: str | None = None) -> tuple[int, int]:
        """Counts every transaction not counted yet (of `merchant_id`, default every
        merchant's), merchant by merchant (one transaction each); idempotent. (merchants
        changed, transactions counted)."""
        merchants = [merchant_id] if merchant_id is not None else []
        if merchant_id is None:
            async with self._database.pool.connection() as conn:
                cursor = await conn.execute("SELECT DISTINCT merchant_id FROM ledgers")
                merchants = [row[0] for row in await cursor.fetchall()]
        changed = counted = 0
        for merchant_id in merchants:
            async with self._database.pool.connection() as conn, conn.transaction():
                cursor = await conn.execute(_BACKFILL, {"merchant": merchant_id})
                row = await cursor.fetchone()
            if row is not None:
                changed += 1
                counted += int(row[0])
        return changed, counted

    async def totals(self, merchant_id: str) -> LedgerTotals:
        async with self._database.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT outstanding, earned, redeemed, expired, adjusted, reversed, events,"
                " updated_at FROM liability_totals WHERE merchant_id = %s",
                (merchant_id,),
            )
            row = await cursor.fetchone()
        return LedgerTotals(*row) if row is not None else LedgerTotals()
