"""Relay and consumer logic without a broker: fakes for the outbox, Kafka and dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import psycopg
import pymongo.errors
import pytest
import structlog.testing
from kafka.errors import KafkaTimeoutError
from kafka.structs import TopicPartition
from prometheus_client import REGISTRY

from loyalnest.gen.events.v1 import points_pb2
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.events import consumer as consumer_module
from loyalnest.platform.events import kafka_python
from loyalnest.platform.events.clients import Backoff, OutgoingRecord, Partition, PublishError
from loyalnest.platform.events.consumer import (
    DLQ_ATTEMPTS,
    DLQ_GROUP,
    DLQ_REASON,
    DLQ_SOURCE,
    ConsumerRunner,
    EventProcessor,
    PermanentEventError,
    dead_letter_record,
)
from loyalnest.platform.events.envelope import ConsumedEvent, RecordLike, new_event
from loyalnest.platform.events.inbox import BatchHandler, EventScope, TransactionalHandler
from loyalnest.platform.events.outbox import Backlog, PendingRow
from loyalnest.platform.events.relay import OutboxRelay, RelayBatchFailed

SETTINGS = ServiceSettings(
    events_retry_initial_seconds=0.001,
    events_retry_max_seconds=0.005,
    outbox_poll_interval_seconds=0.001,
    outbox_batch_size=3,
    consumer_max_attempts=3,
)


# --- relay ----------------------------------------------------------------------------------


@dataclass
class FakeClaim:
    rows: Sequence[PendingRow]
    source: FakeOutbox

    async def mark_sent(self, ids: Sequence[int]) -> None:
        self.source.sent.extend(ids)


@dataclass
class FakeOutbox:
    pending: list[PendingRow]
    name: str = "fake"
    sent: list[int] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def claim(self, limit: int, lanes: int) -> AsyncIterator[FakeClaim]:
        rows = [row for row in self.pending if row.id not in self.sent][:limit]
        yield FakeClaim(rows, self)

    async def backlog(self) -> Backlog:
        return Backlog(len(self.pending) - len(self.sent), 0.0)

    async def purge_sent(self, older_than_seconds: float) -> int:
        return 0


class FakeKafka:
    """Fails the records it is told to, a number of times each; records the rest."""

    def __init__(self, failures: dict[str, int] | None = None) -> None:
        self.failures = dict(failures or {})
        self.published: list[OutgoingRecord] = []
        self.closed = False
        self.calls = 0

    async def publish(self, records: Sequence[OutgoingRecord]) -> list[Exception | None]:
        self.calls += 1
        results: list[Exception | None] = []
        for record in records:
            name = record.value.decode()
            if self.failures.get(name, 0) > 0:
                self.failures[name] -= 1
                results.append(ConnectionError(f"broker away for {name}"))
            else:
                self.published.append(record)
                results.append(None)
        return results

    async def close(self) -> None:
        self.closed = True


def rows(*names: str) -> list[PendingRow]:
    return [
        PendingRow(i, OutgoingRecord("t", b"k", name.encode(), [("event_id", name.encode())]))
        for i, name in enumerate(names, start=1)
    ]


async def test_relay_marks_only_acknowledged_rows_and_reports_the_rest():
    source, kafka = FakeOutbox(rows("a", "b", "c")), FakeKafka({"b": 1})
    relay = OutboxRelay(source, SETTINGS, client_id="t", publisher=kafka)
    with pytest.raises(RelayBatchFailed, match="1 of 3 events not published"):
        await relay.relay_batch()
    assert source.sent == [1, 3]
    assert await relay.relay_batch() == 1
    assert source.sent == [1, 3, 2]
    assert await relay.relay_batch() == 0


async def test_relay_loop_retries_until_the_broker_takes_everything():
    source = FakeOutbox(rows("a", "b", "c", "d", "e"))
    kafka = FakeKafka({"a": 3, "e": 2})
    relay = OutboxRelay(source, SETTINGS, client_id="t", publisher=kafka)
    with structlog.testing.capture_logs() as logs:
        task = asyncio.ensure_future(relay.run())
        for _ in range(500):
            if len(source.sent) == 5:
                break
            await asyncio.sleep(0.002)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    events = [entry["event"] for entry in logs]
    assert "outbox relay failed; retrying" in events
    assert events.index("outbox relay recovered") > events.index("outbox relay failed; retrying")
    assert sorted(source.sent) == [1, 2, 3, 4, 5]
    assert sorted(r.value for r in kafka.published) == [b"a", b"b", b"c", b"d", b"e"]
    assert kafka.closed, "cancelling the loop closes the producer"
    assert REGISTRY.get_sample_value("loyalnest_outbox_backlog", {"schema": "fake"}) is not None


async def test_cancelled_relay_finishes_the_batch_in_flight():
    source = FakeOutbox(rows("a"))
    started, release = asyncio.Event(), asyncio.Event()

    class SlowKafka(FakeKafka):
        async def publish(self, records: Sequence[OutgoingRecord]) -> list[Exception | None]:
            started.set()
            await release.wait()
            return await super().publish(records)

    relay = OutboxRelay(source, SETTINGS, client_id="t", publisher=SlowKafka())
    task = asyncio.ensure_future(relay.run())
    await started.wait()
    task.cancel()
    await asyncio.sleep(0.01)
    release.set()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert source.sent == [1], "an acknowledged batch is marked sent, not published again"


async def test_relay_lingers_after_a_partial_batch_and_not_after_a_full_one():
    linger = 0.3
    settings = SETTINGS.model_copy(update={"outbox_linger_seconds": linger})
    source = FakeOutbox(rows("a", "b", "c", "d"))  # a full batch (3), then a partial one
    batches: list[list[bytes]] = []
    published = asyncio.Condition()

    class BatchRecordingKafka(FakeKafka):
        async def publish(self, records: Sequence[OutgoingRecord]) -> list[Exception | None]:
            batches.append([record.value for record in records])
            async with published:
                published.notify_all()
            return await super().publish(records)

    async def sent(count: int) -> float:
        started = asyncio.get_running_loop().time()
        async with published:
            await published.wait_for(lambda: sum(map(len, batches)) >= count)
        return asyncio.get_running_loop().time() - started

    relay = OutboxRelay(source, settings, client_id="t", publisher=BatchRecordingKafka())
    task = asyncio.ensure_future(relay.run())
    try:
        assert await asyncio.wait_for(sent(4), 5) < linger, "a full batch is followed at once"
        # Committed while the relay lingers after [d]: one batch, not one claim each.
        source.pending.append(PendingRow(5, OutgoingRecord("t", b"k", b"e", [])))
        await asyncio.sleep(0.05)
        source.pending.append(PendingRow(6, OutgoingRecord("t", b"k", b"f", [])))
        await asyncio.wait_for(sent(6), 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert batches == [[b"a", b"b", b"c"], [b"d"], [b"e", b"f"]]


@dataclass
class SentFuture:
    """What kafka-python's FutureRecordMetadata offers the publisher once flushed."""

    partition: int = 0
    offset: int = -1
    exception: Exception | None = None
    is_done: bool = True

    def failed(self) -> bool:
        return self.exception is not None

    @property
    def value(self) -> SimpleNamespace:
        return SimpleNamespace(partition=self.partition, offset=self.offset)


