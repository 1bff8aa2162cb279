"""The transactional outbox in a service's PostgreSQL schema (platform_0002_outbox.sql).

A state change and the event announcing it commit together or not at all:

    async with pool.connection() as conn, conn.transaction():
        ...                                         # the change; locks the aggregate
        await outbox.enqueue(conn, merchant_id, points_pb2.PointsEarned(...))

Enqueue after the statement that locks the aggregate (e.g. the UPDATE of the customer's
ledger row): a concurrent change of the same aggregate then waits for ours to commit before
it enqueues, so row ids follow commit order per aggregate, which the relay preserves.

Where the change is one INSERT, the change and its event can also be one statement (atomic on
its own, so no explicit transaction: one round trip instead of BEGIN, two INSERTs, COMMIT):

    event = outbox.row(merchant_id, payload)
    await conn.execute(
        "WITH change AS (INSERT ... ON CONFLICT DO NOTHING RETURNING 1)"
        f" INSERT INTO outbox {outbox.COLUMNS} SELECT {outbox.VALUES}"
        " WHERE EXISTS (SELECT 1 FROM change)",
        (*change_params, *event.params),
    )
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from loyalnest.platform.events.clients import OutgoingRecord
from loyalnest.platform.events.envelope import Envelope, new_event
from loyalnest.platform.postgres import Database, IdleProbe, require_transaction

# The rows of outbox_lanes (platform_0002_outbox.sql); a test checks they agree.
OUTBOX_LANES = 64


def lane_for(partition_key: str) -> int:
    # crc32: stable across processes and versions, unlike Python's salted hash().
    return zlib.crc32(partition_key.encode()) % OUTBOX_LANES


# An outbox row's columns and placeholders for its `row().params`. The casts type the
# parameters where nothing else does (`INSERT ... SELECT` without VALUES).
COLUMNS = "(event_id, event_type, topic, partition_key, lane, envelope, headers)"
VALUES = "%s::uuid, %s, %s, %s, %s::smallint, %s::bytea, %s::jsonb"


@dataclass(frozen=True)
class OutboxRow:
    """An event as the values of its outbox row (in `COLUMNS` order)."""

    envelope: Envelope
    params: tuple[Any, ...]


def row(merchant_id: str, payload: Message, *, occurred_at: datetime | None = None) -> OutboxRow:
    """The outbox row announcing `payload`, for a statement that inserts it together with the
    state change (see the module docstring); `enqueue` is the usual way."""
    event = new_event(merchant_id, payload, occurred_at=occurred_at)
    return OutboxRow(
        event.envelope,
        (
            event.event_id,
            event.spec.event_type,
            event.spec.topic.name,
            event.key,
            lane_for(event.key),
            event.value,
            Jsonb(dict(event.headers)),
        ),
    )


async def enqueue(
    conn: AsyncConnection,
    merchant_id: str,
    payload: Message,
    *,
    occurred_at: datetime | None = None,
) -> Envelope:
    """Adds an event to the outbox inside the caller's open transaction."""
    # Outside a transaction the row would commit on its own, with or without the change it
    # announces: the very failure the outbox exists to prevent.
    require_transaction(conn, "outbox.enqueue() must run inside the state change's transaction")
    event = row(merchant_id, payload, occurred_at=occurred_at)
    await conn.execute(
        f"INSERT INTO outbox {COLUMNS} VALUES ({VALUES})",
        event.params,
        prepare=True,
    )
    return event.envelope


# The rows of `enqueue_many` as one statement: a column of values each, in `COLUMNS` order.
_INSERT_MANY = (
    f"INSERT INTO outbox {COLUMNS} SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[],"
    " %s::text[], %s::smallint[], %s::bytea[], %s::jsonb[])"
)


async def enqueue_many(conn: AsyncConnection, events: Sequence[OutboxRow]) -> None:
    """Adds `events` (`row()` each) to the outbox inside the caller's open transaction, in
    their order, with one statement: for a change applied to many aggregates at once."""
    require_transaction(
        conn, "outbox.enqueue_many() must run inside the state change's transaction"
    )
    if events:
        columns = [list(column) for column in zip(*(event.params for event in events), strict=True)]
        await conn.execute(_INSERT_MANY, columns, prepare=True)


