"""The outbox table itself, against real PostgreSQL (no broker needed)."""

from __future__ import annotations

import asyncio

import pytest

from loyalnest.gen.events.v1 import points_pb2
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.events import outbox
from loyalnest.platform.events.outbox import PostgresOutbox
from loyalnest.platform.postgres import Database, DatabaseSpec

pytestmark = pytest.mark.integration


@pytest.fixture
async def database(database_url: str):
    db = Database(ServiceSettings(database_url=database_url), DatabaseSpec("outbox_test", ()))
    await db.open()
    await db.migrate()
    try:
        yield db
    finally:
        await db.close()


async def enqueue(db: Database, customers: range, merchant: str = "m") -> None:
    async with db.pool.connection() as conn, conn.transaction():
        for c in customers:
            await outbox.enqueue(conn, merchant, points_pb2.PointsEarned(customer_id=f"c{c}"))


async def test_concurrent_relays_claim_disjoint_lanes_in_id_order(database: Database):
    await enqueue(database, range(200))
    source = PostgresOutbox(database)
    async with source.claim(limit=1000, lanes=16) as first:
        async with source.claim(limit=1000, lanes=64) as second:
            first_keys = {row.record.key for row in first.rows}
            second_keys = {row.record.key for row in second.rows}
            assert first.rows and second.rows
            assert not first_keys & second_keys, "a key is never relayed by two relays at once"
            assert len(first.rows) + len(second.rows) == 200
            for claim in (first, second):
                ids = [row.id for row in claim.rows]
                assert ids == sorted(ids)
            await second.mark_sent([row.id for row in second.rows])
        await first.mark_sent([row.id for row in first.rows[:5]])
    assert (await source.backlog()).pending == len(first.rows) - 5