class ScriptedProducer:
    """A KafkaProducer whose send() returns the next of `futures`."""

    def __init__(self, futures: list[SentFuture]) -> None:
        self._futures = iter(futures)

    def send(self, topic: str, **kwargs: Any) -> SentFuture:
        return next(self._futures)

    def flush(self, timeout: float) -> None:
        pass


def test_kafka_python_counts_only_records_acknowledged_with_an_offset():
    publisher = kafka_python.KafkaPublisher(SETTINGS, "t")
    records = [
        OutgoingRecord("loyalnest.points.events", b"k", f"v{i}".encode(), []) for i in range(5)
    ]
    timed_out = KafkaTimeoutError("expired")
    producer = ScriptedProducer(
        [
            SentFuture(0, 41),
            SentFuture(1, -1),  # a batch the broker called a duplicate: no offset
            SentFuture(1, 12),  # the same partition in this send: not trusted either
            SentFuture(exception=timed_out),
            SentFuture(is_done=False),
        ]
    )
    results = publisher._send(producer, records)  # type: ignore[arg-type]
    assert results[0] is None
    assert isinstance(results[1], PublishError), "acknowledged without an offset: sent again"
    assert isinstance(results[2], PublishError)
    assert results[3] is timed_out
    assert isinstance(results[4], PublishError)


