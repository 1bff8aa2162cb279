"""The audit shipper against a real PostgreSQL: queued audit rows become audit_log.recorded
outbox events in queue order, once, with one shipper per schema at a time (issue 18).

The mesh-wide path (broker, AdminCore, Envoy) is test_audit_logs.py; this one pins what the
shipper itself promises: order, no loss when a batch is shared by two processes, rows erased
since they were queued dropped without an event.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest

from loyalnest.gen.events.v1 import audit_pb2, envelope_pb2
from loyalnest.platform import audit
from loyalnest.platform.audit import shipper as shipper_module
from loyalnest.platform.audit.shipper import AuditShipper
from loyalnest.platform.auth import context as auth_context
from loyalnest.platform.auth.tokens import Principal
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.postgres import Database
from loyalnest.services.roles.service import DATABASE, SPEC
from tests.integration.conftest import eventually, service_settings_for_tests, serving

pytestmark = pytest.mark.integration


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(service_settings_for_tests(ServiceSettings, database_url), DATABASE)
    await db.open()
    await db.migrate()
    try:
        yield db
    finally:
        await db.close()


async def shipped(database_url: str, merchant_id: str) -> list[audit_pb2.AuditLogRecorded]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT envelope FROM roles.outbox WHERE event_type = 'audit_log.recorded'"
            " AND starts_with(partition_key, %s) ORDER BY id",
            (merchant_id + "/",),
        )
        events = []
        for (raw,) in await cursor.fetchall():
            envelope = envelope_pb2.Envelope.FromString(bytes(raw))
            assert envelope.merchant_id == merchant_id
            recorded = audit_pb2.AuditLogRecorded()
            assert envelope.payload.Unpack(recorded)
            events.append(recorded)
        return events


async def test_ships_in_queue_order_once_and_skips_erased_rows(
    database: Database, database_url: str
) -> None:
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    role_id = str(uuid.uuid4())
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, options="-c search_path=roles"
    ) as conn:
        # Three changes of one role through the real trigger, then a row erased before shipping.
        async with conn.transaction():
            await conn.execute("SELECT set_config('loyalnest.actor', 'admin-1', true)")
            await conn.execute(
                "INSERT INTO roles (role_id, merchant_id, name, permissions)"
                " VALUES (%s, %s, 'r', '[\"points:read\"]')",
                (role_id, merchant_id),
            )
        for name in ("r2", "r3"):
            await conn.execute("UPDATE roles SET name = %s WHERE role_id = %s", (name, role_id))
        cursor = await conn.execute(
            "INSERT INTO audit_logs (merchant_id, entity_type, entity_id, action, details)"
            " VALUES (%s, 'roles', 'gone', 'create', '{}') RETURNING log_id",
            (merchant_id,),
        )
        erased = await cursor.fetchone()
        await conn.execute(
            "DELETE FROM audit_logs WHERE merchant_id = %s AND entity_id = 'gone'", (merchant_id,)
        )

    shipper = AuditShipper(database)
    # Another process shipping this schema holds its lock: this one skips the round rather
    # than interleave with it.
    async with (
        await psycopg.AsyncConnection.connect(database_url) as other,
        other.transaction(),
    ):
        await other.execute(
            "SELECT pg_advisory_xact_lock(hashtext('loyalnest.audit_shipper.' || 'roles'))"
        )
        assert await shipper.ship_once() == 0
    # Batches of two: the order holds across batches.
    while await shipper.ship_once(limit=2):
        pass

    events = await shipped(database_url, merchant_id)
    assert [(e.resource, e.action) for e in events] == [
        (f"roles/{role_id}", "create"),
        (f"roles/{role_id}", "update"),
        (f"roles/{role_id}", "update"),
    ]
    assert [e.details["new"]["name"] for e in events] == ["r", "r2", "r3"]
    assert events[0].actor == "admin-1" and events[0].service == "roles"
    assert len({e.log_id for e in events}) == 3
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM roles.audit_log_queue q"
            " LEFT JOIN roles.audit_logs a USING (log_id)"
            " WHERE a.merchant_id = %s OR q.log_id = %s",
            (merchant_id, erased[0] if erased else None),
        )
        row = await cursor.fetchone()
    assert row == (0,)  # nothing left queued, the erased row's entry included


async def test_an_audited_pool_names_the_rpc_caller_and_no_one_after(database_url: str) -> None:
    """The actor is automatic: a connection taken while an RPC is handled names its caller,
    the same connection taken afterwards (a consumer, a job) names nobody, and a
    transaction's own actor overrides the caller's for that transaction only."""
    settings = service_settings_for_tests(
        ServiceSettings, database_url, db_pool_min_size=1, db_pool_max_size=1
    )
    db = Database(settings, DATABASE)
    await db.open()

    async def actor(conn: psycopg.AsyncConnection) -> str:
        cursor = await conn.execute("SELECT current_setting(%s, true)", (audit.ACTOR_SETTING,))
        row = await cursor.fetchone()
        return (row[0] if row else None) or ""

    caller = Principal("staff-7", "m-1", frozenset(), "t-1", 2**31)
    try:
        bound = auth_context.bind(caller, "token")
        try:
            async with db.pool.connection() as conn:
                assert await actor(conn) == "staff-7"
                async with conn.transaction():  # a write transaction inherits it
                    assert await actor(conn) == "staff-7"
            async with audit.transaction(db.pool, "job:x") as conn:
                assert await actor(conn) == "job:x"  # named for this transaction
            async with db.pool.connection() as conn:
                assert await actor(conn) == "staff-7"  # and only for it
        finally:
            auth_context.unbind(bound)
        async with db.pool.connection() as conn:  # the same connection (pool of one)
            assert await actor(conn) == ""
    finally:
        await db.close()


async def _role_changes(database_url: str, merchant_id: str, changes: int) -> str:
    """`changes` audited changes of one role through the real trigger; the role's id."""
    role_id = str(uuid.uuid4())
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, options="-c search_path=roles"
    ) as conn:
        await conn.execute(
            "INSERT INTO roles (role_id, merchant_id, name, permissions)"
            " VALUES (%s, %s, 'n0', '[\"points:read\"]')",
            (role_id, merchant_id),
        )
        for n in range(1, changes):
            await conn.execute("UPDATE roles SET name = %s WHERE role_id = %s", (f"n{n}", role_id))
    return role_id


