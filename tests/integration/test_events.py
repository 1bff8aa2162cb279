"""The event backbone against a real broker (tansu, started per test) and real PostgreSQL.

Each test gets its own broker, so topics and groups never leak between tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog.testing
from grpc_health.v1 import health_pb2
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.structs import TopicPartition
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY

from loyalnest.gen.events.v1 import points_pb2 as points_events
from loyalnest.gen.events.v1 import users_pb2
from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.event_loops import relay_spec
from loyalnest.platform.events import outbox
from loyalnest.platform.events.clients import ensure_topics
from loyalnest.platform.events.consumer import ConsumerRunner
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import TransactionalHandler
from loyalnest.platform.events.outbox import PostgresOutbox
from loyalnest.platform.events.relay import OutboxRelay
from loyalnest.platform.events.topics import POINTS
from loyalnest.platform.postgres import Database
from loyalnest.platform.server import RunningService
from loyalnest.services.points.events import CONSUMER_GROUP
from loyalnest.services.points.service import SPEC, PointsSettings
from tests.auth import merchant_metadata
from tests.consumed_events import consumed
from tests.integration.broker import BrokerProcess
from tests.integration.conftest import (
    eventually,
    points_settings,
    serve_for_test,
    serving,
    wait_for_health,
)
from tests.integration.events_worker import (
    FAST_EVENTS,
    POISON_REASON,
    REJECT_REASON,
    effect_handler,
    event_settings,
    open_sink,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SERVING = health_pb2.HealthCheckResponse.SERVING
OUTAGE_SECONDS = 4.0


@pytest.fixture
async def sink(database_url: str, kafka: BrokerProcess) -> AsyncIterator[Database]:
    database = await open_sink(event_settings(database_url, kafka.bootstrap_servers))
    try:
        yield database
    finally:
        await database.close()


@contextlib.asynccontextmanager
async def background(*loops: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    """Runs loops as a service would, cancelling them (its shutdown) on exit."""
    tasks = [asyncio.ensure_future(loop()) for loop in loops]
    try:
        yield
        for task in tasks:
            if task.done():
                task.result()  # a loop must never end by itself: surface why it did
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def scalar(database: Database, query: str, *params: Any) -> Any:
    async with database.pool.connection() as conn:
        cursor = await conn.execute(query, params)
        row = await cursor.fetchone()
    assert row is not None
    return row[0]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def processed(group: str, outcome: str, event_type: str = "points.earned") -> float:
    return metric(
        "loyalnest_events_processed_total",
        group=group,
        topic=POINTS.name,
        event_type=event_type,
        outcome=outcome,
    )


async def enqueue_earned(
    database: Database, merchant: str, items: list[tuple[str, int, str]]
) -> list[str]:
    """(customer, sequence, reason) -> points.earned in the outbox; returns the event ids."""
    ids = []
    async with database.pool.connection() as conn, conn.transaction():
        for customer, sequence, reason in items:
            payload = points_events.PointsEarned(
                customer_id=customer, sequence=sequence, points=10, reason=reason
            )
            ids.append((await outbox.enqueue(conn, merchant, payload)).event_id)
    return ids


@pytest.fixture(params=["kafka-python", "confluent"])
def kafka_client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Producers and consumers on one Kafka client, for the contract both must keep. Every
    setting built after this fixture (list it first) reads it from the environment, and so
    does the crash test's worker process."""
    client: str = request.param
    monkeypatch.setenv("LOYALNEST_KAFKA_PRODUCER", client)
    monkeypatch.setenv("LOYALNEST_KAFKA_CONSUMER", client)
    return client


def new_group() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


# --- 1,000 events, exactly once through a crash and redeliveries ---------------------------


