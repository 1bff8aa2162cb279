"""Applying each event once: its id is recorded in the same transaction as its effect
(processed_events, platform_0003_processed_events.sql).

Most handlers need only `transactional`:

    handlers = {"user.created": transactional(database, open_ledger)}

    async def open_ledger(conn: AsyncConnection, event: ConsumedEvent) -> None:
        ...  # the effect, in the transaction that also records event.event_id

An effect that is a few writes SQL can chain may instead be one statement with the claim
(`in_one_statement`): one round trip, no transaction block, for a hot path.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from psycopg import AsyncConnection

from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.observability import get_logger
from loyalnest.platform.postgres import Database, require_transaction

log = get_logger(__name__)

# What a consumer runs per event: True when it applied the event now, False when the event
# had been applied before (a redelivery).
Handler = Callable[[ConsumedEvent], Awaitable[bool]]
Effect = Callable[[AsyncConnection, ConsumedEvent], Awaitable[None]]
# Opens the per-event scope (trace span, log context) around an effect applied in a batch.
EventScope = Callable[[ConsumedEvent], AbstractContextManager[object]]


async def claim(conn: AsyncConnection, event: ConsumedEvent) -> bool:
    """Records the event for its consumer group inside the caller's transaction.

    False when it was recorded before: skip the effect. A concurrent delivery of the same
    event (after a rebalance) waits here for the first one's transaction to finish.
    """
    require_transaction(conn, "inbox.claim() must run inside the effect's transaction")
    cursor = await conn.execute(
        f"WITH {CLAIMED} SELECT {CLAIMED_NOW}", claim_params(event), prepare=True
    )
    row = await cursor.fetchone()
    return row is not None and bool(row[0])


async def claim_many(conn: AsyncConnection, events: Sequence[ConsumedEvent]) -> list[bool]:
    """`claim` for a run of events in one statement (one round trip instead of one each),
    inside the caller's transaction: per event, whether it is recorded now. An event twice
    in the run is claimed by its first delivery."""
    require_transaction(conn, "inbox.claim_many() must run inside the effect's transaction")
    cursor = await conn.execute(_CLAIM_MANY, run_claim_params(events), prepare=True)
    return first_deliveries(events, {row[0] for row in await cursor.fetchall()})


def first_deliveries(events: Sequence[ConsumedEvent], claimed: set[str]) -> list[bool]:
    """Per event of a run, whether it was claimed now: its id in `claimed`, the ids a run's
    claim returned. An event twice in the run is answered True once, for its first delivery
    (the second would have found the first's row)."""
    results = []
    for event in events:
        results.append(event.event_id in claimed)
        claimed.discard(event.event_id)
    return results


class BatchHandler(ABC):
    """A Handler the consumer may also hand a run of events at once (`apply_many`): a
    partition's consecutive events whose handlers share a `batch_key`, or a small poll's
    partitions whose events all do (each partition's in order). A handler that can apply
    many events for about the cost of one (one transaction, one statement, one round trip)
    saves what dominates an event's cost.

    When `apply_many` raises, the consumer applies the run again one event at a time, so a
    poison event fails (and is dead-lettered) alone. So `apply_many` must leave each event
    either applied or not, never half: what it applied before it failed is then applied
    again, which every handler's idempotency makes a no-op (counted as a duplicate).
    """

    @property
    @abstractmethod
    def batch_key(self) -> Hashable:
        """Consecutive events whose handlers have the same key may go to one apply_many."""

    @abstractmethod
    async def __call__(self, event: ConsumedEvent) -> bool: ...

    @abstractmethod
    async def apply_many(
        self, items: Sequence[tuple[ConsumedEvent, BatchHandler]], scope: EventScope
    ) -> list[bool]:
        """Applies every item (an event and its handler, whose batch_key is this one's);
        what `__call__` answers, per item. `scope(event)` opens the event's span and log
        context around the work that is the event's own."""


class TransactionalHandler(BatchHandler):
    """A Handler running `effect` and recording the event in one transaction.

    The consumer may also hand it a run of events at once (`apply_many`, BatchHandler):
    one transaction for all of them saves a BEGIN/COMMIT and a connection checkout per
    event, which is most of an event's cost. All or nothing.
    """

    def __init__(self, database: Database, effect: Effect) -> None:
        self.database = database
        self.effect = effect

    @property
    def batch_key(self) -> Hashable:
        return self.database

    async def __call__(self, event: ConsumedEvent) -> bool:
        async with self.database.pool.connection() as conn, conn.transaction():
            if not await claim(conn, event):
                return False
            await self.effect(conn, event)
            return True

    async def apply_many(
        self, items: Sequence[tuple[ConsumedEvent, BatchHandler]], scope: EventScope
    ) -> list[bool]:
        """Claims the run's events in one statement, then applies each claimed one with its
        own handler's effect, all in one transaction (the handlers share this one's
        database: its batch_key)."""
        async with self.database.pool.connection() as conn, conn.transaction():
            claimed = await claim_many(conn, [event for event, _ in items])
            for (event, handler), applied in zip(items, claimed, strict=True):
                assert isinstance(handler, TransactionalHandler)
                if applied:
                    with scope(event):
                        await handler.effect(conn, event)
        return claimed


def transactional(database: Database, effect: Effect) -> TransactionalHandler:
    """A handler that runs `effect` and records the event in one transaction."""
    return TransactionalHandler(database, effect)


# The event's claim as the first CTE of a statement that applies its effect
# (`in_one_statement`); `claim_params` are its parameters.
CLAIMED = (
    'claimed AS (INSERT INTO processed_events (consumer, event_id, topic, "partition", "offset")'
    " VALUES (%(event_consumer)s, %(event_id)s, %(event_topic)s, %(event_partition)s,"
    " %(event_offset)s) ON CONFLICT DO NOTHING RETURNING 1)"
)
CLAIMED_NOW = "EXISTS (SELECT 1 FROM claimed)"


def claim_params(event: ConsumedEvent) -> dict[str, object]:
    return {
        "event_consumer": event.consumer,
        "event_id": event.event_id,
        "event_topic": event.topic,
        "event_partition": event.partition,
        "event_offset": event.offset,
    }


def claimed_run(columns: Mapping[str, str] | None = None) -> str:
    """A run's claim as the first CTEs of a statement that applies the run's effects (the
    batch form of CLAIMED): `run`, one row per event in the run's order, with the claim's
    columns then the statement's own `columns` (name: SQL type, each a parameter of that name
    holding an array); `claimed`, the ids of the events recorded now. `run_claim_params` are
    the claim's parameters."""
    own = dict(columns or {})
    arrays = "".join(f", %({name})s::{sql_type}[]" for name, sql_type in own.items())
    names = "".join(f", {name}" for name in own)
    return (
        "run AS (SELECT * FROM unnest(%(run_event_id)s::text[], %(run_topic)s::text[],"
        f" %(run_partition)s::int[], %(run_offset)s::bigint[]{arrays})"
        f' AS r(event_id, topic, "partition", "offset"{names})),'
        ' claimed AS (INSERT INTO processed_events (consumer, event_id, topic, "partition",'
        ' "offset") SELECT %(run_consumer)s, event_id, topic, "partition", "offset" FROM run'
        " ON CONFLICT DO NOTHING RETURNING event_id)"
    )


def run_claim_params(events: Sequence[ConsumedEvent]) -> dict[str, object]:
    consumers = {event.consumer for event in events}
    if len(consumers) != 1:
        raise ValueError(f"a run is one consumer's; got {sorted(consumers)}")
    return {
        "run_consumer": events[0].consumer,
        "run_event_id": [event.event_id for event in events],
        "run_topic": [event.topic for event in events],
        "run_partition": [event.partition for event in events],
        "run_offset": [event.offset for event in events],
    }


# A run's events recorded in one statement, in the run's (offset) order.
_CLAIM_MANY = f"WITH {claimed_run()} SELECT event_id FROM claimed"


def in_one_statement(
    database: Database, statement: str, params: Callable[[ConsumedEvent], dict[str, object]]
) -> Handler:
    """A handler recording the event and applying its effect in one statement (atomic as a
    transaction, one round trip instead of BEGIN, claim, effect..., COMMIT): `statement` is
    `WITH {CLAIMED}, ...`, guards every write on {CLAIMED_NOW} (directly or through the CTEs
    it chains) and answers {CLAIMED_NOW} in its first column. `params(event)`: its own
    parameters, beside `claim_params`'."""

    async def handle(event: ConsumedEvent) -> bool:
        async with database.pool.connection() as conn:
            cursor = await conn.execute(
                statement, {**claim_params(event), **params(event)}, prepare=True
            )
            row = await cursor.fetchone()
        return row is not None and bool(row[0])

    return handle


async def purge_processed(
    database: Database, older_than_seconds: float, limit: int = 10_000
) -> int:
    """Forgets processed events older than the topics' retention; bounded per call."""
    async with database.pool.connection() as conn:
        cursor = await conn.execute(
            "DELETE FROM processed_events WHERE ctid = ANY(ARRAY(SELECT ctid"
            " FROM processed_events WHERE processed_at < now() - make_interval(secs => %s)"
            " LIMIT %s))",
            (older_than_seconds, limit),
        )
        return cursor.rowcount


def purge_loop(
    database: Database, retention_seconds: float, interval_seconds: float = 300.0
) -> Callable[[], Coroutine[Any, Any, None]]:
    """A background loop that keeps processed_events bounded."""

    async def run() -> None:
        while True:
            try:
                while await purge_processed(database, retention_seconds) > 0:
                    pass
            except Exception as exc:  # the database is away; health reports that
                log.debug("processed_events purge failed", error=repr(exc))
            await asyncio.sleep(interval_seconds)

    return run
