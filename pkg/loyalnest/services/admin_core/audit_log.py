"""The mesh's audit log: every audited service's rows (audit_log.recorded), kept and tailed.

Rows reach AdminCore through the outbox (platform/audit/shipper.py), not by a fan-out query
to every service: a query here is one indexed read whatever the number of services, a
service that is down does not hole the log, and per-resource order is the order of one Kafka
partition. Each event is stored once by its log_id (a redelivery is a no-op) in
mesh_audit_logs, which refuses UPDATE and DELETE (admin_core_0003: the one exception is a
shop redaction). After the insert commits, the row is appended to the Redis Stream
`audit_logs:{merchant_id}` that feeds live tails: the stream is a live buffer (capped,
expiring), the table is the record, so a Redis failure costs a tail a row, never the log.

A tail resumes by the stream's entry ids, not by the table's arrival order (`seq`): ids are
given out by Redis in the one order tails read, while a `seq` is taken at insert and may
commit after a higher one (two consumers), so "after seq N" could skip a row that commits
later. Replaying after a position and following live are then the same XREAD from that id:
there is no seam to lose or repeat a row at. The price: a position older than the buffer
(trimmed, or the key expired) cannot be resumed, and says so (TAIL_POSITION_EXPIRED).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as redis
from google.protobuf import json_format
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from redis.exceptions import ResponseError

from loyalnest.gen.admin_core.v1 import admin_core_pb2
from loyalnest.gen.events.v1 import audit_pb2
from loyalnest.platform.cache import REDIS_ERRORS, client_from_url, key_part
from loyalnest.platform.errors import FailedPrecondition, InvalidArgument, Unavailable
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.observability import get_logger
from loyalnest.platform.postgres import Database
from loyalnest.platform.protos import timestamp
from loyalnest.platform.stream_slots import StreamLimits, StreamSlots

log = get_logger(__name__)

# The stream holds about this many recent rows per merchant and lives a day past the last:
# enough for a tail that reconnects, never a second copy of the log.
STREAM_MAXLEN = 10_000
STREAM_TTL_SECONDS = 24 * 3600
# XREAD blocks this long per round: a closed tail is noticed at the latest then.
BLOCK_MILLISECONDS = 5_000
TAIL_LIMITS = StreamLimits(per_merchant=10, per_process=200)
# The transaction-local setting mesh_audit_logs' trigger checks before allowing a DELETE.
SHOP_REDACTION_SETTING = "loyalnest.shop_redaction"
_COLUMNS = (
    "seq, log_id, merchant_id, service, user_id, resource, action, actor, details, created_at"
)


_POSITION = re.compile(r"^(\d{1,20})-(\d{1,20})$")
Position = tuple[int, int]


def parse_position(value: str) -> Position | None:
    """A stream entry id "<ms>-<seq>" as a comparable pair; None when it is not one."""
    match = _POSITION.match(value)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _position_of(value: Any) -> Position:
    text = value.decode() if isinstance(value, bytes) else str(value)
    return parse_position(text) or (0, 0)


def stream_key(merchant_id: str) -> str:
    return f"audit_logs:{key_part(merchant_id)}"


def stream_client(redis_url: str) -> redis.Redis:
    """A client whose reads outlast an XREAD BLOCK round (the cache clients' timeouts are
    a quarter second)."""
    return client_from_url(redis_url, timeout_seconds=BLOCK_MILLISECONDS / 1000 + 5)


@dataclass(frozen=True)
class Filter:
    merchant_id: str | None
    actor: str = ""
    resource: str = ""
    action: str = ""
    service: str = ""

    def matches(self, entry: admin_core_pb2.AuditLog) -> bool:
        return (
            (self.merchant_id is None or entry.merchant_id == self.merchant_id)
            and (not self.actor or entry.actor == self.actor)
            and (not self.action or entry.action == self.action)
            and (not self.service or entry.service == self.service)
            and (
                not self.resource
                or (
                    entry.resource.startswith(self.resource)
                    if self.resource.endswith("/")
                    else entry.resource == self.resource
                )
            )
        )

    def scope(self, start: datetime | None, end: datetime | None) -> str:
        """What a page token is bound to: the same query, the same caller's merchant."""
        return "|".join(
            [
                "audit",
                self.merchant_id or "*",
                self.actor,
                self.resource,
                self.action,
                self.service,
                start.isoformat() if start else "",
                end.isoformat() if end else "",
            ]
        )


