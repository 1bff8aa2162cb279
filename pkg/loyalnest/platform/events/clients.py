"""What the events' Kafka clients share, whichever library: kafka-python (kafka_python.py)
or librdkafka (librdkafka.py), picked by `kafka_producer` / `kafka_consumer` and imported
only when picked (every service imports this module, and its RSS is what it imports).

Both clients block. Each publisher and each consumer gets a thread of its own (a
one-worker executor): asyncio's default executor is shared with pymongo and migrations,
and a consumer's long polls would starve them; one thread per consumer also keeps the
consumer, which is not thread-safe (kafka-python), on a single thread.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from loyalnest.platform.config import EventSettings
from loyalnest.platform.events.envelope import RecordLike
from loyalnest.platform.events.metrics import KAFKA_CLIENT
from loyalnest.platform.events.topics import topic_partitions
from loyalnest.platform.observability import get_logger

log = get_logger(__name__)

T = TypeVar("T")
P = TypeVar("P")  # a Kafka client's producer


def quiet_kafka_logging() -> None:
    # kafka-python logs every failed connection attempt at ERROR, several per second
    # while the broker is down. Our loops log each failed attempt once, with its
    # exception, and keep the counters; its own log only drowns that.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)


def kafka_python_only(settings: EventSettings) -> bool:
    """Whether kafka-python is this process's only Kafka client: then its admin client
    creates topics too; otherwise librdkafka's does, so that a process whose producer and
    consumers are on librdkafka never imports kafka-python."""
    return settings.kafka_producer == "kafka-python" and settings.kafka_consumer == "kafka-python"


def ensure_topics(settings: EventSettings, client_id: str, topics: Iterable[str]) -> None:
    """Creates the missing topics with their registered partition counts. Blocking."""
    if kafka_python_only(settings):
        from loyalnest.platform.events import kafka_python

        kafka_python.ensure_topics(settings, client_id, topics)
    else:
        from loyalnest.platform.events import librdkafka

        librdkafka.ensure_topics(settings, client_id, topics)


def warn_about_partition_counts(counts: Mapping[str, int]) -> None:
    """Logs topics (name -> partitions, 0 if unknown) whose partition count differs from the
    registry's. Changing it here would move keys to other partitions (and break per-key
    order), so it is an operator's call; a broker that lost its state recreates topics with
    its default count when a client names them before ensure_topics runs."""
    for name, partitions in sorted(counts.items()):
        if partitions and partitions != topic_partitions(name):
            log.warning(
                "kafka topic has an unexpected partition count",
                topic=name,
                partitions=partitions,
                expected=topic_partitions(name),
            )


@dataclass
class Backoff:
    """Exponential delays with jitter between attempts; reset after a success."""

    initial: float
    maximum: float
    failures: int = 0

    @classmethod
    def from_settings(cls, settings: EventSettings) -> Backoff:
        return cls(settings.events_retry_initial_seconds, settings.events_retry_max_seconds)

    def next_delay(self) -> float:
        self.failures += 1
        delay = min(self.maximum, self.initial * 2.0 ** min(self.failures - 1, 30))
        # Jitter spreads the reconnects of many processes after a shared outage.
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.failures = 0


class KafkaThread:
    """A dedicated thread for one blocking client."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: call(*args, **kwargs))

    def shutdown(self) -> None:
        # Queued calls run first (close() after a poll still in progress); nothing waits.
        self._executor.shutdown(wait=False)


@dataclass(frozen=True)
class OutgoingRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]] = ()

    @classmethod
    def of(cls, topic: str, key: str, value: bytes, headers: Mapping[str, str]) -> OutgoingRecord:
        return cls(topic, key.encode(), value, [(k, v.encode()) for k, v in headers.items()])


def publish_bound_seconds(settings: EventSettings) -> float:
    """About the longest one KafkaPublisher.publish() can take: connecting the producer and
    the admin client that creates missing topics (the connect timeout each), listing and
    creating topics (the publish timeout each), send() waiting for metadata (max_block_ms,
    the connect timeout), then flush (the publish timeout + 1 s). Leases that must outlast a
    publication (the MongoDB outbox's) are derived from it."""
    connect = settings.kafka_connect_timeout_seconds
    publish = settings.kafka_publish_timeout_seconds
    return 3 * connect + 3 * publish + 1


class PublishError(Exception):
    pass


# Where the broker stored an acknowledged record: (partition, offset); no offset is None.
Stored = tuple[int, int | None]


def count_stored(
    results: list[Exception | None], acknowledged: Mapping[int, Stored]
) -> list[Exception | None]:
    """`results` (per record, why it failed) with each record the broker acknowledged
    (`acknowledged`: its index -> where stored) counted as published, unless the broker said
    it stored nothing of that partition's records: a batch it called a duplicate of one it
    holds (DUPLICATE_SEQUENCE_NUMBER) comes back "delivered" without an offset. librdkafka
    numbers such a batch's other records on from -1 (0, 1, ...): one record without an offset
    discounts every record of its partition in this send.

    Right after a retry of that very batch the records are stored. But a broker can misjudge
    the sequence: a memory-backed tansu that restarted hands out producer ids again from the
    first, and a batch sent under an id a live producer held before the restart is then
    stored nowhere, reported delivered by both clients (bench/README.md, "Kafka consumers
    on librdkafka"). Not counting them sends the rows again: at worst duplicates, which
    consumers skip."""
    unplaced = {partition for partition, offset in acknowledged.values() if not _placed(offset)}
    for index, (partition, _) in acknowledged.items():
        results[index] = (
            PublishError("acknowledged without an offset") if partition in unplaced else None
        )
    return results


def _placed(offset: int | None) -> bool:
    return offset is not None and offset >= 0