def test_backoff_grows_to_its_cap_and_resets():
    backoff = Backoff(0.1, 1.0)
    delays = [backoff.next_delay() for _ in range(8)]
    assert 0.08 <= delays[0] <= 0.12
    assert all(d <= 1.2 for d in delays)
    assert delays[-1] >= 0.8
    backoff.reset()
    assert backoff.next_delay() <= 0.12


# --- consumer: one record at a time ---------------------------------------------------------


@dataclass
class Record:
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]
    topic: str = "loyalnest.points.events"
    partition: int = 2
    offset: int = 41
    key: bytes | None = b"m/c"


def record(reason: str = "", event_type_header: str | None = None) -> Record:
    event = new_event("m", points_pb2.PointsEarned(customer_id="c", reason=reason))
    headers = [(k, v.encode()) for k, v in event.headers.items()]
    if event_type_header is not None:
        headers = [(k, event_type_header.encode() if k == "event_type" else v) for k, v in headers]
    return Record(event.value, headers)


@dataclass
class Sink:
    dead: list[tuple[RecordLike, BaseException, int]] = field(default_factory=list)

    async def send(self, record: RecordLike, error: BaseException, attempts: int) -> None:
        self.dead.append((record, error, attempts))


class Handler:
    def __init__(self, *errors: BaseException, applied: bool = True) -> None:
        self.errors = list(errors)
        self.calls: list[ConsumedEvent] = []
        self.applied = applied

    async def __call__(self, event: ConsumedEvent) -> bool:
        self.calls.append(event)
        if self.errors:
            raise self.errors.pop(0)
        return self.applied


def processor(handler: Handler, sink: Sink) -> EventProcessor:
    return EventProcessor("g", {"points.earned": handler}, sink, SETTINGS)


async def test_applies_and_counts_duplicates():
    sink = Sink()
    assert await processor(Handler(), sink).process(record()) == "applied"
    assert await processor(Handler(applied=False), sink).process(record()) == "duplicate"
    assert sink.dead == []


async def test_transient_errors_are_retried_within_the_attempt_budget():
    sink, handler = Sink(), Handler(ValueError("once"), ValueError("twice"))
    assert await processor(handler, sink).process(record()) == "applied"
    assert len(handler.calls) == 3
    assert sink.dead == []


async def test_failing_record_is_dead_lettered_after_max_attempts():
    sink = Sink()
    handler = Handler(*(ValueError("poison") for _ in range(5)))
    assert await processor(handler, sink).process(record()) == "dead_lettered"
    assert len(handler.calls) == SETTINGS.consumer_max_attempts
    ((_, error, attempts),) = sink.dead
    assert (str(error), attempts) == ("poison", 3)


async def test_permanent_errors_skip_the_retries():
    sink, handler = Sink(), Handler(PermanentEventError("never"))
    assert await processor(handler, sink).process(record()) == "dead_lettered"
    assert len(handler.calls) == 1
    assert sink.dead[0][2] == 1


async def test_an_unavailable_database_does_not_count_towards_dead_lettering():
    outage = [psycopg.OperationalError("connection refused") for _ in range(6)]
    sink, handler = Sink(), Handler(*outage)
    assert await processor(handler, sink).process(record()) == "applied"
    assert len(handler.calls) == 7
    assert sink.dead == []


async def test_an_unavailable_mongodb_does_not_count_towards_dead_lettering():
    outage = [pymongo.errors.AutoReconnect("primary stepped down") for _ in range(6)]
    sink, handler = Sink(), Handler(*outage)
    assert await processor(handler, sink).process(record()) == "applied"
    assert sink.dead == []


async def test_undecodable_records_are_dead_lettered_at_once():
    sink, handler = Sink(), Handler()
    assert await processor(handler, sink).process(Record(b"\x00junk", [])) == "dead_lettered"
    assert handler.calls == []
    assert "not an event envelope" in str(sink.dead[0][1])


async def test_other_event_types_are_skipped_without_decoding():
    sink, handler = Sink(), Handler()
    skipped = Record(b"\x00not decoded", [("event_type", b"points.redeemed")])
    assert await processor(handler, sink).process(skipped) == "ignored"
    assert handler.calls == [] and sink.dead == []


def test_unknown_event_types_fail_at_start_up():
    with pytest.raises(LookupError):
        EventProcessor("g", {"points.earnd": Handler()}, Sink(), SETTINGS)


