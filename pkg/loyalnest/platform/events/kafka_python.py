"""The events' Kafka clients on kafka-python: `kafka_producer` / `kafka_consumer` = "kafka-python".

kafka-python is pure Python (its sender and network threads take the GIL for every batch);
librdkafka.py holds the same clients on librdkafka. This module is imported only when a
kafka-python client is selected, so a process on librdkafka never loads kafka-python.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import CommitFailedError, KafkaTimeoutError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata, TopicPartition

from loyalnest.platform.config import EventSettings
from loyalnest.platform.events.clients import (
    CommitRejected,
    OutgoingRecord,
    Partition,
    PartitionRecords,
    PublishError,
    Stored,
    ThreadedPublisher,
    count_stored,
    warn_about_partition_counts,
)
from loyalnest.platform.events.topics import topic_partitions
from loyalnest.platform.observability import get_logger

log = get_logger(__name__)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _common(settings: EventSettings, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers.split(","),
        "client_id": client_id,
        "bootstrap_timeout_ms": _ms(settings.kafka_connect_timeout_seconds),
        "request_timeout_ms": _ms(settings.kafka_publish_timeout_seconds),
        "reconnect_backoff_max_ms": _ms(settings.events_retry_max_seconds),
        # Topics vanish when a memory-backed broker restarts; notice recreated ones soon.
        "metadata_max_age_ms": _ms(max(5.0, settings.kafka_session_timeout_seconds)),
    }


# kafka-python's own sensors (per request, batch and fetch) are read by nobody: the platform's
# Prometheus metrics count what operators watch. (Its admin client has no such setting.)
_NO_CLIENT_SENSORS = {"metrics_enabled": False}


def new_producer(settings: EventSettings, client_id: str) -> KafkaProducer:
    """Idempotent, acks=all: a retried send is written once and a partition keeps order."""
    publish_ms = _ms(settings.kafka_publish_timeout_seconds)
    linger_ms = 5  # a few ms of batching: throughput at a latency nobody notices
    return KafkaProducer(
        **_common(settings, client_id),
        **_NO_CLIENT_SENSORS,
        acks="all",
        enable_idempotence=True,
        # ≤ 5 in flight keeps idempotent order; retries are bounded by delivery time.
        max_in_flight_requests_per_connection=5,
        linger_ms=linger_ms,
        delivery_timeout_ms=publish_ms + linger_ms,
        max_block_ms=_ms(settings.kafka_connect_timeout_seconds),
        # Topics are created by ensure_topics() with their registered partition counts.
        allow_auto_create_topics=False,
    )


def new_consumer(settings: EventSettings, client_id: str, group: str) -> KafkaConsumer:
    session_ms = _ms(settings.kafka_session_timeout_seconds)
    return KafkaConsumer(
        **_common(settings, client_id),
        **_NO_CLIENT_SENSORS,
        group_id=group,
        # Offsets are committed by the runner after the effects are committed.
        enable_auto_commit=False,
        # A new group reads the retained history: consumers are idempotent, so starting
        # early is harmless, while starting at the end would silently skip events.
        auto_offset_reset="earliest",
        session_timeout_ms=session_ms,
        heartbeat_interval_ms=max(100, session_ms // 3),
        max_poll_records=settings.consumer_max_poll_records,
        max_poll_interval_ms=_ms(settings.consumer_max_poll_interval_seconds),
        allow_auto_create_topics=False,
    )


def ensure_topics(settings: EventSettings, client_id: str, topics: Iterable[str]) -> None:
    """Creates the missing topics with their registered partition counts. Blocking."""
    wanted = set(topics)
    if not wanted:
        return
    admin = KafkaAdminClient(**_common(settings, client_id))
    try:
        created = []
        for name in sorted(wanted - set(admin.list_topics())):
            # Another process may win the race: same registry, same partition count.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, topic_partitions(name), 1)])
                created.append(name)
        if created:
            log.info("kafka topics created", topics=created)
        _warn_about_partition_counts(admin, sorted(wanted - set(created)))
    finally:
        admin.close()


def _warn_about_partition_counts(admin: KafkaAdminClient, topics: list[str]) -> None:
    if not topics:
        return
    try:
        descriptions = admin.describe_topics(topics)
    except Exception as exc:  # a diagnostic: it must never keep events from flowing
        log.debug("could not describe kafka topics", topics=topics, error=repr(exc))
        return
    counts = {}
    for described in descriptions:
        # "name" in kafka-python 3 (newer Metadata versions), "topic" before.
        name = described.get("name", described.get("topic"))
        counts[name] = len(described.get("partitions") or [])
    warn_about_partition_counts({name: counts.get(name, 0) for name in topics})


class KafkaPublisher(ThreadedPublisher[KafkaProducer]):
    """kafka-python's producer."""

    def _new_producer(self) -> KafkaProducer:
        return new_producer(self._settings, self._client_id)

    def _send(
        self, producer: KafkaProducer, records: Sequence[OutgoingRecord]
    ) -> list[Exception | None]:
        futures: list[Any] = []
        results: list[Exception | None] = [None] * len(records)
        for index, record in enumerate(records):
            try:
                futures.append(
                    producer.send(
                        record.topic,
                        key=record.key,
                        value=record.value,
                        headers=list(record.headers),
                    )
                )
            except Exception as exc:
                results[index:] = [exc] * (len(records) - index)
                break
        # Batches expire after the delivery timeout and fail their futures; the margin
        # lets that happen before flush gives up on them.
        with contextlib.suppress(KafkaTimeoutError):
            producer.flush(timeout=self._settings.kafka_publish_timeout_seconds + 1)
        acknowledged: dict[int, Stored] = {}
        for index, future in enumerate(futures):
            if not future.is_done:
                results[index] = PublishError("not acknowledged within the publish timeout")
            elif future.failed():
                results[index] = future.exception
            else:
                acknowledged[index] = (future.value.partition, future.value.offset)
        return count_stored(results, acknowledged)

    def _abandon(self, producer: KafkaProducer) -> None:
        producer.close(timeout=0)

    def _close_producer(self, producer: KafkaProducer) -> None:
        producer.close(timeout=2.0)