class ThreadedPublisher(Generic[P]):
    """An idempotent producer on its own thread, rebuilt after any failure: what both Kafka
    clients share. A subclass makes (`_new_producer`), sends (`_send`), abandons
    (`_abandon`) and closes (`_close_producer`) its client's producer.

    A failed producer may be unusable (e.g. a broker that restarted without our producer
    id answers every later send with an error): closing it and connecting anew is the one
    recovery that always works. Topics are created before their first send on each
    connection, since a memory-backed broker forgets them when it restarts.
    """

    thread_name = "kafka-producer"

    def __init__(self, settings: EventSettings, client_id: str) -> None:
        quiet_kafka_logging()
        self._settings = settings
        self._client_id = client_id
        self._thread = KafkaThread(f"{self.thread_name}-{client_id}")
        self._producer: P | None = None
        self._topics: set[str] = set()

    def _new_producer(self) -> P:
        raise NotImplementedError

    def _send(self, producer: P, records: Sequence[OutgoingRecord]) -> list[Exception | None]:
        """Sends in order, stopping at the first record that cannot be sent (later records
        of its key would land out of order), and waits for the acks."""
        raise NotImplementedError

    def _abandon(self, producer: P) -> None:
        """Drops the producer without waiting: what is queued is sent again later."""
        raise NotImplementedError

    def _close_producer(self, producer: P) -> None:
        raise NotImplementedError

    async def publish(self, records: Sequence[OutgoingRecord]) -> list[Exception | None]:
        """Sends in order and waits for acks; per record, None or why it failed."""
        return await self._thread.run(self._publish, records)

    def _connect(self) -> P:
        if self._producer is None:
            self._producer = self._new_producer()
            self._topics = set()
        return self._producer

    def _discard(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            self._abandon(producer)

    def _publish(self, records: Sequence[OutgoingRecord]) -> list[Exception | None]:
        try:
            producer = self._connect()
            missing = {r.topic for r in records} - self._topics
            if missing:
                ensure_topics(self._settings, self._client_id, missing)
                self._topics |= missing
        except Exception as exc:
            self._discard()
            return [exc] * len(records)
        results = self._send(producer, records)
        if any(results):
            self._discard()
        return results

    async def close(self) -> None:
        """Flushes and closes; gives up after a few seconds if the thread is stuck
        connecting to a broker that is away (it then ends by itself within the connect
        timeout)."""
        try:
            await asyncio.wait_for(
                self._thread.run(self._close), self._settings.events_shutdown_step_seconds
            )
        except TimeoutError:
            log.warning("kafka producer still busy at close; leaving it", client=self._client_id)
        finally:
            self._thread.shutdown()

    def _close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            self._close_producer(producer)


def report_kafka_client(role: str, name: str, client: str) -> None:
    """`loyalnest_kafka_client_info`: one series per producer or group member, the library it
    runs on (a member built again on the other client replaces its series)."""
    KAFKA_CLIENT.remove_by_labels({"role": role, "name": name})
    KAFKA_CLIENT.labels(role, name, client).set(1)


class Publisher(Protocol):
    async def publish(self, records: Sequence[OutgoingRecord]) -> list[Exception | None]: ...
    async def close(self) -> None: ...


def new_publisher(settings: EventSettings, client_id: str) -> Publisher:
    """The producer `settings.kafka_producer` names. librdkafka is imported only when used:
    every service imports this module, and its RSS is what it imports."""
    report_kafka_client("producer", client_id, settings.kafka_producer)
    if settings.kafka_producer == "confluent":
        from loyalnest.platform.events.librdkafka import ConfluentPublisher

        return ConfluentPublisher(settings, client_id)
    from loyalnest.platform.events.kafka_python import KafkaPublisher

    return KafkaPublisher(settings, client_id)


class Partition(NamedTuple):
    topic: str
    partition: int


# One poll's records, per partition, in offset order.
PartitionRecords = Mapping[Partition, Sequence[RecordLike]]


class CommitRejected(Exception):
    """The group rebalanced meanwhile: the offsets' partitions may be another member's now."""


class GroupMember(Protocol):
    """A subscribed consumer group member on one Kafka client (consumer.ConsumerRunner's
    view of it). Blocking: every call is made on the runner's own thread, one at a time."""

    def poll(self, timeout_ms: int) -> tuple[PartitionRecords, bool]:
        """The records fetched, and whether the assignment changed since the last poll. If
        it did, the records are of the new assignment only and every assigned partition
        resumes from the group's committed offset: offsets noted before are void."""
        ...

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commits (synchronously) the next offset to read per partition; raises
        CommitRejected if the group rebalanced meanwhile."""
        ...

    def seek(self, partition: Partition, offset: int) -> None: ...

    def lags(self, positions: Mapping[Partition, int]) -> dict[Partition, int]:
        """Per assigned partition with a known position: records behind the high watermark
        (as last fetched; no request)."""
        ...

    def close(self, timeout_seconds: float) -> None:
        """Leaves the group without committing."""
        ...


def new_group_member(
    settings: EventSettings,
    client_id: str,
    group: str,
    topics: Sequence[str],
    also_create: Sequence[str] = (),
) -> GroupMember:
    """Creates the missing `topics` (and `also_create`: the dead-letter topics) and joins
    `group` subscribed to `topics`, on the client `settings.kafka_consumer` names (imported
    only then). Blocking."""
    report_kafka_client("consumer", group, settings.kafka_consumer)
    if settings.kafka_consumer == "confluent":
        from loyalnest.platform.events.librdkafka import ConfluentMember

        return ConfluentMember(settings, client_id, group, topics, also_create)
    from loyalnest.platform.events.kafka_python import KafkaPythonMember

    return KafkaPythonMember(settings, client_id, group, topics, also_create)
