"""A customer erased while their events still wait in the outbox: what the broker then
receives names the ledger's anonymous id, never the customer (Points' PostgreSQL and MongoDB
stores, a real relay and a real tansu broker; MongoDB is mongomock-ng, see
test_mongo_relay.py). And an erasure racing a relay that is publishing the customer's lane
waits for it, then forgets what it published."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import mongomock_ng
import pytest

from loyalnest.gen.events.v1 import envelope_pb2
from loyalnest.gen.events.v1 import points_pb2 as events_pb2
from loyalnest.platform.events.clients import ensure_topics
from loyalnest.platform.events.mongo_outbox import MongoOutbox, lease_seconds_for
from loyalnest.platform.events.outbox import PostgresOutbox
from loyalnest.platform.events.relay import OutboxRelay
from loyalnest.platform.personal_data import CustomerRef
from loyalnest.platform.postgres import Database
from loyalnest.services.points.service import DATABASE, PointsSettings
from loyalnest.services.points.store.base import ERASED_PREFIX, LedgerStore
from loyalnest.services.points.store.mongo import MongoLedgerStore
from loyalnest.services.points.store.postgres import PostgresLedgerStore
from tests.contract.test_ledger_store import earn, redeem
from tests.integration.broker import BrokerProcess
from tests.integration.conftest import eventually
from tests.integration.test_events import background
from tests.integration.test_mongo_relay import consume_all, relay_settings

pytestmark = pytest.mark.integration

TOPIC = "loyalnest.points.events"


@pytest.fixture(params=["postgres", "mongo-FAKE-mongomock"])
async def store_and_outbox(
    request: pytest.FixtureRequest, database_url: str, kafka: BrokerProcess
) -> AsyncIterator[tuple[LedgerStore, Any]]:
    settings = relay_settings(kafka.bootstrap_servers)
    if request.param == "postgres":
        database = Database(PointsSettings(database_url=database_url), DATABASE)
        await database.open()
        try:
            await database.migrate()
            yield PostgresLedgerStore(database), PostgresOutbox(database)
        finally:
            await database.close()
        return
    client = mongomock_ng.MongoClient(tz_aware=True, tzinfo=UTC)
    try:
        store = MongoLedgerStore(client[f"points_{uuid.uuid4().hex[:8]}"])
        await store.ensure_indexes()
        outbox = MongoOutbox(
            store.database, name="points", lease_seconds=lease_seconds_for(settings)
        )
        yield store, outbox
    finally:
        client.close()


async def test_events_unsent_at_the_erasure_reach_the_broker_without_the_customer(
    store_and_outbox: tuple[LedgerStore, Any], kafka: BrokerProcess, merchant_id: str
) -> None:
    store, outbox = store_and_outbox
    customer, other = f"73900{uuid.uuid4().int % 10**8}", f"73901{uuid.uuid4().int % 10**8}"
    await earn(store, merchant_id, customer, 100)
    await redeem(store, merchant_id, customer, 30)
    await earn(store, merchant_id, other, 5)
    # The relay is down (Kafka unreachable, a deploy) while the GDPR request erases them.
    assert await store.erase_customer(merchant_id, CustomerRef(customer)) > 0

    settings = relay_settings(kafka.bootstrap_servers)
    await asyncio.to_thread(ensure_topics, settings, "erasure-test", [TOPIC])
    relay = OutboxRelay(outbox, settings, client_id="erasure-relay")

    async def drained() -> bool:
        return bool((await outbox.backlog()).pending == 0)

    async with background(relay.run):
        await eventually(drained, 60, "the relay to publish the outbox")
    records = await asyncio.to_thread(consume_all, kafka.bootstrap_servers, TOPIC, 3)
    seen: list[tuple[str, int, int]] = []
    for batch in records.values():
        for record in batch:
            assert customer.encode() not in record.value, "the broker got the erased customer"
            assert customer.encode() not in (record.key or b"")
            envelope = envelope_pb2.Envelope.FromString(record.value)
            payload = (
                events_pb2.PointsEarned()
                if envelope.event_type == "points.earned"
                else events_pb2.PointsRedeemed()
            )
            assert envelope.payload.Unpack(payload)
            assert record.key == f"{merchant_id}/{payload.customer_id}".encode()
            seen.append((payload.customer_id, payload.sequence, payload.points))
    anonymous = {c for c, _, _ in seen if c.startswith(ERASED_PREFIX)}
    assert len(anonymous) == 1, seen
    (erased,) = anonymous
    # The amounts arrive, under the id Points' own ledger moved to: consumers that add them
    # up (liability, reports) agree with Points.
    assert sorted(seen) == sorted([(erased, 1, 100), (erased, 2, 30), (other, 1, 5)])
    assert (await store.get_balance(merchant_id, erased)).balance == 70


async def test_an_erasure_waits_for_the_relay_publishing_the_customers_lane(
    database_url: str, merchant_id: str
) -> None:
    database = Database(PointsSettings(database_url=database_url), DATABASE)
    await database.open()
    try:
        await database.migrate()
        store = PostgresLedgerStore(database)
        customer = f"73902{uuid.uuid4().int % 10**8}"
        await earn(store, merchant_id, customer, 10)
        await earn(store, merchant_id, customer, 20)
        source = PostgresOutbox(database)
        async with source.claim(limit=100, lanes=64) as claim:
            # A relay holds the lane and is publishing the first event right now.
            assert len(claim.rows) == 2
            erasure = asyncio.ensure_future(
                store.erase_customer(merchant_id, CustomerRef(customer))
            )
            await asyncio.sleep(0.5)
            assert not erasure.done(), "the erasure must wait for the lane"
            await claim.mark_sent([claim.rows[0].id])
        assert await erasure > 0
        async with database.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT partition_key, envelope, sent_at IS NOT NULL FROM outbox ORDER BY id"
            )
            rows = await cursor.fetchall()
        # The published one is forgotten (out of reach), the other redacted before it left.
        assert len(rows) == 1
        ((key, envelope, sent),) = rows
        assert not sent and key.startswith(f"{merchant_id}/{ERASED_PREFIX}")
        assert customer.encode() not in bytes(envelope)
    finally:
        await database.close()