def test_dead_letter_keeps_the_record_and_says_why():
    original = record()
    dead = dead_letter_record(original, ValueError("bad"), 3, "g")
    assert dead.topic == "loyalnest.points.events.dlq"
    assert (dead.key, dead.value) == (original.key, original.value)
    headers = dict(dead.headers)
    assert headers[DLQ_REASON] == b"ValueError: bad"
    assert headers[DLQ_ATTEMPTS] == b"3"
    assert headers[DLQ_GROUP] == b"g"
    assert headers[DLQ_SOURCE] == b"loyalnest.points.events/2/41"
    assert headers["event_id"] == dict(original.headers)["event_id"]


# --- consumer: runs of events in one transaction --------------------------------------------


class FakeTransactional(TransactionalHandler):
    """Applies runs "in one transaction" without a database; fails the run on poison."""

    def __init__(self, database: object = "db") -> None:
        super().__init__(database, self._effect)  # type: ignore[arg-type]
        self.runs: list[list[str]] = []
        self.single: list[str] = []

    async def _effect(self, conn: object, event: ConsumedEvent) -> None:
        raise AssertionError("not called by the fakes")

    @staticmethod
    def _reason(event: ConsumedEvent) -> str:
        return event.payload_as(points_pb2.PointsEarned).reason

    async def __call__(self, event: ConsumedEvent) -> bool:
        self.single.append(self._reason(event))
        if self._reason(event) == "poison":
            raise ValueError("poison")
        return True

    async def apply_many(
        self, items: Sequence[tuple[ConsumedEvent, BatchHandler]], scope: EventScope
    ) -> list[bool]:
        reasons = [self._reason(event) for event, _ in items]
        self.runs.append(reasons)
        if "poison" in reasons:
            raise ValueError("poison")  # rolls back the whole run
        return [True] * len(items)


def batch_processor(handler: BatchHandler, sink: Sink, limit: int) -> EventProcessor:
    settings = SETTINGS.model_copy(update={"consumer_batch_max_events": limit})
    return EventProcessor("g", {"points.earned": handler}, sink, settings)


async def test_transactional_events_are_applied_in_runs_and_done_in_order():
    handler, sink = FakeTransactional(), Sink()
    records = [record(f"e{i}") for i in range(5)]
    records.insert(3, record(event_type_header="points.redeemed"))  # skipped: ends a run
    for offset, r in enumerate(records):
        r.offset = offset
    done: list[int] = []
    await batch_processor(handler, sink, limit=2).process_many(
        records, lambda r: done.append(r.offset)
    )
    assert handler.runs == [["e0", "e1"], ["e3", "e4"]]
    assert handler.single == ["e2"]  # a run of one takes the ordinary path
    assert done == [0, 1, 2, 3, 4, 5]


async def test_a_failed_run_is_retried_one_by_one_and_only_the_poison_dead_lettered():
    handler, sink = FakeTransactional(), Sink()
    records = [record("a"), record("poison"), record("b")]
    done: list[str] = []
    await batch_processor(handler, sink, limit=10).process_many(
        records, lambda r: done.append(str(r.offset))
    )
    assert handler.runs == [["a", "poison", "b"]]
    assert handler.single == ["a", "poison", "poison", "poison", "b"]
    ((dead, error, attempts),) = sink.dead
    assert (dead, str(error), attempts) == (records[1], "poison", SETTINGS.consumer_max_attempts)
    assert len(done) == 3


async def test_handlers_on_different_databases_never_share_a_transaction():
    first, second = FakeTransactional("db1"), FakeTransactional("db2")
    settings = SETTINGS.model_copy(update={"consumer_batch_max_events": 10})
    processor = EventProcessor(
        "g", {"points.earned": first, "points.redeemed": second}, Sink(), settings
    )
    redeemed = new_event("m", points_pb2.PointsRedeemed(customer_id="c", reason="r"))
    headers = [(k, v.encode()) for k, v in redeemed.headers.items()]
    records = [record("a"), record("b"), Record(redeemed.value, headers), record("c")]
    await processor.process_many(records, lambda r: None)
    assert first.runs == [["a", "b"]]
    assert first.single == ["c"]


