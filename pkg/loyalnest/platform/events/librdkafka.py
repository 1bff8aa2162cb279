"""The events' Kafka clients on librdkafka (confluent-kafka): `kafka_producer` /
`kafka_consumer` = "confluent"; topic creation too whenever either is.

The publisher: same contract as kafka_python.KafkaPublisher (idempotent, acks=all,
per-record result, rebuilt after any failure), different cost: kafka-python's producer is
pure Python, and its sender and network threads take the GIL from the service's requests
for every batch (about a third of the edge's CPU samples at 100 webhooks/s, bench/README.md
"Where the time goes (issue 15)"). librdkafka batches, compresses and talks to the broker
in C threads without the GIL; what is left in Python is one `produce()` call per record and
the delivery callbacks.

Order: the relay marks only acknowledged rows sent and counts on a partition's records
never landing after an earlier one of the partition failed. The idempotent producer keeps
order on retries; `enable.gapless.guarantee` turns any failure that could leave a gap into a
fatal error, so the records behind it fail too (and go again with the next batch).

The consumer group member (ConfluentMember): the same contract as kafka_python's
(clients.GroupMember): offsets committed only by the runner, after the effects committed;
after a rebalance every partition resumes from the group's committed offset. librdkafka
fetches, heartbeats and keeps the group in its own threads; Python sees one `poll()` per
record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

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

LINGER_MS = 5  # as kafka-python's producer: a few ms of batching nobody notices


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _report_error(error: KafkaError) -> None:
    # Connection failures while the broker is away come here, several per second: the
    # loops notice (nothing arrives, publishing fails) and log each failed attempt once.
    if error.fatal():
        log.error("kafka client error", error=str(error))
    else:
        log.debug("kafka client error", error=str(error))


def _common(settings: EventSettings, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": client_id,
        "socket.connection.setup.timeout.ms": _ms(settings.kafka_connect_timeout_seconds),
        "reconnect.backoff.max.ms": _ms(settings.events_retry_max_seconds),
        # Topics vanish when a memory-backed broker restarts; notice recreated ones soon.
        "topic.metadata.refresh.interval.ms": _ms(max(5.0, settings.kafka_session_timeout_seconds)),
        # librdkafka logs to stderr by default; errors reach the loops as results instead.
        "log_level": 0,
        "error_cb": _report_error,
    }


def producer_config(settings: EventSettings, client_id: str) -> dict[str, Any]:
    publish_ms = _ms(settings.kafka_publish_timeout_seconds)
    return {
        **_common(settings, client_id),
        "enable.idempotence": True,  # implies acks=all, retries, <= 5 in flight, in order
        "acks": "all",
        "enable.gapless.guarantee": True,
        # Keys go to the partition kafka-python (and Java) pick: murmur2, not librdkafka's
        # default crc32. A key's events must stay on one partition, whichever producer
        # published them (switching producers, a relay process of the other kind).
        "partitioner": "murmur2_random",
        "linger.ms": LINGER_MS,
        # A record not acknowledged in time fails (its row stays pending): the publish timeout.
        "message.timeout.ms": publish_ms + LINGER_MS,
        "request.timeout.ms": publish_ms,
    }


def consumer_config(settings: EventSettings, client_id: str, group: str) -> dict[str, Any]:
    session_ms = _ms(settings.kafka_session_timeout_seconds)
    return {
        **_common(settings, client_id),
        "group.id": group,
        # Offsets are committed by the runner after the effects are committed, explicitly.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # A new group reads the retained history: consumers are idempotent, so starting
        # early is harmless, while starting at the end would silently skip events.
        "auto.offset.reset": "earliest",
        "session.timeout.ms": session_ms,
        "heartbeat.interval.ms": max(100, session_ms // 3),
        # librdkafka refuses a poll interval below the session timeout.
        "max.poll.interval.ms": max(session_ms, _ms(settings.consumer_max_poll_interval_seconds)),
        # kafka-python's assignors (range, then round robin): members of both kinds can
        # share a group while a deployment switches clients.
        "partition.assignment.strategy": "range,roundrobin",
        "allow.auto.create.topics": False,
        # Prefetched records held per consumer (librdkafka's default is 64 MiB): enough for
        # several polls of consumer_max_poll_records, without growing the RSS under a backlog.
        "queued.max.messages.kbytes": 8192,
    }


def ensure_topics(settings: EventSettings, client_id: str, topics: Iterable[str]) -> None:
    """Creates the missing topics with their registered partition counts. Blocking."""
    wanted = set(topics)
    if not wanted:
        return
    admin = AdminClient(_common(settings, client_id))
    timeout = settings.kafka_publish_timeout_seconds
    # All topics: naming one in a metadata request makes some brokers create it.
    existing = admin.list_topics(timeout=timeout).topics
    created = []
    missing = [NewTopic(name, topic_partitions(name), 1) for name in sorted(wanted - set(existing))]
    if missing:
        futures = admin.create_topics(missing, request_timeout=timeout)
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                # Another process may win the race: same registry, same partition count.
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
            else:
                created.append(name)
    if created:
        log.info("kafka topics created", topics=sorted(created))
    warn_about_partition_counts(
        {name: len(existing[name].partitions) for name in wanted - set(created) if name in existing}
    )


class ConfluentPublisher(ThreadedPublisher[Producer]):
    """librdkafka's idempotent producer; produce and flush block, hence its own thread."""

    thread_name = "rdkafka-producer"

    def _new_producer(self) -> Producer:
        return Producer(producer_config(self._settings, self._client_id))

    def _send(
        self, producer: Producer, records: Sequence[OutgoingRecord]
    ) -> list[Exception | None]:
        unacknowledged = PublishError("not acknowledged within the publish timeout")
        results: list[Exception | None] = [unacknowledged] * len(records)
        acknowledged: dict[int, Stored] = {}

        def delivered(index: int) -> Any:
            def report(error: KafkaError | None, message: Message) -> None:
                if error is not None:
                    results[index] = KafkaException(error)
                else:
                    acknowledged[index] = (message.partition() or 0, message.offset())

            return report

        for index, record in enumerate(records):
            try:
                producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=list(record.headers),
                    on_delivery=delivered(index),
                )
            except Exception as exc:  # BufferError (queue full), KafkaException
                results[index:] = [exc] * (len(records) - index)
                break
        # Records expire after message.timeout.ms and fail through their callback; the
        # margin lets that happen before flush gives up on them.
        producer.flush(self._settings.kafka_publish_timeout_seconds + 1)
        return count_stored(results, acknowledged)

    def _abandon(self, producer: Producer) -> None:
        producer.purge()
        producer.flush(0)

    def _close_producer(self, producer: Producer) -> None:
        remaining = producer.flush(2.0)
        if remaining:
            log.warning("kafka producer closed with records unsent", records=remaining)