RowId = TypeVar("RowId")


@dataclass(frozen=True)
class PendingRow(Generic[RowId]):
    """An event a relay is to publish; `id` is what its source marks sent by (here the
    row id, in the MongoDB outbox the event id)."""

    id: RowId
    record: OutgoingRecord


class Claim:
    """Rows of the lanes a relay holds until `claim()` exits."""

    def __init__(self, conn: AsyncConnection | None, rows: Sequence[PendingRow[int]]) -> None:
        self._conn = conn
        self.rows = rows

    async def mark_sent(self, ids: Sequence[int]) -> None:
        if ids:
            assert self._conn is not None, "only a claim with rows has any to mark"
            await self._conn.execute(
                "UPDATE outbox SET sent_at = now() WHERE id = ANY(%s)", (list(ids),)
            )


@dataclass(frozen=True)
class Backlog:
    pending: int
    oldest_age_seconds: float


# A claim in one statement: the lanes' lock, then their oldest pending rows. The rows are
# locked too, though no relay contends for them (it holds their lanes): the statement's
# snapshot is taken before the lanes are locked, so a lane released meanwhile by a commit
# (another relay marking its rows sent, an erasure redacting or deleting them) would be read
# as it was. Locking a row reads its latest committed version and drops it if it no longer
# matches, as a second statement's fresh snapshot would.
_CLAIM = (
    "WITH held AS ("
    " SELECT lane FROM outbox_lanes"
    " WHERE EXISTS (SELECT FROM outbox WHERE outbox.lane = outbox_lanes.lane AND sent_at IS NULL)"
    " ORDER BY random() LIMIT %s FOR UPDATE SKIP LOCKED)"
    " SELECT id, topic, partition_key, envelope, headers FROM outbox"
    " WHERE sent_at IS NULL AND lane = ANY(ARRAY(SELECT lane FROM held)) ORDER BY id LIMIT %s"
    " FOR UPDATE OF outbox"
)


class PostgresOutbox:
    """The relay's side of one schema's outbox."""

    def __init__(self, database: Database) -> None:
        self._pool = database.pool
        self.name = database.spec.schema
        self._idle = IdleProbe(
            self._pool, "SELECT EXISTS (SELECT FROM outbox WHERE sent_at IS NULL)"
        )

    @contextlib.asynccontextmanager
    async def claim(self, limit: int, lanes: int) -> AsyncIterator[Claim]:
        """Locks up to `lanes` lanes with pending rows and yields their oldest rows.

        The lanes stay locked until the block exits, so a relay publishing them and
        marking them sent is never overtaken by another relay on the same keys: the
        others skip locked lanes rather than wait. Rows leave in id order per lane.
        """
        if not await self._idle.worth_a_round():
            # An idle relay polls ten times a second: one statement, not BEGIN, the lanes'
            # lock and COMMIT, until something is pending.
            yield Claim(None, [])
            return
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(_CLAIM, (lanes, limit), prepare=True)
            rows = [
                PendingRow(id_, OutgoingRecord.of(topic, key, bytes(value), headers))
                for id_, topic, key, value, headers in await cursor.fetchall()
            ]
            self._idle.found_nothing = not rows
            yield Claim(conn, rows)

    async def backlog(self) -> Backlog:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)"
                " FROM outbox WHERE sent_at IS NULL"
            )
            row = await cursor.fetchone()
        assert row is not None  # an aggregate always returns a row
        return Backlog(int(row[0]), float(row[1]))

    async def purge_sent(self, older_than_seconds: float, limit: int = 10_000) -> int:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox"
                " WHERE sent_at < now() - make_interval(secs => %s) ORDER BY id LIMIT %s)",
                (older_than_seconds, limit),
            )
            return cursor.rowcount
