"""Points' MongoDB ledger store publishing its points.* events through the outbox relay to a
real Kafka-protocol broker (tansu, started per test), consumed back from the broker.

MongoDB here is mongomock-ng, an in-process FAKE (no MongoDB server can run where these tests
were written; see DESIGN.md §4): test ids say `mongo-FAKE-mongomock`. The broker, the
producer, the relay and the service are real; what the fake cannot show (write conflicts
between transactions on a lane's counter, non-snapshot reads, leases across processes) is
listed in loyalnest.platform.events.mongo_outbox.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import grpc
import mongomock_ng
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.partitioner.default import murmur2
from kafka.structs import TopicPartition

from loyalnest.gen.events.v1 import envelope_pb2, users_pb2
from loyalnest.gen.events.v1 import points_pb2 as events_pb2
from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.events.clients import ensure_topics
from loyalnest.platform.events.envelope import new_event
from loyalnest.platform.events.mongo_outbox import MongoOutbox, lease_seconds_for
from loyalnest.platform.events.relay import OutboxRelay
from loyalnest.platform.events.topics import POINTS, USERS
from loyalnest.services.points.service import SPEC, PointsSettings
from loyalnest.services.points.store.mongo import MongoLedgerStore
from tests.auth import merchant_metadata
from tests.contract.test_ledger_store import earn, redeem
from tests.integration.broker import BrokerProcess
from tests.integration.conftest import (
    eventually,
    serve_for_test,
    service_settings_for_tests,
)
from tests.integration.events_worker import FAST_EVENTS
from tests.integration.test_events import background

pytestmark = pytest.mark.integration

FAKE_MONGO = "mongo-FAKE-mongomock"
Document = dict[str, Any]


@pytest.fixture(params=[FAKE_MONGO])
def fake_mongo(request: pytest.FixtureRequest) -> Iterator[mongomock_ng.MongoClient]:
    client = mongomock_ng.MongoClient(tz_aware=True, tzinfo=UTC)
    try:
        yield client
    finally:
        client.close()


def relay_settings(bootstrap: str) -> ServiceSettings:
    return ServiceSettings(
        kafka_bootstrap_servers=bootstrap,
        metrics_enabled=False,
        # Small batches over few lanes: many claims, so the two relays contend for lanes.
        outbox_batch_size=16,
        outbox_lanes_per_batch=4,
        **FAST_EVENTS,
    )


def consume_all(
    bootstrap: str, topic: str, expected: int, timeout: float = 60, linger: float = 2.0
) -> dict[int, list[Any]]:
    """Every record of `topic`, per partition in offset order. Reads on for `linger` seconds
    after `expected` records arrived, so duplicates would show."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    try:
        partitions = [TopicPartition(topic, p) for p in range(POINTS.partitions)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: dict[int, list[Any]] = {p.partition: [] for p in partitions}
        until = time.monotonic() + timeout
        lingering_until: float | None = None
        while time.monotonic() < (lingering_until or until):
            for partition, batch in consumer.poll(timeout_ms=200).items():
                records[partition.partition].extend(batch)
            if lingering_until is None and sum(map(len, records.values())) >= expected:
                lingering_until = time.monotonic() + linger
    finally:
        consumer.close()
    return records


def explain_missing(kafka: BrokerProcess, database: Any, read: set[str]) -> str:
    """Which sent events the consumer did not get, on which partitions, and whether one more
    record on every partition makes the broker serve them. Suspect: tansu keeps a partition's
    high watermark in a cached object (its ListOffsets answer is seen stale after concurrent
    producers until the next record); a fetch answered from a stale one would hide the
    partition's last records. Not served even then: acknowledged and never stored."""
    sent = {doc["_id"]: doc for doc in database["outbox"].find({"sent_at": {"$ne": None}})}
    missing = {
        # kafka-python's (and the relay's murmur2_random) partition for the key
        event_id: (murmur2(doc["partition_key"].encode()) & 0x7FFFFFFF) % POINTS.partitions
        for event_id, doc in sent.items()
        if event_id not in read
    }
    probe = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    try:
        for partition in range(POINTS.partitions):
            probe.send(POINTS.name, value=b"probe", partition=partition).get(timeout=10)
    finally:
        probe.close()
    reread = consume_all(kafka.bootstrap_servers, POINTS.name, len(sent) + POINTS.partitions, 20)
    found = {
        envelope_pb2.Envelope.FromString(record.value).event_id
        for batch in reread.values()
        for record in batch
        if record.value != b"probe"
    }
    return (
        f"{len(sent)} events sent, {len(read)} read; missing (event id: partition): {missing};"
        f" served after one more record per partition: {sorted(found & set(missing))}"
    )


def ledger_sequences(records: dict[int, list[Any]]) -> tuple[dict[str, list[int]], list[str]]:
    """customer -> ledger sequences in the order the broker holds them; and every event id."""
    sequences: dict[str, list[int]] = {}
    event_ids: list[str] = []
    payload_types = {
        "points.earned": events_pb2.PointsEarned,
        "points.redeemed": events_pb2.PointsRedeemed,
        "points.adjusted": events_pb2.PointsAdjusted,
    }
    for batch in records.values():
        for record in sorted(batch, key=lambda r: r.offset):
            envelope = envelope_pb2.Envelope.FromString(record.value)
            payload = payload_types[envelope.event_type]()
            assert envelope.payload.Unpack(payload)
            assert record.key == f"{envelope.merchant_id}/{payload.customer_id}".encode()
            sequences.setdefault(payload.customer_id, []).append(payload.sequence)
            event_ids.append(envelope.event_id)
    return sequences, event_ids


async def test_mongo_ledger_events_are_published_once_in_sequence_order(
    kafka: BrokerProcess, fake_mongo: mongomock_ng.MongoClient, merchant_id: str
):
    store = MongoLedgerStore(fake_mongo[f"points_{uuid.uuid4().hex[:8]}"])
    await store.ensure_indexes()
    settings = relay_settings(kafka.bootstrap_servers)
    # Two relays, as with two Points replicas: they share the lanes through leases.
    relays = [
        OutboxRelay(
            MongoOutbox(store.database, name="points", lease_seconds=lease_seconds_for(settings)),
            settings,
            client_id=f"mongo-relay-{n}",
        )
        for n in (1, 2)
    ]
    customers, rounds = [f"c{n}" for n in range(20)], 8

    async def postings(customer: str) -> None:
        for round_ in range(rounds):
            await earn(store, merchant_id, customer, 10)
            if round_ % 3 == 2:
                await redeem(store, merchant_id, customer, 5)

    per_customer = rounds + rounds // 3
    expected = len(customers) * per_customer
    outbox = MongoOutbox(store.database, lease_seconds=60)

    async def drained() -> bool:
        return (await outbox.backlog()).pending == 0

    async with background(*(relay.run for relay in relays)):
        # Written while the relays run: claims interleave with the writers.
        await asyncio.gather(*(postings(c) for c in customers))
        await eventually(drained, 60, "the relays to drain the outbox")

    assert store.database["outbox"].count_documents({}) == expected, "one event per posting"
    records = await asyncio.to_thread(consume_all, kafka.bootstrap_servers, POINTS.name, expected)
    sequences, event_ids = ledger_sequences(records)
    if len(set(event_ids)) < expected:
        # Seen once (198 of 200, librdkafka relays), before the publishers stopped counting
        # records acknowledged without an offset (clients.count_stored): say where they went.
        pytest.fail(await asyncio.to_thread(explain_missing, kafka, store.database, set(event_ids)))
    assert len(event_ids) == expected, "each event published exactly once"
    assert len(set(event_ids)) == expected
    stored = {doc["_id"] for doc in store.database["outbox"].find({"sent_at": {"$ne": None}})}
    assert stored == set(event_ids)
    assert sequences == {c: list(range(1, per_customer + 1)) for c in customers}


# --- the Points service with LOYALNEST_POINTS_LEDGER_STORE=mongo ------------------------------


async def test_points_service_on_mongo_relays_its_events_and_consumes_user_created(
    kafka: BrokerProcess, fake_mongo: mongomock_ng.MongoClient, monkeypatch: pytest.MonkeyPatch
):
    # The service connects by URL; here every connection is the fake.
    monkeypatch.setattr(
        "loyalnest.services.points.store.mongo.MongoClient", lambda *a, **kw: fake_mongo
    )
    settings = service_settings_for_tests(
        PointsSettings,
        "postgresql://unused",  # the mongo store opens no PostgreSQL
        points_ledger_store="mongo",
        mongo_database="loyalnest_points",
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        events_enabled=True,
        **FAST_EVENTS,
    )
    merchant = "m-mongo-service"
    md = merchant_metadata(merchant)
    async with serve_for_test(SPEC, settings, points_pb2_grpc.PointsServiceStub) as (_, stub):
        for n in range(1, 6):
            await stub.EarnPoints(
                points_pb2.EarnPointsRequest(
                    customer_id="earner", points=n, idempotency_key=f"earn-{n}"
                ),
                metadata=md,
            )
        records = await asyncio.to_thread(consume_all, kafka.bootstrap_servers, POINTS.name, 5)
        sequences, event_ids = ledger_sequences(records)
        assert sequences == {"earner": [1, 2, 3, 4, 5]}
        assert len(set(event_ids)) == 5

        # The consumer runs beside the relay: user.created opens the customer's ledger.
        await asyncio.to_thread(publish_user_created, kafka.bootstrap_servers, merchant)
        request = points_pb2.GetPointsBalanceRequest(customer_id="newcomer")

        async def ledger_opened() -> bool:
            try:
                await stub.GetPointsBalance(request, metadata=md)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                return False
            return True

        await eventually(ledger_opened, 60, "user.created to open the ledger")
        response = await stub.GetPointsBalance(request, metadata=md)
        assert response.balance.balance == 0


def publish_user_created(bootstrap: str, merchant: str) -> None:
    """As Users-Service's relay would: an enveloped user.created on its topic."""
    settings = ServiceSettings(kafka_bootstrap_servers=bootstrap, **FAST_EVENTS)
    ensure_topics(settings, "test-users", [USERS.name])
    event = new_event(
        merchant, users_pb2.UserCreated(user_id="newcomer", kind=users_pb2.USER_KIND_CUSTOMER)
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(
            USERS.name,
            key=event.key.encode(),
            value=event.value,
            headers=[(k, v.encode()) for k, v in event.headers.items()],
        ).get(timeout=10)
    finally:
        producer.close()