# Commit errors that mean the group moved on (a rebalance): the partitions' records are
# another member's, or this member's again from the last committed offset.
_REBALANCED = frozenset(
    {
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError._ASSIGNMENT_LOST,  # librdkafka's own (local) error codes start with _
    }
)


@dataclass(frozen=True, slots=True)
class _Record:
    """A fetched record as envelope.RecordLike (confluent's Message has methods instead)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]


class ConfluentMember:
    """A consumer group member on librdkafka (clients.GroupMember). Blocking; one thread.

    librdkafka calls the rebalance callbacks from inside poll(). Records returned by earlier
    polls of the same call to `poll` (below) are of the assignment before: they are dropped,
    and since assigning moves each partition to its committed offset, read again.
    """

    def __init__(
        self,
        settings: EventSettings,
        client_id: str,
        group: str,
        topics: Sequence[str],
        also_create: Sequence[str] = (),
    ) -> None:
        ensure_topics(settings, client_id, [*topics, *also_create])
        self._max_records = settings.consumer_max_poll_records
        self._rebalanced = False
        self._consumer = Consumer(consumer_config(settings, client_id, group))
        self._consumer.subscribe(
            list(topics),
            on_assign=self._on_rebalance,
            on_revoke=self._on_rebalance,
            on_lost=self._on_rebalance,
        )

    def _on_rebalance(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        # The client (un)assigns after the callback; newly assigned partitions then start
        # at the group's committed offset (auto.offset.reset without one).
        self._rebalanced = True

    def poll(self, timeout_ms: int) -> tuple[PartitionRecords, bool]:
        batch: dict[Partition, list[_Record]] = {}
        changed = False
        count = 0
        timeout = timeout_ms / 1000
        while count < self._max_records:
            message = self._consumer.poll(timeout)
            timeout = 0  # after the first record, only what has been fetched already
            if self._rebalanced:
                self._rebalanced, changed = False, True
                batch.clear()
                count = 0
            if message is None:
                break
            error = message.error()
            if error is not None:
                _report_error(error)
                continue
            partition = Partition(message.topic() or "", message.partition() or 0)
            batch.setdefault(partition, []).append(
                _Record(
                    partition.topic,
                    partition.partition,
                    message.offset() or 0,
                    message.key(),
                    message.value(),
                    # Pairs of (str, bytes | None) in fact; typed more loosely.
                    cast("Sequence[tuple[str, bytes | None]]", message.headers() or ()),
                )
            )
            count += 1
        return batch, changed

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        wanted = [TopicPartition(tp.topic, tp.partition, offset) for tp, offset in offsets.items()]
        try:
            results = self._consumer.commit(offsets=wanted, asynchronous=False) or []
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() in _REBALANCED:
                raise CommitRejected(str(error)) from exc
            raise
        failed = [tp.error for tp in results if tp.error is not None]
        if failed:
            if all(error.code() in _REBALANCED for error in failed):
                raise CommitRejected(str(failed[0]))
            raise KafkaException(failed[0])

    def seek(self, partition: Partition, offset: int) -> None:
        self._consumer.seek(TopicPartition(partition.topic, partition.partition, offset))

    def lags(self, positions: Mapping[Partition, int]) -> dict[Partition, int]:
        result = {}
        for tp in self._consumer.assignment():
            key = Partition(tp.topic, tp.partition)
            position = positions.get(key)
            # Cached: the high watermark of the last fetch response, no request.
            watermarks = self._consumer.get_watermark_offsets(tp, cached=True)
            if position is not None and watermarks is not None and watermarks[1] >= 0:
                result[key] = max(0, watermarks[1] - position)
        return result

    def close(self, timeout_seconds: float) -> None:
        # librdkafka bounds the leave by its own timeouts; the runner bounds the wait.
        self._consumer.close()