class Orders(BatchHandler):
    """A batch handler of its own (no database, no transaction): it answers per event,
    some events applied before."""

    def __init__(self) -> None:
        self.runs: list[list[str]] = []

    @property
    def batch_key(self) -> object:
        return self

    async def __call__(self, event: ConsumedEvent) -> bool:
        raise AssertionError("runs of more than one event go to apply_many")

    async def apply_many(
        self, items: Sequence[tuple[ConsumedEvent, BatchHandler]], scope: EventScope
    ) -> list[bool]:
        reasons = [event.payload_as(points_pb2.PointsEarned).reason for event, _ in items]
        self.runs.append(reasons)
        return [not reason.startswith("seen") for reason in reasons]


def processed(outcome: str) -> float:
    labels = {"group": "g", "topic": Record(None, []).topic}
    labels |= {"event_type": "points.earned", "outcome": outcome}
    return REGISTRY.get_sample_value("loyalnest_events_processed_total", labels) or 0.0


async def test_any_batch_handler_gets_runs_and_its_answers_are_counted_per_event():
    orders = Orders()
    settings = SETTINGS.model_copy(update={"consumer_batch_max_events": 10})
    processor = EventProcessor(
        "g", {"points.earned": orders, "points.redeemed": Handler()}, Sink(), settings
    )
    other = new_event("m", points_pb2.PointsRedeemed(customer_id="c", reason="r"))
    headers = [(k, v.encode()) for k, v in other.headers.items()]
    records = [record("a"), record("seen-b"), Record(other.value, headers)]
    records += [record("c"), record("d")]
    applied, duplicates = processed("applied"), processed("duplicate")
    await processor.process_many(records, lambda r: None)
    assert orders.runs == [["a", "seen-b"], ["c", "d"]]  # another event type ends a run
    assert processed("applied") - applied == 3
    assert processed("duplicate") - duplicates == 1


async def test_stopping_leaves_the_rest_undone():
    handler, sink = FakeTransactional(), Sink()
    records = [record(event_type_header="points.redeemed"), record("e1"), record("e2")]
    checks = iter([False, False, True])
    done: list[RecordLike] = []
    await batch_processor(handler, sink, limit=10).process_many(
        records, done.append, stopping=lambda: next(checks)
    )
    # The skipped record is done; e1 was gathered into a run but never applied, so it is
    # not done either: its offset is not committed and it is delivered again.
    assert done == [records[0]]
    assert handler.runs == [] and handler.single == []


# --- consumer runner: a broker that comes back without its state -----------------------------


def earned(tp: TopicPartition, offset: int, name: str) -> Record:
    event = new_event("m", points_pb2.PointsEarned(customer_id="c", reason=name))
    headers = [(k, v.encode()) for k, v in event.headers.items()]
    return Record(event.value, headers, tp.topic, tp.partition, offset)


class RestartingBroker:
    """A KafkaConsumer on one partition whose broker restarts empty once the first log is
    consumed and committed: a new log, no committed offset, and a rebalance after which the
    member keeps its fetch position (kafka-python does, for a partition assigned to it
    again)."""

    def __init__(self, first: int, second: int) -> None:
        self.tp = TopicPartition("loyalnest.points.events", 0)
        self.logs = [
            [earned(self.tp, n, f"old-{n}") for n in range(first)],
            [earned(self.tp, n, f"new-{n}") for n in range(second)],
        ]
        self.log = self.logs[0]
        self.position = 0
        self.committed_offset: int | None = None
        self.listener: Any = None
        self.rebalance = False
        self.rejoins_requested = 0
        self._coordinator = SimpleNamespace(request_rejoin=self._request_rejoin)

    def _request_rejoin(self) -> None:
        self.rejoins_requested += 1

    def subscribe(self, topics: Sequence[str], listener: Any = None) -> None:
        self.listener, self.rebalance = listener, True

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Record]]:
        if self.log is self.logs[0] and self.committed_offset == len(self.log):
            self.log, self.committed_offset, self.rebalance = self.logs[1], None, True
        if self.rebalance:
            self.rebalance = False
            if self.listener is not None:
                self.listener.on_partitions_revoked({self.tp})
                self.listener.on_partitions_assigned({self.tp})
        records = self.log[self.position : self.position + 3]
        self.position += len(records)
        return {self.tp: records} if records else {}

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.committed_offset = offsets[self.tp].offset

    def committed(self, tp: TopicPartition, timeout_ms: int | None = None) -> int | None:
        return self.committed_offset

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position = offset

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.position = 0

    def assignment(self) -> set[TopicPartition]:
        return {self.tp}

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.log)

    def close(self, **kwargs: Any) -> None:
        pass


