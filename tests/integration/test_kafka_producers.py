"""The events' two Kafka clients (kafka-python, librdkafka) against a real broker.

The relay on librdkafka (`kafka_producer = "confluent"`): every event once, each key on the
partition kafka-python picks for it, in order; a broker that is away fails the batch (rows
stay pending) and the relay delivers them once it is back. A process on one client never
imports the other library.

The consumer contract (exactly once across a crash, dead letters, a broker that restarts
empty, trace continuation) runs over both clients in tests/integration/test_events.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer
from kafka.partitioner.default import murmur2
from kafka.structs import TopicPartition

from loyalnest.gen.events.v1 import points_pb2 as points_events
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.events import outbox
from loyalnest.platform.events.clients import OutgoingRecord, PublishError, new_publisher
from loyalnest.platform.events.envelope import Envelope
from loyalnest.platform.events.librdkafka import ConfluentPublisher
from loyalnest.platform.events.outbox import PostgresOutbox
from loyalnest.platform.events.relay import OutboxRelay
from loyalnest.platform.events.topics import POINTS, topic_partitions
from loyalnest.platform.postgres import Database
from tests.integration.broker import BrokerProcess
from tests.integration.conftest import eventually
from tests.integration.events_worker import FAST_EVENTS, event_settings, open_sink

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _read_all(bootstrap: str, topic: str, count: int, timeout: float = 30) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    try:
        partitions = [TopicPartition(topic, p) for p in range(topic_partitions(topic))]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        until = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < until:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


async def _pending(database: Database) -> int:
    async with database.pool.connection() as conn:
        cursor = await conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_relay_on_librdkafka_publishes_each_event_once_on_kafka_pythons_partition(
    database_url: str, kafka: BrokerProcess, merchant_id: str
) -> None:
    settings = event_settings(database_url, kafka.bootstrap_servers).model_copy(
        update={"kafka_producer": "confluent"}
    )
    sink = await open_sink(settings)
    customers = [f"c{i}" for i in range(12)]
    try:
        async with sink.pool.connection() as conn, conn.transaction():
            for sequence in range(1, 21):
                for customer in customers:
                    payload = points_events.PointsEarned(
                        customer_id=customer, sequence=sequence, points=1
                    )
                    await outbox.enqueue(conn, merchant_id, payload)
        relay = OutboxRelay(PostgresOutbox(sink), settings, client_id="rdkafka-relay")
        assert isinstance(relay._publisher, ConfluentPublisher)
        task = asyncio.ensure_future(relay.run())
        try:
            await eventually(lambda: _zero(sink), 30, "the outbox to drain")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await sink.close()

    records = await asyncio.to_thread(_read_all, kafka.bootstrap_servers, POINTS.name, 240)
    assert len(records) == 240  # each once: no more arrived within the read's timeout
    partitions = topic_partitions(POINTS.name)
    sequences: dict[str, list[int]] = {}
    for record in records:
        key = record.key.decode()
        # What kafka-python (and Java) pick: switching producers keeps each key's partition.
        assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % partitions
        earned = points_events.PointsEarned()
        Envelope.FromString(record.value).payload.Unpack(earned)
        sequences.setdefault(key, []).append(earned.sequence)
    assert len(sequences) == len(customers)
    assert all(s == list(range(1, 21)) for s in sequences.values())  # in order, per key


async def _zero(database: Database) -> bool:
    return await _pending(database) == 0


async def test_librdkafka_publisher_reports_each_record_failed_when_the_broker_is_away(
    database_url: str,
) -> None:
    # Nothing listens there: every record fails (not acknowledged), none is reported sent.
    settings = event_settings(database_url, "127.0.0.1:1").model_copy(
        update={
            "kafka_producer": "confluent",
            "kafka_publish_timeout_seconds": 1.0,
            "kafka_connect_timeout_seconds": 1.0,
        }
    )
    publisher = new_publisher(settings, "rdkafka-away")
    try:
        records = [OutgoingRecord(POINTS.name, b"k", b"v") for _ in range(3)]
        results = await publisher.publish(records)
    finally:
        await publisher.close()
    assert len(results) == 3
    assert all(result is not None for result in results)


def _key_on(partition: int) -> bytes:
    """A key both clients' partitioner (murmur2) puts on `partition` of the points topic."""
    partitions = topic_partitions(POINTS.name)
    for n in itertools.count():
        key = f"k{n}".encode()
        if (murmur2(key) & 0x7FFFFFFF) % partitions == partition:
            return key
    raise AssertionError("unreachable")


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
async def test_records_a_restarted_broker_takes_for_duplicates_are_published_again(
    kafka: BrokerProcess, client: str
) -> None:
    """A memory-backed broker (tansu) that restarts forgets the producer ids it handed out
    and hands them out again from the first. A producer that outlived the restart keeps
    its id: when it writes first to a partition under the id the broker has just given
    another producer, that producer's records there are answered as duplicates
    (DUPLICATE_SEQUENCE_NUMBER), stored nowhere, and reported delivered by both clients.
    They must fail, so that the relay sends their rows again; the publisher's next
    producer has an id of its own and stores them."""
    settings = ServiceSettings(
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        metrics_enabled=False,
        kafka_producer=client,
        **FAST_EVENTS,
    )
    earlier, later = new_publisher(settings, "earlier"), new_publisher(settings, "later")
    try:
        # `earlier` gets the broker's first producer id.
        assert await earlier.publish([OutgoingRecord(POINTS.name, _key_on(1), b"warm")]) == [None]
        kafka.stop()
        await kafka.start()
        # The restarted broker gives `later`, its first producer, that id again.
        assert await later.publish([OutgoingRecord(POINTS.name, _key_on(2), b"warm")]) == [None]
        # `earlier` writes partition 0 first, under the shared id (sequence 0 there).
        assert await earlier.publish([OutgoingRecord(POINTS.name, _key_on(0), b"e")]) == [None]
        batch = [OutgoingRecord(POINTS.name, _key_on(0), f"later-{i}".encode()) for i in range(5)]
        results = await later.publish(batch)
        assert all(isinstance(result, PublishError) for result in results), results
        assert await later.publish(batch) == [None] * len(batch)
    finally:
        await earlier.close()
        await later.close()
    stored = await asyncio.to_thread(_read_all, kafka.bootstrap_servers, POINTS.name, 7)
    on_partition_0 = [record.value for record in stored if record.partition == 0]
    assert on_partition_0 == [b"e", *(record.value for record in batch)]


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
async def test_a_process_on_one_kafka_client_never_imports_the_other(
    database_url: str, kafka: BrokerProcess, client: str
) -> None:
    env = {**os.environ, "LOYALNEST_KAFKA_PRODUCER": client, "LOYALNEST_KAFKA_CONSUMER": client}
    probe = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.kafka_client_probe",
        database_url,
        kafka.bootstrap_servers,
        f"probe-{uuid.uuid4().hex[:8]}",
        "12",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(probe.communicate(), 120)
    assert probe.returncode == 0
    report = json.loads(stdout.decode().strip().splitlines()[-1])
    assert report["applied"] == 12  # relayed, consumed and applied: the clients were used
    assert report["kafka_python"] is (client == "kafka-python")
    assert report["librdkafka"] is (client == "confluent")