async def test_thousand_events_applied_exactly_once_across_crash_and_redelivery(
    kafka_client: str, database_url: str, kafka: BrokerProcess, sink: Database, merchant_id: str
):
    settings = event_settings(database_url, kafka.bootstrap_servers)
    group = new_group()
    customers, per_customer = 20, 50
    for first in range(1, per_customer + 1, 10):
        await enqueue_earned(
            sink,
            merchant_id,
            [(f"c{c}", s, "") for s in range(first, first + 10) for c in range(customers)],
        )
    # Two relays, as with two worker processes: they share the lanes, never a key.
    relays = [OutboxRelay(PostgresOutbox(sink), settings, client_id=f"relay-{n}") for n in (1, 2)]
    async with background(*(relay.run for relay in relays)):
        await eventually(
            lambda: _backlog_is(sink, 0), 30, "the outbox to be published", interval=0.05
        )
        published = metric(
            "loyalnest_outbox_published_total", schema="event_sink", topic=POINTS.name
        )
        assert published >= 1000

        # A separate consumer process dies (SIGKILL) in the middle of its first batch,
        # inside the transaction of its 300th effect, before committing any offset.
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.integration.events_worker",
            database_url,
            kafka.bootstrap_servers,
            group,
            "300",
            cwd=REPO,
        )
        try:
            assert await asyncio.wait_for(worker.wait(), 60) == -signal.SIGKILL
        finally:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
        applied_by_worker = await scalar(sink, "SELECT count(*) FROM effects")
        # Partitions are applied concurrently, in batched transactions of up to 10 events:
        # the batches in flight on every partition die with it.
        batch = FAST_EVENTS["consumer_batch_max_events"]
        assert 300 - POINTS.partitions * batch <= applied_by_worker < 300
        committed = await asyncio.to_thread(_committed_offsets, kafka.bootstrap_servers, group)
        assert committed < applied_by_worker, "the crash must leave applied events uncommitted"

        # A restarted member receives those again and must skip them.
        runner = ConsumerRunner(
            settings, group=group, handlers={"points.earned": effect_handler(sink)}, client_id="c"
        )
        async with background(runner.run):
            await eventually(
                lambda: _effects_are(sink, customers * per_customer),
                60,
                "all 1,000 effects",
                explain=lambda: _consumer_state(sink, kafka.bootstrap_servers, group, runner),
            )
            assert processed(group, "duplicate") >= applied_by_worker - committed
            member = {"kafka-python": "KafkaPythonMember", "confluent": "ConfluentMember"}
            assert type(runner._member).__name__ == member[kafka_client]
            # What an operator sees on /metrics, e.g. during a rolling switch of clients.
            assert _kafka_client_reported("consumer", group) == kafka_client
            assert _kafka_client_reported("producer", "relay-1") == kafka_client
            await eventually(lambda: _lag_is_zero(group), 10, "the consumer lag to reach 0")

            # Redelivery of everything: the relay publishes the whole outbox again, as it
            # would after dying between Kafka's ack and marking the rows sent.
            duplicates_before = processed(group, "duplicate")
            async with sink.pool.connection() as conn:
                await conn.execute("UPDATE outbox SET sent_at = NULL")
            await eventually(
                lambda: _at_least(processed(group, "duplicate"), duplicates_before + 1000),
                60,
                "1,000 redelivered events to be skipped",
            )

    assert await scalar(sink, "SELECT count(*) FROM effects") == 1000
    assert await scalar(sink, "SELECT count(DISTINCT event_id) FROM effects") == 1000
    assert (
        await scalar(
            sink, "SELECT count(*) FROM outbox o JOIN effects e ON e.event_id = o.event_id::text"
        )
        == 1000
    )
    # Per-key order: each customer's events were first applied in sequence order.
    async with sink.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT customer_id, array_agg(sequence ORDER BY applied_order) FROM effects"
            " GROUP BY customer_id"
        )
        orders = dict(await cursor.fetchall())
    assert len(orders) == customers
    assert all(seq == list(range(1, per_customer + 1)) for seq in orders.values())


def _kafka_client_reported(role: str, name: str) -> str | None:
    """The library loyalnest_kafka_client_info says the producer or group member runs on."""
    for family in REGISTRY.collect():
        if family.name == "loyalnest_kafka_client_info":
            for sample in family.samples:
                labels = sample.labels
                if (labels["role"], labels["name"], sample.value) == (role, name, 1):
                    return labels["client"]
    return None


async def _lag_is_zero(group: str) -> bool:
    samples = [
        sample
        for family in REGISTRY.collect()
        if family.name == "loyalnest_consumer_lag"
        for sample in family.samples
        if sample.labels["group"] == group
    ]
    return bool(samples) and all(sample.value == 0 for sample in samples)


async def _backlog_is(database: Database, expected: int) -> bool:
    return (await PostgresOutbox(database).backlog()).pending == expected