async def test_a_rolled_back_change_leaves_no_event(database: Database):
    async def failing_change() -> None:
        async with database.pool.connection() as conn, conn.transaction():
            await outbox.enqueue(conn, "m", points_pb2.PointsEarned(customer_id="c"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await failing_change()
    assert (await PostgresOutbox(database).backlog()).pending == 0


async def test_enqueue_outside_a_transaction_is_refused(database: Database):
    async with database.pool.connection() as conn:
        with pytest.raises(RuntimeError, match="inside the state change's transaction"):
            await outbox.enqueue(conn, "m", points_pb2.PointsEarned(customer_id="c"))


async def test_backlog_and_purge(database: Database):
    await enqueue(database, range(3))
    source = PostgresOutbox(database)
    await asyncio.sleep(0.05)
    backlog = await source.backlog()
    assert backlog.pending == 3 and backlog.oldest_age_seconds > 0
    async with source.claim(limit=10, lanes=64) as claim:
        await claim.mark_sent([row.id for row in claim.rows])
    assert await source.backlog() == outbox.Backlog(0, 0.0)
    assert await source.purge_sent(older_than_seconds=3600) == 0
    assert await source.purge_sent(older_than_seconds=0) == 3


async def test_an_erasure_finds_the_published_rows_by_the_sent_key_index(database: Database):
    """forget_sent_events (one per erased customer and service) and shop/redact's delete of
    the merchant's published rows read outbox_sent_key (platform_0005), not every row the
    outbox keeps: EXPLAIN over a realistic outbox (20,000 sent rows, 500 keys, analyzed)."""
    from loyalnest.platform import personal_data

    async with database.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO outbox (event_id, event_type, topic, partition_key, lane, envelope,"
            " sent_at) SELECT gen_random_uuid(), 'points.earned', 't',"
            " 'm' || (i % 5) || '/c' || (i % 100), i % 64, '\\x00', now()"
            " FROM generate_series(1, 20000) AS i"
        )
        await conn.execute("ANALYZE outbox")
        plans = {}
        for name, statement, params in (
            ("customer", personal_data.FORGET_SENT, ("m1/c6",)),
            ("merchant", personal_data.DROP_MERCHANT_SENT, ("m1", "m1/%")),
        ):
            cursor = await conn.execute(f"EXPLAIN {statement}", params)
            plans[name] = "\n".join(row[0] for row in await cursor.fetchall())
    for plan in plans.values():
        assert "outbox_sent_key" in plan and "Seq Scan" not in plan, plans
    # And they delete what they should: one key's 200 rows, then the merchant's other 3,800.
    async with database.pool.connection() as conn, conn.transaction():
        assert await personal_data.forget_sent_events(conn, "m1", "c6") == 200
        assert await personal_data.drop_merchant_events(conn, "m1") == 3800


async def test_an_erasure_redacts_to_the_ids_of_the_erasure_under_way(database: Database):
    """Stores keyed by Shopify's id alone (RFM, Referrals, Gamification) call
    redact_unsent_events without ids: inside PersonalDataServicer.EraseCustomer
    (personal_data.erasing) it takes the request's, the same as every other service's."""
    from loyalnest.platform import personal_data
    from loyalnest.platform.events.envelope import Envelope

    request = personal_data.CustomerRef("c7")
    await enqueue(database, range(7, 9), merchant="m-erasing")
    async with database.pool.connection() as conn, conn.transaction():
        with personal_data.erasing(request):
            assert await personal_data.redact_unsent_events(conn, "m-erasing", ("c7",)) == 1
        cursor = await conn.execute(
            "SELECT partition_key, envelope FROM outbox WHERE partition_key LIKE 'm-erasing/%'"
            " ORDER BY id"
        )
        rows = await cursor.fetchall()
    customers = []
    for _, raw in rows:
        event = points_pb2.PointsEarned()
        assert Envelope.FromString(bytes(raw)).payload.Unpack(event)
        customers.append(event.customer_id)
    assert customers == [request.anonymous_id("c7"), "c8"]
    assert [key for key, _ in rows] == [f"m-erasing/{request.anonymous_id('c7')}", "m-erasing/c8"]


async def relay_transactions_left_open(db: Database) -> int:
    async with db.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'idle in transaction'"
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_an_idle_relay_polls_without_a_transaction_and_finds_the_next_event(
    database: Database,
):
    source = PostgresOutbox(database)
    async with source.claim(limit=10, lanes=16) as claim:
        assert not claim.rows
        assert await relay_transactions_left_open(database) == 1, "the first claim locks"
    for _ in range(3):
        async with source.claim(limit=10, lanes=16) as claim:
            assert not claim.rows
            assert await relay_transactions_left_open(database) == 0, "idle: one statement"
    await enqueue(database, range(2))
    async with source.claim(limit=10, lanes=16) as claim:
        assert len(claim.rows) == 2
        assert await relay_transactions_left_open(database) == 1
        await claim.mark_sent([row.id for row in claim.rows])
    assert (await source.backlog()).pending == 0


async def test_a_claim_reads_rows_as_committed_when_it_locks_them(database: Database):
    """The claim is one statement, whose snapshot is older than its lanes' lock: a relay
    marking the rows sent, or an erasure redacting them, that commits in between must not be
    read as it was (a second publication; the customer's data published after all). That
    moment cannot be timed from outside, so a transaction holding the rows (not their lane)
    and committing while the claim waits for them stands for it."""
    await enqueue(database, range(1))
    await enqueue(database, range(1))
    source = PostgresOutbox(database)
    async with database.pool.connection() as other, other.transaction():
        cursor = await other.execute("SELECT id FROM outbox ORDER BY id")
        first, second = [id_ for (id_,) in await cursor.fetchall()]
        await other.execute("UPDATE outbox SET sent_at = now() WHERE id = %s", (first,))
        await other.execute("UPDATE outbox SET envelope = 'redacted' WHERE id = %s", (second,))

        async def claimed() -> list[tuple[int, bytes]]:
            async with source.claim(limit=10, lanes=64) as claim:
                return [(row.id, row.record.value) for row in claim.rows]

        claiming = asyncio.create_task(claimed())
        assert await claim_waiting_for_a_row_lock(database), "the claim waits for the rows"
        assert not claiming.done()
    assert await claiming == [(second, b"redacted")]


async def claim_waiting_for_a_row_lock(db: Database, within: float = 10.0) -> bool:
    """Whether a backend of the test's database waits for a lock within `within` seconds:
    the claim (the transaction holding the rows is idle, not waiting)."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        async with db.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"
            )
            row = await cursor.fetchone()
        if row is not None and row[0] > 0:
            return True
        await asyncio.sleep(0.05)
    return False
