"""AuditShipper: a schema's queued audit rows to `audit_log.recorded` events, in queue order.

The audit trigger writes a row and (audit_0003_shipping.sql) queues its id in the same
transaction; this loop moves queued rows into the outbox, and the outbox relay publishes them
to `loyalnest.audit.events` keyed by resource, where AdminCore keeps them. Moving a batch is
one transaction (enqueue events, drop their queue rows): a crash ships it again or not at
all, and AdminCore stores each log_id once, so nothing is lost or doubled.

While events are off (`events_enabled`) nothing relays the outbox, but the queue must not
grow without bound either: the process then runs the shipper with `keep` (the setting
`audit_queue_bound`), which moves only the rows beyond the newest `keep` into the outbox,
oldest first, every `BOUNDED_INTERVAL_SECONDS`. No row is lost or reordered (the queue's order
is kept: the oldest leave first, the rest follow when events are on), and the outbox is the
one backlog, as for every other event while events are off; below the bound nothing changes.

One shipper per schema at a time (a transaction-scoped advisory lock named after the schema):
two would race on one resource's rows and could enqueue them out of order. The others skip
the round rather than wait. Runs in every process of an audited service
(event_loops.postgres_event_loops), so no deployment change is needed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from google.protobuf import json_format, struct_pb2
from psycopg.rows import dict_row

from loyalnest.gen.events.v1 import audit_pb2
from loyalnest.platform.events import outbox
from loyalnest.platform.observability import get_logger
from loyalnest.platform.postgres import Database, IdleProbe
from loyalnest.platform.protos import timestamp

log = get_logger(__name__)

BATCH = 500
INTERVAL_SECONDS = 0.2
# Events off: how often the queue is brought back under its bound (a count of the queue).
BOUNDED_INTERVAL_SECONDS = 30.0
ERROR_BACKOFF_SECONDS = 2.0


def recorded(service: str, row: dict[str, Any]) -> audit_pb2.AuditLogRecorded:
    details = struct_pb2.Struct()
    json_format.ParseDict(row["details"], details)
    return audit_pb2.AuditLogRecorded(
        log_id=str(row["log_id"]),
        service=service,
        user_id=row["user_id"] or "",
        resource=f"{row['entity_type']}/{row['entity_id']}",
        action=row["action"],
        actor=row["actor"] or "",
        details=details,
        create_time=timestamp(row["created_at"]),
    )


class AuditShipper:
    def __init__(
        self,
        database: Database,
        *,
        interval_seconds: float = INTERVAL_SECONDS,
        keep: int = 0,
    ) -> None:
        """`keep`: how many of the newest queued rows stay queued (0: ship everything; events
        off: the queue's bound)."""
        self._pool = database.pool
        self._service = database.spec.schema
        self._interval = interval_seconds
        self._keep = keep
        self._idle = IdleProbe(self._pool, "SELECT EXISTS (SELECT FROM audit_log_queue)")

    @classmethod
    def bounded(cls, database: Database, bound: int) -> AuditShipper:
        """The shipper of a process with events off: keeps the queue at `bound` rows."""
        return cls(database, interval_seconds=BOUNDED_INTERVAL_SECONDS, keep=bound)

    async def ship_once(self, limit: int = BATCH) -> int:
        """Ships up to `limit` queued rows (the oldest, beyond the newest `keep`); how many
        left the queue (0: none, or another process holds the schema's lock)."""
        if not self._keep and not await self._idle.worth_a_round():
            # An idle shipper polls five times a second: one statement, not BEGIN, the
            # schema's lock, the read and COMMIT, until something is queued.
            return 0
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT pg_try_advisory_xact_lock(hashtext('loyalnest.audit_shipper.' || %s))",
                (self._service,),
            )
            locked = await cursor.fetchone()
            if locked is None or not locked[0]:
                return 0
            if self._keep:
                cursor = await conn.execute("SELECT count(*) FROM audit_log_queue")
                counted = await cursor.fetchone()
                limit = min(limit, max(0, (counted[0] if counted else 0) - self._keep))
                if limit == 0:
                    return 0
            rows = conn.cursor(row_factory=dict_row)
            # LEFT JOIN: a row erased since it was queued (shop/redact) leaves its queue entry
            # behind, dropped here without an event.
            await rows.execute(
                "SELECT q.seq, a.log_id, a.merchant_id, a.user_id, a.entity_type, a.entity_id,"
                " a.action, a.actor, a.details, a.created_at"
                " FROM audit_log_queue q LEFT JOIN audit_logs a ON a.log_id = q.log_id"
                " ORDER BY q.seq LIMIT %s",
                (limit,),
            )
            queued = await rows.fetchall()
            self._idle.found_nothing = not queued
            for row in queued:
                if row["merchant_id"] is not None:
                    await outbox.enqueue(conn, row["merchant_id"], recorded(self._service, row))
            if queued:
                await conn.execute(
                    "DELETE FROM audit_log_queue WHERE seq = ANY(%s)",
                    ([row["seq"] for row in queued],),
                )
            return len(queued)

    async def run(self) -> None:
        while True:
            try:
                shipped = await self.ship_once()
            except Exception:
                # The queue keeps the rows: the next round ships them.
                log.exception("audit shipping failed", extra={"schema": self._service})
                await asyncio.sleep(ERROR_BACKOFF_SECONDS)
                continue
            if shipped < BATCH:
                await asyncio.sleep(self._interval)
