"""librdkafka's group member (platform/events/librdkafka.ConfluentMember) without a broker:
what it does with records around a rebalance, commit errors and lag. The broker-backed
contract (exactly once, outages, recreated topics, mixed groups) is in
tests/integration/test_events.py, over both clients."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.events import librdkafka
from loyalnest.platform.events.clients import (
    CommitRejected,
    OutgoingRecord,
    Partition,
    PublishError,
)

TOPIC = "loyalnest.points.events"
REBALANCE = "rebalance"


@dataclass
class Message:
    """What confluent_kafka.Message offers the member."""

    _partition: int
    _offset: int

    def error(self) -> KafkaError | None:
        return None

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return f"{self._partition}/{self._offset}".encode()

    def headers(self) -> list[tuple[str, bytes]]:
        return [("event_type", b"points.earned")]


class ScriptedConsumer:
    """A Consumer whose poll() serves a script of messages and rebalances; as librdkafka, it
    runs the rebalance callback inside poll() and then returns the next message."""

    def __init__(self, script: list[Message | str]) -> None:
        self.script = script
        self.callbacks: dict[str, Callable[..., None]] = {}
        self.commit_error: KafkaError | None = None
        self.committed: list[TopicPartition] = []

    def subscribe(self, topics: list[str], **callbacks: Callable[..., None]) -> None:
        self.callbacks = callbacks

    def poll(self, timeout: float) -> Message | None:
        while self.script and self.script[0] == REBALANCE:
            self.script.pop(0)
            self.callbacks["on_revoke"](self, [])
            self.callbacks["on_assign"](self, [])
        if not self.script:
            return None
        item = self.script.pop(0)
        assert isinstance(item, Message)
        return item

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        if self.commit_error is not None:
            raise KafkaException(self.commit_error)
        self.committed += offsets
        return offsets

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool) -> tuple[int, int]:
        return (0, 10) if tp.partition == 0 else (-1001, -1001)  # 1: nothing fetched yet


def member(
    monkeypatch: pytest.MonkeyPatch, script: list[Message | str], max_records: int = 500
) -> tuple[librdkafka.ConfluentMember, ScriptedConsumer]:
    consumer = ScriptedConsumer(script)
    monkeypatch.setattr(librdkafka, "ensure_topics", lambda *args: None)
    monkeypatch.setattr(librdkafka, "Consumer", lambda config: consumer)
    settings = ServiceSettings(consumer_max_poll_records=max_records)
    return librdkafka.ConfluentMember(settings, "c", "g", [TOPIC]), consumer


def offsets(batch: Any) -> dict[int, list[int]]:
    return {tp.partition: [r.offset for r in records] for tp, records in batch.items()}


def test_records_come_per_partition_in_order_up_to_max_poll_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script: list[Message | str] = [Message(0, 5), Message(1, 2), Message(0, 6), Message(1, 3)]
    group_member, _ = member(monkeypatch, script, max_records=3)
    batch, changed = group_member.poll(250)
    assert offsets(batch) == {0: [5, 6], 1: [2]} and not changed
    (record,) = batch[Partition(TOPIC, 1)]
    assert (record.topic, record.key, record.value) == (TOPIC, b"k", b"1/2")
    assert list(record.headers) == [("event_type", b"points.earned")]
    batch, changed = group_member.poll(250)
    assert offsets(batch) == {1: [3]} and not changed


def test_records_before_a_rebalance_in_the_same_poll_are_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 0/5 and 0/6 were fetched under the old assignment: applying and committing them after
    # the rebalance could move the group past records; the new assignment starts at the
    # committed offsets and reads them again.
    script: list[Message | str] = [Message(0, 5), Message(0, 6), REBALANCE, Message(0, 3)]
    group_member, _ = member(monkeypatch, script)
    batch, changed = group_member.poll(250)
    assert offsets(batch) == {0: [3]} and changed
    batch, changed = group_member.poll(250)
    assert batch == {} and not changed


def test_a_rebalance_after_the_last_record_drops_them_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    group_member, _ = member(monkeypatch, [Message(0, 5), REBALANCE])
    batch, changed = group_member.poll(250)
    assert batch == {} and changed


def test_commit_after_a_rebalance_is_rejected_other_errors_raise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    group_member, consumer = member(monkeypatch, [])
    group_member.commit({Partition(TOPIC, 0): 7})
    assert [(tp.topic, tp.partition, tp.offset) for tp in consumer.committed] == [(TOPIC, 0, 7)]
    consumer.commit_error = KafkaError(KafkaError.ILLEGAL_GENERATION)
    with pytest.raises(CommitRejected):
        group_member.commit({Partition(TOPIC, 0): 8})
    consumer.commit_error = KafkaError(KafkaError._TRANSPORT)
    with pytest.raises(KafkaException):
        group_member.commit({Partition(TOPIC, 0): 8})


def test_lag_is_reported_where_both_position_and_high_watermark_are_known(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    group_member, _ = member(monkeypatch, [])
    lags = group_member.lags({Partition(TOPIC, 0): 7, Partition(TOPIC, 1): 3})
    assert lags == {Partition(TOPIC, 0): 3}


class ReportingProducer:
    """Calls each record's delivery callback, on flush, with what `reports` says: an error,
    or the partition and offset it was stored at."""

    def __init__(self, reports: list[KafkaError | tuple[int, int]]) -> None:
        self._reports = reports
        self._callbacks: list[Callable[[KafkaError | None, Any], None]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self._callbacks.append(kwargs["on_delivery"])

    def flush(self, timeout: float) -> int:
        for callback, report in zip(self._callbacks, self._reports, strict=True):
            if isinstance(report, KafkaError):
                callback(report, Message(0, -1001))
            else:
                callback(None, Message(*report))
        return 0


def test_only_records_acknowledged_with_an_offset_count_as_published() -> None:
    publisher = librdkafka.ConfluentPublisher(ServiceSettings(), "t")
    records = [OutgoingRecord(TOPIC, b"k", f"v{i}".encode(), []) for i in range(5)]
    producer = ReportingProducer(
        [
            (0, 41),
            # A batch the broker called a duplicate: librdkafka reports its first record
            # without an offset and numbers the others on from -1.
            (1, -1),
            (1, 0),
            (2, 7),
            KafkaError(KafkaError._MSG_TIMED_OUT),
        ]
    )
    results = publisher._send(producer, records)  # type: ignore[arg-type]
    assert results[0] is None
    assert isinstance(results[1], PublishError), "delivered without an offset: sent again"
    assert isinstance(results[2], PublishError), "of the same duplicate batch: sent again"
    assert results[3] is None
    assert isinstance(results[4], KafkaException)