async def run_until_applied(
    monkeypatch: pytest.MonkeyPatch, broker: RestartingBroker, count: int, **settings: Any
) -> Handler:
    """Runs a kafka-python ConsumerRunner on `broker` until `count` events were applied (or
    5 s), then stops it; the handler that saw them."""
    monkeypatch.setattr(kafka_python, "ensure_topics", lambda *args: None)
    monkeypatch.setattr(kafka_python, "new_consumer", lambda *args: broker)
    handler = Handler()
    all_applied = asyncio.Event()

    async def apply(event: ConsumedEvent) -> bool:
        applied = await handler(event)
        if len(handler.calls) == count:
            all_applied.set()
        return applied

    runner = ConsumerRunner(
        SETTINGS.model_copy(update={"kafka_consumer": "kafka-python", **settings}),
        group="g",
        handlers={"points.earned": apply},
        client_id="c",
    )
    task = asyncio.create_task(runner.run())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_applied.wait(), 5)
    runner.stop()
    await task
    return handler


async def test_after_the_broker_lost_its_state_the_new_log_is_read_from_its_start(
    monkeypatch: pytest.MonkeyPatch,
):
    broker = RestartingBroker(first=5, second=8)
    handler = await run_until_applied(monkeypatch, broker, 13)

    reasons = [event.payload_as(points_pb2.PointsEarned).reason for event in handler.calls]
    assert reasons == [f"old-{n}" for n in range(5)] + [f"new-{n}" for n in range(8)]
    # The kafka-python 3.0 workaround for dropped rebalances (kafka_python._Rebalances).
    assert broker.rejoins_requested >= 1


class CommitCountingBroker(RestartingBroker):
    """One log that stays; every commit is kept."""

    def __init__(self, records: int) -> None:
        super().__init__(records, 0)
        self.commits: list[int] = []
        self.lag_reads = 0

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Record]]:
        records = self.log[self.position : self.position + 3]
        self.position += len(records)
        return {self.tp: records} if records else {}

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        super().commit(offsets)
        self.commits.append(offsets[self.tp].offset)

    def highwater(self, tp: TopicPartition) -> int:
        self.lag_reads += 1
        return super().highwater(tp)


@pytest.mark.parametrize(
    ("interval", "expected_commits"),
    [(0.0, [3, 6, 9, 12, 15, 18, 20]), (30.0, [3, 20])],
    ids=["every poll", "every 30 s"],
)
async def test_offsets_are_committed_at_most_every_interval_and_on_stopping(
    monkeypatch: pytest.MonkeyPatch, interval: float, expected_commits: list[int]
):
    broker = CommitCountingBroker(20)  # polls of 3 records
    handler = await run_until_applied(
        monkeypatch, broker, 20, consumer_commit_interval_seconds=interval
    )
    assert len(handler.calls) == 20
    # The first poll commits at once; then at most once per interval; stopping commits the
    # rest, so a graceful stop redelivers nothing.
    assert broker.commits == expected_commits
    # The lag gauge: read after the first poll, then at most once a second, whatever the
    # commit interval (the 7 polls take well under a second).
    assert broker.lag_reads == 1


# --- consumer runner: a small poll over several partitions is one run -------------------------


class ScriptedMember:
    """A group member whose polls return `polls` in turn, then nothing."""

    def __init__(self, polls: Sequence[dict[Partition, list[Record]]]) -> None:
        self.polls = list(polls)
        self.committed: dict[Partition, int] = {}
        # The offset after each partition's last polled record: where its commit ends.
        self.ends = {
            partition: records[-1].offset + 1
            for poll in polls
            for partition, records in poll.items()
        }

    def poll(self, timeout_ms: int) -> tuple[dict[Partition, list[Record]], bool]:
        if self.polls:
            return self.polls.pop(0), False
        time.sleep(0.01)
        return {}, False

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        self.committed.update(offsets)

    def seek(self, partition: Partition, offset: int) -> None:
        pass

    def lags(self, positions: Mapping[Partition, int]) -> dict[Partition, int]:
        return {}

    def close(self, timeout_seconds: float) -> None:
        pass