async def _effects_are(database: Database, expected: int) -> bool:
    return await scalar(database, "SELECT count(*) FROM effects") >= expected


async def _at_least(value: float, expected: float) -> bool:
    return value >= expected


async def _consumer_state(
    sink: Database, bootstrap: str, group: str, runner: ConsumerRunner
) -> str:
    """Where a consumer that stopped short stands: what it applied, skipped and committed,
    and the positions it holds (none: it was never assigned a partition)."""
    effects = await scalar(sink, "SELECT count(*) FROM effects")
    committed = await asyncio.to_thread(_committed_offsets, bootstrap, group)
    outcomes = {
        o: processed(group, o) for o in ("applied", "duplicate", "ignored", "dead_lettered")
    }
    return (
        f"effects {effects}, processed {outcomes}, committed offsets (sum) {committed},"
        f" the runner's positions {dict(runner._positions)}"
    )


def _committed_offsets(bootstrap: str, group: str) -> int:
    """Sum of the group's committed offsets on the points topic (looked up, not joined)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(POINTS.name) or set()
        return sum(consumer.committed(TopicPartition(POINTS.name, p)) or 0 for p in partitions)
    finally:
        consumer.close(autocommit=False)


# --- a run of events claimed at once ---------------------------------------------------------


async def test_a_run_is_claimed_in_one_statement_and_each_event_applied_once(
    sink: Database,
) -> None:
    """TransactionalHandler.apply_many: an event applied before and one delivered twice in
    the run are answered False and their effects not repeated; the run again changes nothing."""
    handler = effect_handler(sink)
    assert isinstance(handler, TransactionalHandler)
    customer, group = f"c-{uuid.uuid4().hex[:8]}", new_group()
    events = [
        consumed(
            "m-run",
            points_events.PointsEarned(customer_id=customer, sequence=n),
            offset=n,
            consumer=group,
        )
        for n in range(3)
    ]
    assert await handler(events[0])  # applied alone, before the run
    run = [events[0], events[1], events[2], events[1]]

    async def apply_run() -> list[bool]:
        return await handler.apply_many(
            [(event, handler) for event in run], lambda event: contextlib.nullcontext()
        )

    assert await apply_run() == [False, True, True, False]
    effects = "SELECT count(*) FROM effects WHERE customer_id = %s"
    assert await scalar(sink, effects, customer) == 3
    assert await apply_run() == [False] * len(run)
    assert await scalar(sink, effects, customer) == 3


# --- broker outage while writes continue -----------------------------------------------------


def events_points_settings(database_url: str, bootstrap: str) -> PointsSettings:
    return points_settings(database_url).model_copy(
        update={**FAST_EVENTS, "kafka_bootstrap_servers": bootstrap, "events_enabled": True}
    )


@pytest.fixture
async def points_with_events(
    database_url: str, kafka: BrokerProcess
) -> AsyncIterator[RunningService]:
    async with serving(SPEC, events_points_settings(database_url, kafka.bootstrap_servers)) as s:
        yield s


@pytest.fixture
async def points_db(database_url: str) -> AsyncIterator[Database]:
    """The running Points service's own schema, to look at its outbox and ledgers."""
    assert SPEC.database is not None
    database = Database(ServiceSettings(database_url=database_url), SPEC.database)
    await database.open()
    try:
        yield database
    finally:
        await database.close()


