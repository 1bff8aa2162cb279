"""The audit shipper against a real PostgreSQL: queued audit rows become audit_log.recorded
outbox events in queue order, once, with one shipper per schema at a time (issue 18).

The mesh-wide path (broker, AdminCore, Envoy) is test_audit_logs.py; this one pins what the
shipper itself promises: order, no loss when a batch is shared by two processes, rows erased
since they were queued dropped without an event.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest

from loyalnest.gen.events.v1 import audit_pb2, envelope_pb2
from loyalnest.platform import audit
from loyalnest.platform.audit.shipper import AuditShipper
from loyalnest.platform.auth import context as auth_context
from loyalnest.platform.auth.tokens import Principal
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.postgres import Database
from loyalnest.services.roles.service import DATABASE
from tests.integration.conftest import service_settings_for_tests

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