def poll_of(
    partitions: int, per_partition: int, skipped_at: int | None = None
) -> dict[Partition, list[Record]]:
    polled: dict[Partition, list[Record]] = {}
    for p in range(partitions):
        tp = TopicPartition("loyalnest.points.events", p)
        polled[Partition(tp.topic, p)] = [earned(tp, n, f"p{p}e{n}") for n in range(per_partition)]
    if skipped_at is not None:
        skipped = record(event_type_header="points.redeemed")  # no handler takes it
        skipped.partition, skipped.offset = 0, skipped_at
        polled[Partition("loyalnest.points.events", 0)][skipped_at] = skipped
    return polled


async def run_polls(
    monkeypatch: pytest.MonkeyPatch,
    member: ScriptedMember,
    handlers: Mapping[str, FakeTransactional],
    limit: int = 100,
) -> None:
    """A ConsumerRunner on `member` until it committed past every record polled (or 5 s)."""
    monkeypatch.setattr(consumer_module, "new_group_member", lambda *args: member)
    runner = ConsumerRunner(
        SETTINGS.model_copy(
            update={"consumer_batch_max_events": limit, "consumer_commit_interval_seconds": 0}
        ),
        group="g",
        handlers=handlers,
        client_id="c",
    )
    task = asyncio.create_task(runner.run())
    for _ in range(500):
        if not member.polls and member.committed == member.ends:
            break
        await asyncio.sleep(0.01)
    runner.stop()
    await task
    assert member.committed == member.ends, "not every polled record was applied"


async def test_a_small_poll_over_partitions_is_one_run_each_partition_in_order(
    monkeypatch: pytest.MonkeyPatch,
):
    handler, member = FakeTransactional(), ScriptedMember([poll_of(3, 2)])

    await run_polls(monkeypatch, member, {"points.earned": handler})

    assert handler.runs == [["p0e0", "p0e1", "p1e0", "p1e1", "p2e0", "p2e1"]]
    assert member.committed == {Partition("loyalnest.points.events", p): 2 for p in range(3)}


async def test_a_poll_bigger_than_a_run_or_with_other_records_keeps_partitions_apart(
    monkeypatch: pytest.MonkeyPatch,
):
    big, member = FakeTransactional(), ScriptedMember([poll_of(3, 2)])
    await run_polls(monkeypatch, member, {"points.earned": big}, limit=4)
    assert sorted(big.runs) == [["p0e0", "p0e1"], ["p1e0", "p1e1"], ["p2e0", "p2e1"]]

    mixed, member = FakeTransactional(), ScriptedMember([poll_of(2, 3, skipped_at=1)])
    await run_polls(monkeypatch, member, {"points.earned": mixed})
    # Partition 0's events around the skipped record go alone; partition 1's are a run.
    assert mixed.runs == [["p1e0", "p1e1", "p1e2"]]
    assert sorted(mixed.single) == ["p0e0", "p0e2"]


class Redemptions(FakeTransactional):
    """points.redeemed on another database: another batch key."""

    @staticmethod
    def _reason(event: ConsumedEvent) -> str:
        return event.payload_as(points_pb2.PointsRedeemed).reason


def redeemed(tp: TopicPartition, offset: int, name: str) -> Record:
    event = new_event("m", points_pb2.PointsRedeemed(customer_id="c", reason=name))
    headers = [(k, v.encode()) for k, v in event.headers.items()]
    return Record(event.value, headers, tp.topic, tp.partition, offset)


async def test_each_batch_handlers_partitions_of_a_poll_are_one_run(
    monkeypatch: pytest.MonkeyPatch,
):
    polled = poll_of(2, 2)
    for p in (2, 3):
        tp = TopicPartition("loyalnest.points.events", p)
        polled[Partition(tp.topic, p)] = [redeemed(tp, n, f"r{p}e{n}") for n in range(2)]
    earnings, redemptions, member = (
        FakeTransactional("db1"),
        Redemptions("db2"),
        ScriptedMember([polled]),
    )
    await run_polls(
        monkeypatch, member, {"points.earned": earnings, "points.redeemed": redemptions}
    )

    assert earnings.runs == [["p0e0", "p0e1", "p1e0", "p1e1"]]
    assert redemptions.runs == [["r2e0", "r2e1", "r3e0", "r3e1"]]