async def test_broker_outage_outbox_drains_and_every_event_arrives(
    kafka_client: str,
    database_url: str,
    kafka: BrokerProcess,
    sink: Database,
    points_with_events: RunningService,
    points_db: Database,
):
    settings = event_settings(database_url, kafka.bootstrap_servers)
    group = new_group()
    runner = ConsumerRunner(
        settings, group=group, handlers={"points.earned": effect_handler(sink)}, client_id="c"
    )
    merchant = "m-outage"
    async with (
        grpc.aio.insecure_channel(points_with_events.address) as channel,
        background(runner.run),
    ):
        stub = points_pb2_grpc.PointsServiceStub(channel)
        earned = 0

        async def earn(count: int, pause: float = 0.0) -> None:
            nonlocal earned
            for _ in range(count):
                earned += 1
                await stub.EarnPoints(
                    points_pb2.EarnPointsRequest(
                        customer_id=f"c{earned % 7}", points=1, idempotency_key=f"k{earned}"
                    ),
                    metadata=merchant_metadata(merchant),
                )
                await asyncio.sleep(pause)

        await earn(30)
        await eventually(lambda: _effects_are(sink, 30), 30, "events before the outage")

        kafka.stop()
        outage_started = time.monotonic()
        # Writes go on for several seconds; the service stays healthy, events wait.
        await earn(60, pause=0.05)
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
        await wait_for_health(points_with_events.address, SERVING, timeout=1)
        backlog = metric("loyalnest_outbox_backlog", schema="points")
        assert backlog > 0, "the backlog gauge must show the waiting events"
        assert await scalar(points_db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL") > 0

        # The broker returns on the same port, empty (memory storage): topics are recreated.
        await kafka.start()
        await earn(30)
        await eventually(lambda: _effects_are(sink, 120), 60, "every event after the outage")
        await eventually(lambda: _backlog_is(points_db, 0), 10, "the outbox to drain")

    sent = await _event_ids(points_db, "SELECT event_id::text FROM outbox")
    applied = await _event_ids(sink, "SELECT event_id FROM effects")
    assert len(sent) == 120
    assert applied == sent
    assert await scalar(sink, "SELECT count(*) FROM effects") == 120


async def test_consumer_rereads_a_topic_the_broker_recreated_while_it_was_away(
    kafka_client: str, database_url: str, kafka: BrokerProcess, sink: Database, merchant_id: str
):
    """A broker that lost its state (tansu's memory storage, or a topic deleted and created
    again) serves a new log under the old name, starting at offset 0. The group's member
    keeps its fetch positions in the old log across the rebalance that follows: they must
    not be used, or the first records of every partition of the new log are skipped."""
    settings = event_settings(database_url, kafka.bootstrap_servers)
    group = new_group()
    runner = ConsumerRunner(
        settings, group=group, handlers={"points.earned": effect_handler(sink)}, client_id="c"
    )
    customers = [f"c{n}" for n in range(12)]
    async with background(runner.run):
        await enqueue_earned(sink, merchant_id, [(c, s, "") for s in (1, 2) for c in customers])
        async with background(OutboxRelay(PostgresOutbox(sink), settings, client_id="r").run):
            await eventually(lambda: _effects_are(sink, 24), 30, "events before the restart")

        kafka.stop()
        await kafka.start()
        # The first client to name the missing topic gets it created with tansu's default of
        # 4 partitions (it ignores allow_auto_create_topics=False), before the relay creates
        # it with 6 or after: created here, so that it is always the case this test is about.
        # The changed count makes the member rejoin through a rebalance that keeps positions.
        await asyncio.to_thread(_create_topic, kafka.bootstrap_servers, POINTS.name, 4)
        await enqueue_earned(
            sink, merchant_id, [(c, s, "") for s in range(3, 11) for c in customers]
        )
        async with background(OutboxRelay(PostgresOutbox(sink), settings, client_id="r").run):
            await eventually(lambda: _effects_are(sink, 120), 60, "every event after the restart")

    assert await scalar(sink, "SELECT count(*) FROM effects") == 120
    assert await scalar(sink, "SELECT count(DISTINCT event_id) FROM effects") == 120


def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


async def test_a_topic_with_another_partition_count_is_reported(kafka: BrokerProcess) -> None:
    settings = ServiceSettings(kafka_bootstrap_servers=kafka.bootstrap_servers)
    await asyncio.to_thread(_create_topic, kafka.bootstrap_servers, POINTS.name, 2)
    with structlog.testing.capture_logs() as logs:
        await asyncio.to_thread(ensure_topics, settings, "t", [POINTS.name])
    warnings = [e for e in logs if e["event"] == "kafka topic has an unexpected partition count"]
    assert [(w["topic"], w["partitions"]) for w in warnings] == [(POINTS.name, 2)]
    assert warnings[0]["expected"] == POINTS.partitions


# --- the relay in a process of its own -------------------------------------------------------


async def test_a_separate_relay_process_publishes_what_the_service_only_enqueues(
    database_url: str, kafka: BrokerProcess, sink: Database, points_db: Database
):
    settings = events_points_settings(database_url, kafka.bootstrap_servers).model_copy(
        update={"outbox_relay_in_process": False}
    )
    group = new_group()
    runner = ConsumerRunner(
        settings, group=group, handlers={"points.earned": effect_handler(sink)}, client_id="c"
    )
    async with (
        serve_for_test(SPEC, settings, points_pb2_grpc.PointsServiceStub) as (_, stub),
        background(runner.run),
    ):
        for n in range(10):
            await stub.EarnPoints(
                points_pb2.EarnPointsRequest(
                    customer_id=f"c{n % 3}", points=1, idempotency_key=f"sep-{n}"
                ),
                metadata=merchant_metadata("m-relay"),
            )
        await asyncio.sleep(1.0)  # ample for an in-process relay (it polls every 20 ms)
        assert await scalar(points_db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 10
        assert await scalar(sink, "SELECT count(*) FROM effects") == 0

        # The service still reports its outbox's backlog: the alert does not need a relay.
        async def backlog_reported() -> bool:
            return metric("loyalnest_outbox_backlog", schema=points_db.spec.schema) == 10

        await eventually(backlog_reported, 10, "the backlog gauge of the unrelayed outbox")

        async with serving(relay_spec(SPEC), settings):
            await eventually(lambda: _effects_are(sink, 10), 30, "the relayed events")
        assert await scalar(points_db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0


async def _event_ids(database: Database, query: str) -> set[str]:
    async with database.pool.connection() as conn:
        cursor = await conn.execute(query)
        return {row[0] for row in await cursor.fetchall()}


# --- a group with members on both clients (a rolling switch of kafka_consumer) -------------


async def test_a_group_shared_by_both_clients_applies_each_event_once(
    database_url: str, kafka: BrokerProcess, sink: Database, merchant_id: str
):
    """While a deployment switches clients, old and new pods share the group: the members
    must agree on the assignment (both offer range and round robin) and on the offsets."""
    group = new_group()
    runners = [
        ConsumerRunner(
            event_settings(
                database_url,
                kafka.bootstrap_servers,
                kafka_consumer=client,
                kafka_producer=client,
            ),
            group=group,
            handlers={"points.earned": effect_handler(sink)},
            client_id=f"c-{client}",
        )
        for client in ("kafka-python", "confluent")
    ]
    settings = event_settings(database_url, kafka.bootstrap_servers)

    async def split_between_both() -> bool:
        assigned = []
        for runner in runners:
            member = runner._member
            consumer = getattr(member, "_consumer", None)
            partitions = set() if consumer is None else set(consumer.assignment())
            assigned.append({(tp.topic, tp.partition) for tp in partitions})
        both = all(a for a in assigned) and not set.intersection(*assigned)
        # Every partition of the topic, and nothing else (not the dead letters).
        wanted = {(POINTS.name, p) for p in range(POINTS.partitions)}
        return both and set.union(*assigned) == wanted

    async with background(*(runner.run for runner in runners)):
        await eventually(split_between_both, 60, "both members to share the partitions")
        customers = [f"c{n}" for n in range(24)]
        await enqueue_earned(
            sink, merchant_id, [(c, s, "") for s in range(1, 6) for c in customers]
        )
        async with background(OutboxRelay(PostgresOutbox(sink), settings, client_id="r").run):
            await eventually(lambda: _effects_are(sink, 120), 60, "every event")
        assert all(runner._positions for runner in runners), "each member applied some"

    assert await scalar(sink, "SELECT count(*) FROM effects") == 120
    assert await scalar(sink, "SELECT count(DISTINCT event_id) FROM effects") == 120


# --- poison messages go to the dead-letter topic --------------------------------------------


async def test_poison_messages_are_dead_lettered_and_the_rest_processed(
    kafka_client: str, database_url: str, kafka: BrokerProcess, sink: Database, merchant_id: str
):
    settings = event_settings(database_url, kafka.bootstrap_servers, consumer_max_attempts=3)
    group = new_group()
    # One customer, so every record shares a partition: the ones after a poison pill must
    # not be held up by it.
    first = await enqueue_earned(sink, merchant_id, [("c1", 1, ""), ("c1", 2, POISON_REASON)])
    relay = OutboxRelay(PostgresOutbox(sink), settings, client_id="relay")
    runner = ConsumerRunner(
        settings, group=group, handlers={"points.earned": effect_handler(sink)}, client_id="c"
    )
    async with background(relay.run):
        await eventually(lambda: _backlog_is(sink, 0), 30, "the first events to be published")
        # Not an envelope at all, from some other producer, on the same partition.
        await asyncio.to_thread(
            _publish_raw, kafka.bootstrap_servers, POINTS.name, f"{merchant_id}/c1", b"\x00garbage"
        )
        later = await enqueue_earned(
            sink, merchant_id, [("c1", 3, ""), ("c1", 4, REJECT_REASON), ("c1", 5, "")]
        )
        async with background(runner.run):
            await eventually(lambda: _effects_are(sink, 3), 60, "the healthy events")
            dead = await asyncio.to_thread(
                _read_topic, kafka.bootstrap_servers, POINTS.dead_letter, 3
            )

    applied = await _event_ids(sink, "SELECT event_id FROM effects")
    assert applied == {first[0], later[0], later[2]}
    poison, garbage, rejected = dead
    assert poison["event_id"] == first[1]
    assert poison["dlq.reason"] == "ValueError: poison pill"
    assert poison["dlq.attempts"] == "3"
    assert poison["dlq.consumer_group"] == group
    assert poison["dlq.source"].startswith(f"{POINTS.name}/")
    assert garbage["dlq.reason"].startswith("InvalidEvent: not an event envelope")
    assert garbage["dlq.attempts"] == "1"
    assert garbage["value"] == b"\x00garbage"
    assert rejected["event_id"] == later[1]
    assert rejected["dlq.reason"] == "PermanentEventError: rejected by the handler"
    assert rejected["dlq.attempts"] == "1"
    assert processed(group, "dead_lettered") == 2
    assert processed(group, "dead_lettered", event_type="unknown") == 1


def _publish_raw(bootstrap: str, topic: str, key: str, value: bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(topic, key=key.encode(), value=value).get(timeout=10)
    finally:
        producer.close()


def _read_topic(
    bootstrap: str, topic: str, count: int, timeout: float = 30
) -> list[dict[str, Any]]:
    """The first `count` records of a one-partition topic: headers plus the raw value."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        records: list[Any] = []
        until = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < until:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    assert len(records) >= count, f"only {len(records)} records on {topic}"
    return [
        {**{k: v.decode() for k, v in record.headers}, "value": record.value}
        for record in records[:count]
    ]


# --- trace continuity ------------------------------------------------------------------------


class _Switchable(SpanExporter):
    """Forwards to an in-memory exporter while a test listens (a provider's processors
    cannot be removed, and one provider serves the whole test session)."""

    def __init__(self) -> None:
        self.target: InMemorySpanExporter | None = None

    def export(self, spans: Any) -> SpanExportResult:
        if self.target is not None:
            return self.target.export(spans)
        return SpanExportResult.SUCCESS


_SWITCH = _Switchable()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    if not getattr(provider, "_loyalnest_test_switch", False):
        provider.add_span_processor(SimpleSpanProcessor(_SWITCH))
        provider._loyalnest_test_switch = True  # type: ignore[attr-defined]
    exporter = InMemorySpanExporter()
    _SWITCH.target = exporter
    try:
        yield exporter
    finally:
        _SWITCH.target = None


async def test_consumer_span_continues_the_producing_rpc_trace(
    kafka_client: str,
    database_url: str,
    kafka: BrokerProcess,
    spans: InMemorySpanExporter,
    points_with_events: RunningService,
):
    settings = event_settings(database_url, kafka.bootstrap_servers)
    seen: list[ConsumedEvent] = []

    async def record(event: ConsumedEvent) -> bool:
        seen.append(event)
        return True

    group = new_group()
    runner = ConsumerRunner(
        settings, group=group, handlers={"points.earned": record}, client_id="c"
    )
    async with (
        grpc.aio.insecure_channel(points_with_events.address) as channel,
        background(runner.run),
    ):
        stub = points_pb2_grpc.PointsServiceStub(channel)
        # The caller's trace, sampled: services record spans of sampled traces even when
        # they start none of their own (no exporter configured), so the spans reach us.
        caller_trace, caller_span = random.getrandbits(128), random.getrandbits(64)
        traceparent = f"00-{caller_trace:032x}-{caller_span:016x}-01"
        await stub.EarnPoints(
            points_pb2.EarnPointsRequest(customer_id="c", points=5, idempotency_key="trace"),
            metadata=(*merchant_metadata("m-trace"), ("traceparent", traceparent)),
        )
        await eventually(lambda: _at_least(len(seen), 1), 30, "the event to be consumed")

    finished: list[ReadableSpan] = list(spans.get_finished_spans())
    (rpc,) = [s for s in finished if s.kind == SpanKind.SERVER and s.name.endswith("/EarnPoints")]
    # This test's consumer's span (Points consumes its own points.earned too: VIP tiers).
    (consume,) = [
        s
        for s in finished
        if s.name == "process points.earned"
        and (s.attributes or {}).get("messaging.consumer.group.name") == group
    ]
    assert rpc.context is not None and consume.context is not None
    assert consume.kind == SpanKind.CONSUMER
    assert rpc.context.trace_id == caller_trace
    assert consume.context.trace_id == caller_trace
    assert consume.parent is not None and consume.parent.span_id == rpc.context.span_id
    assert consume.attributes is not None
    assert consume.attributes["messaging.message.id"] == seen[0].event_id
    assert seen[0].headers["traceparent"] == seen[0].envelope.trace_context["traceparent"]


# --- Points consumes user.created ------------------------------------------------------------


async def test_points_opens_a_ledger_for_each_new_customer_once(
    database_url: str,
    kafka: BrokerProcess,
    sink: Database,
    points_with_events: RunningService,
    points_db: Database,
):
    settings = event_settings(database_url, kafka.bootstrap_servers)
    merchant = "m-users"
    # The sink schema plays Users-Service: its outbox carries user.created.
    async with sink.pool.connection() as conn, conn.transaction():
        customer = await outbox.enqueue(
            conn,
            merchant,
            users_pb2.UserCreated(user_id="new-customer", kind=users_pb2.USER_KIND_CUSTOMER),
        )
        await outbox.enqueue(
            conn, merchant, users_pb2.UserCreated(user_id="staff", kind=users_pb2.USER_KIND_STAFF)
        )
        await outbox.enqueue(
            conn,
            merchant,
            users_pb2.UserCreated(user_id="bad id!", kind=users_pb2.USER_KIND_CUSTOMER),
        )
    dead_before = metric(
        "loyalnest_events_processed_total",
        group=CONSUMER_GROUP,
        topic="loyalnest.users.events",
        event_type="user.created",
        outcome="dead_lettered",
    )
    relay = OutboxRelay(PostgresOutbox(sink), settings, client_id="users-relay")
    md = merchant_metadata(merchant)
    async with grpc.aio.insecure_channel(points_with_events.address) as channel:
        stub = points_pb2_grpc.PointsServiceStub(channel)
        request = points_pb2.GetPointsBalanceRequest(customer_id="new-customer")
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetPointsBalance(request, metadata=md)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND

        async with background(relay.run):

            async def ledger_opened() -> bool:
                try:
                    await stub.GetPointsBalance(request, metadata=md)
                except grpc.aio.AioRpcError:
                    return False
                return True

            await eventually(ledger_opened, 60, "the ledger to be opened")
            response = await stub.GetPointsBalance(request, metadata=md)
            assert response.balance.balance == 0
            staff = points_pb2.GetPointsBalanceRequest(customer_id="staff")
            with pytest.raises(grpc.aio.AioRpcError) as no_ledger:
                await stub.GetPointsBalance(staff, metadata=md)
            assert no_ledger.value.code() == grpc.StatusCode.NOT_FOUND

            async def dead_lettered() -> bool:
                value = metric(
                    "loyalnest_events_processed_total",
                    group=CONSUMER_GROUP,
                    topic="loyalnest.users.events",
                    event_type="user.created",
                    outcome="dead_lettered",
                )
                return value >= dead_before + 1

            await eventually(dead_lettered, 30, "the invalid user id to be dead-lettered")

            # Delivered again: recognised, not applied twice.
            async with sink.pool.connection() as conn:
                await conn.execute("UPDATE outbox SET sent_at = NULL")
            await eventually(lambda: _backlog_is(sink, 0), 30, "the republication")
            await asyncio.sleep(1)

    assert (
        await scalar(
            points_db,
            "SELECT count(*) FROM processed_events WHERE consumer = %s AND event_id = %s",
            CONSUMER_GROUP,
            customer.event_id,
        )
        == 1
    )
    assert await scalar(points_db, "SELECT count(*) FROM ledgers") == 1