# kafka-python ships no type hints: to mypy its listener base class is Any.
class _Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    """Notes each new assignment, for the member to act on (KafkaPythonMember._reposition).

    Called on kafka-python's IO thread, where blocking calls such as committed() are refused.
    """

    def __init__(self, consumer: KafkaConsumer) -> None:
        self._consumer = consumer
        self.assigned = False

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # kafka-python 3.0 lacks KAFKA-9815: a rebalance started because a subscribed topic's
        # partitions changed (a topic created again with another count) is not marked as
        # needed, so a join that completes between two polls is never applied, and with a
        # listener the revoked partitions then stay unfetched for good. Marking it needed,
        # as the Java client does, keeps the join pending until it is applied.
        self._consumer._coordinator.request_rejoin()

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned = True


class KafkaPythonMember:
    """A consumer group member on kafka-python (consumer.GroupMember). Blocking; one thread."""

    def __init__(
        self,
        settings: EventSettings,
        client_id: str,
        group: str,
        topics: Sequence[str],
        also_create: Sequence[str] = (),
    ) -> None:
        ensure_topics(settings, client_id, [*topics, *also_create])
        self._settings = settings
        self._consumer = new_consumer(settings, client_id, group)
        self._rebalances = _Rebalances(self._consumer)
        self._consumer.subscribe(list(topics), listener=self._rebalances)

    def poll(self, timeout_ms: int) -> tuple[PartitionRecords, bool]:
        fetched = self._consumer.poll(timeout_ms=timeout_ms)
        if not self._rebalances.assigned:
            return {Partition(tp.topic, tp.partition): rs for tp, rs in fetched.items()}, False
        # Fetched at positions from before the rebalance: read again from the committed ones.
        self._reposition()
        return {}, True

    def _reposition(self) -> None:
        """Moves every assigned partition to the group's committed offset.

        kafka-python keeps the fetch position of a partition that a rebalance assigns to the
        same member again. When the broker lost its state (a memory-backed broker restarted,
        a topic deleted and created again), that position points into a log that is gone
        and, used on the new log, skips its first records. Such a loss is always followed by
        a rebalance (the group is gone, or the partitions changed), and the committed offsets
        are the broker's own: resuming from them is right in every case.
        """
        # Bounded like any request; if it fails, the note stays and the next poll's records
        # are dropped and repositioned again.
        timeout_ms = _ms(self._settings.kafka_publish_timeout_seconds)
        self._rebalances.assigned = False  # first: one arriving meanwhile is noted again
        try:
            for tp in self._consumer.assignment():
                offset = self._consumer.committed(tp, timeout_ms=timeout_ms)
                if offset is None:
                    self._consumer.seek_to_beginning(tp)  # what auto_offset_reset does
                else:
                    self._consumer.seek(tp, offset)
        except Exception:
            self._rebalances.assigned = True
            raise

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        try:
            self._consumer.commit(
                {
                    TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(offset, "", -1)
                    for tp, offset in offsets.items()
                }
            )
        except CommitFailedError as exc:
            raise CommitRejected(str(exc)) from exc

    def seek(self, partition: Partition, offset: int) -> None:
        self._consumer.seek(TopicPartition(partition.topic, partition.partition), offset)

    def lags(self, positions: Mapping[Partition, int]) -> dict[Partition, int]:
        result = {}
        for tp in self._consumer.assignment():
            key = Partition(tp.topic, tp.partition)
            high, position = self._consumer.highwater(tp), positions.get(key)
            if high is not None and position is not None:
                result[key] = max(0, high - position)
        return result

    def close(self, timeout_seconds: float) -> None:
        self._consumer.close(autocommit=False, timeout_ms=_ms(timeout_seconds))