def entry_proto(row: dict[str, Any]) -> admin_core_pb2.AuditLog:
    entry = admin_core_pb2.AuditLog(
        log_id=str(row["log_id"]),
        merchant_id=row["merchant_id"],
        service=row["service"],
        user_id=row["user_id"],
        resource=row["resource"],
        action=row["action"],
        actor=row["actor"],
        create_time=timestamp(row["created_at"]),
    )
    json_format.ParseDict(row["details"], entry.details)
    return entry


class MeshAuditLog:
    def __init__(self, database: Database, client: redis.Redis | None) -> None:
        self._pool = database.pool
        self._redis = client
        self._slots = StreamSlots(TAIL_LIMITS, what="TailAuditLogs")

    async def record(self, event: ConsumedEvent) -> bool:
        """Stores an audit_log.recorded once (False: a redelivery, or a row of a merchant
        erased since) and feeds the live tail."""
        recorded = event.payload_as(audit_pb2.AuditLogRecorded)
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                "INSERT INTO mesh_audit_logs (log_id, merchant_id, service, user_id, resource,"
                " action, actor, details, created_at)"
                " SELECT %(log)s, %(m)s, %(service)s, %(user)s, %(resource)s, %(action)s,"
                " %(actor)s, %(details)s, %(at)s"
                # A change made before the merchant's shop redaction completed, arriving late
                # (in flight during it): the redaction erased its kind, it stays erased.
                " WHERE NOT EXISTS (SELECT 1 FROM gdpr_requests WHERE merchant_id = %(m)s"
                " AND type = 'shop_redact' AND status = 'completed' AND completed_at > %(at)s)"
                f" ON CONFLICT (log_id) DO NOTHING RETURNING {_COLUMNS}",
                {
                    "log": recorded.log_id,
                    "m": event.merchant_id,
                    "service": recorded.service,
                    "user": recorded.user_id,
                    "resource": recorded.resource,
                    "action": recorded.action,
                    "actor": recorded.actor,
                    "details": Jsonb(json_format.MessageToDict(recorded.details)),
                    "at": recorded.create_time.ToDatetime(tzinfo=UTC),
                },
            )
            row = await cursor.fetchone()
        if row is None:
            return False
        await self._publish(entry_proto(row))
        return True

    async def _publish(self, entry: admin_core_pb2.AuditLog) -> None:
        if self._redis is None:
            return
        key = stream_key(entry.merchant_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xadd(key, {"log": entry.SerializeToString()}, maxlen=STREAM_MAXLEN)
                pipe.expire(key, STREAM_TTL_SECONDS)
                await pipe.execute()
        except REDIS_ERRORS:
            # The row is recorded; only a live tail open right now misses it.
            log.warning("audit log row not appended to its Redis stream", exc_info=True)

    async def query(
        self,
        where: Filter,
        *,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        before: int | None,
    ) -> list[tuple[int, admin_core_pb2.AuditLog]]:
        """Newest first (arrival order), rows before position `before`."""
        clauses = ["TRUE"]
        params: list[Any] = []
        for column, value in (
            ("merchant_id", where.merchant_id),
            ("actor", where.actor),
            ("action", where.action),
            ("service", where.service),
        ):
            if value:
                clauses.append(f"{column} = %s")
                params.append(value)
        if where.resource.endswith("/"):
            clauses.append("starts_with(resource, %s)")
            params.append(where.resource)
        elif where.resource:
            clauses.append("resource = %s")
            params.append(where.resource)
        if start is not None:
            clauses.append("created_at >= %s")
            params.append(start)
        if end is not None:
            clauses.append("created_at < %s")
            params.append(end)
        if before is not None:
            clauses.append("seq < %s")
            params.append(before)
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"SELECT {_COLUMNS} FROM mesh_audit_logs WHERE {' AND '.join(clauses)}"
                " ORDER BY seq DESC LIMIT %s",
                (*params, limit),
            )
            return [(row["seq"], entry_proto(row)) for row in await cursor.fetchall()]

    async def tail(
        self, merchant_id: str, where: Filter, after: str = ""
    ) -> AsyncIterator[tuple[str, admin_core_pb2.AuditLog]]:
        """The merchant's rows `where` matches, with their positions: those after position
        `after` first, then as they arrive; without `after`, from now on."""
        if self._redis is None:
            raise Unavailable("live tails need Redis, which this instance has no URL for")
        client = self._redis
        key = stream_key(merchant_id)
        with self._slots.slot(merchant_id):
            last: bytes
            if after:
                last = await self._resumable(client, key, after)
            else:
                try:
                    # From the newest entry now: what arrives after the call.
                    newest: Any = await client.xrevrange(key, count=1)
                except REDIS_ERRORS as exc:
                    raise Unavailable("the audit log stream is unreachable") from exc
                last = newest[0][0] if newest else b"0-0"
            while True:
                try:
                    batches: Any = await client.xread(
                        {key: last}, block=BLOCK_MILLISECONDS, count=100
                    )
                except REDIS_ERRORS as exc:
                    raise Unavailable("the audit log stream is unreachable") from exc
                for _, entries in batches:
                    for entry_id, fields in entries:
                        last = entry_id
                        entry = admin_core_pb2.AuditLog.FromString(fields[b"log"])
                        if where.matches(entry):
                            yield entry_id.decode(), entry

    @staticmethod
    async def _resumable(client: redis.Redis, key: str, after: str) -> bytes:
        """`after` as XREAD's starting id, once it is known that the stream still holds every
        entry after it (INVALID_ARGUMENT: not a position, or one never reached;
        FAILED_PRECONDITION: entries after it were trimmed or expired)."""
        position = parse_position(after)
        if position is None:
            raise InvalidArgument.for_field("after", "must be a tail position such as 1733-0")
        try:
            info: Any = await client.xinfo_stream(key)
        except ResponseError:
            info = None  # no such key: never written, or expired after a day without rows
        except REDIS_ERRORS as exc:
            raise Unavailable("the audit log stream is unreachable") from exc
        if info is None:
            if position != (0, 0):
                raise _expired(after)
            return b"0-0"
        if position > _position_of(info.get("last-generated-id")):
            raise InvalidArgument.for_field("after", "is past the newest row of this log")
        # Entries are never deleted but by MAXLEN trimming (from the oldest), so from its first
        # entry on the stream holds every entry. Before it: trimmed, or a position from a
        # stream that expired and began again; either way rows after it may be gone. "0-0"
        # (from the start) holds everything only while nothing was trimmed (entries-added,
        # Redis 7: unknown counts as trimmed).
        first = info.get("first-entry")
        trimmed = int(info.get("entries-added", -1)) != int(info.get("length", 0))
        resumable = (first is not None and position >= _position_of(first[0])) or (
            position == (0, 0) and not trimmed
        )
        if not resumable:
            raise _expired(after)
        return after.encode()


def _expired(after: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"tail position {after} is older than the live buffer: read GetAuditLogs, then tail"
        " without `after`",
        violation_type="TAIL_POSITION_EXPIRED",
        subject=f"after/{after}",
    )


async def erase_merchant(conn: AsyncConnection, merchant_id: str) -> int:
    """A shop redaction's one exception to immutability: the merchant's rows, inside the
    caller's transaction (the setting names the merchant for this transaction only)."""
    await conn.execute("SELECT set_config(%s, %s, true)", (SHOP_REDACTION_SETTING, merchant_id))
    cursor = await conn.execute(
        "DELETE FROM mesh_audit_logs WHERE merchant_id = %s", (merchant_id,)
    )
    return cursor.rowcount