async def _queued(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute("SELECT count(*) FROM roles.audit_log_queue")
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def test_a_bounded_shipper_moves_only_the_oldest_rows_beyond_its_bound(
    database: Database, database_url: str
) -> None:
    """Events off: the queue keeps its newest `keep` rows, the older ones go on to the outbox
    in queue order; once events are on, the rest follow. Every row once, in order."""
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    await _role_changes(database_url, merchant_id, 7)
    bounded = AuditShipper(database, keep=3)
    assert await bounded.ship_once(limit=2) == 2  # batches still apply
    assert await bounded.ship_once() == 2
    assert await bounded.ship_once() == 0  # at the bound: nothing more leaves
    assert await _queued(database_url) == 3
    assert [e.details["new"]["name"] for e in await shipped(database_url, merchant_id)] == [
        "n0",
        "n1",
        "n2",
        "n3",
    ]
    assert await AuditShipper(database).ship_once() == 3  # events on again
    events = await shipped(database_url, merchant_id)
    assert [e.details["new"]["name"] for e in events] == [f"n{n}" for n in range(7)]
    assert len({e.log_id for e in events}) == 7 and await _queued(database_url) == 0


async def test_a_service_with_events_off_keeps_its_audit_queue_bounded(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Roles run as with events off (no relay, no consumers): its audit queue still stays at
    `audit_queue_bound`, the excess in its outbox, no audit row lost."""
    monkeypatch.setattr(shipper_module, "BOUNDED_INTERVAL_SECONDS", 0.1)
    settings = service_settings_for_tests(ServiceSettings, database_url, audit_queue_bound=2)
    assert not settings.events_enabled
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    async with serving(SPEC, settings) as service:
        await asyncio.wait_for(service.health.started.wait(), 30)
        await _role_changes(database_url, merchant_id, 5)

        async def bounded() -> bool:
            return await _queued(database_url) == 2

        await eventually(bounded, 15, "the audit queue back at its bound")
        events = await shipped(database_url, merchant_id)
        assert [e.details["new"]["name"] for e in events] == ["n0", "n1", "n2"]
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM roles.audit_logs a WHERE a.merchant_id = %s"
                " AND NOT EXISTS (SELECT 1 FROM roles.audit_log_queue q WHERE q.log_id = a.log_id)"
                " AND a.log_id::text <> ALL(%s)",
                (merchant_id, [e.log_id for e in events]),
            )
            assert await cursor.fetchone() == (0,)  # every row queued or in the outbox


async def _last_statement(database_url: str, backend_pid: int) -> str:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT query FROM pg_stat_activity WHERE pid = %s", (backend_pid,)
        )
        row = await cursor.fetchone()
    assert row is not None, "the shipper's connection is gone"
    return str(row[0])


async def test_an_idle_shipper_polls_with_one_statement_and_ships_the_next_row(
    database_url: str,
) -> None:
    # One pooled connection, so its last statement (pg_stat_activity) is the shipper's.
    settings = service_settings_for_tests(
        ServiceSettings, database_url, db_pool_min_size=1, db_pool_max_size=1
    )
    database = Database(settings, DATABASE)
    await database.open()
    try:
        await database.migrate()
        async with database.pool.connection() as conn:
            backend = conn.info.backend_pid
        shipper = AuditShipper(database)
        assert await shipper.ship_once() == 0
        assert await _last_statement(database_url, backend) == "COMMIT", "the first round locks"
        for _ in range(3):
            assert await shipper.ship_once() == 0
            last = await _last_statement(database_url, backend)
            assert last.startswith("SELECT EXISTS"), f"idle: one statement, not {last!r}"
        await _role_changes(database_url, f"m-{uuid.uuid4().hex[:8]}", 1)
        assert await shipper.ship_once() == 1
        assert await _last_statement(database_url, backend) == "COMMIT"
    finally:
        await database.close()
