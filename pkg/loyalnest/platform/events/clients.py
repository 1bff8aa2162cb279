"""kafka-python clients, configured once for every relay and consumer.

kafka-python is blocking. Each publisher and each consumer gets a thread of its own (a
one-worker executor): asyncio's default executor is shared with pymongo and migrations,
and a consumer's long polls would starve them; one thread per consumer also keeps the
consumer, which is not thread-safe, on a single thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaTimeoutError, TopicAlreadyExistsError

from loyalnest.platform.config import EventSettings
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


def new_producer(settings: EventSettings, client_id: str) -> KafkaProducer:
    """Idempotent, acks=all: a retried send is written once and a partition keeps order."""
    publish_ms = _ms(settings.kafka_publish_timeout_seconds)
    linger_ms = 5  # a few ms of batching: throughput at a latency nobody notices
    return KafkaProducer(
        **_common(settings, client_id),
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
    """Logs topics whose partition count differs from the registry's. Changing it here would
    move keys to other partitions (and break per-key order), so it is an operator's call; a
    broker that lost its state recreates topics with its default count when a client names
    them before this runs."""
    if not topics:
        return
    try:
        descriptions = admin.describe_topics(topics)
    except Exception as exc:  # a diagnostic: it must never keep events from flowing
        log.debug("could not describe kafka topics", topics=topics, error=repr(exc))
        return
    for described in descriptions:
        # "name" in kafka-python 3 (newer Metadata versions), "topic" before.
        name = described.get("name", described.get("topic"))
        partitions = len(described.get("partitions") or [])
        if name in topics and partitions and partitions != topic_partitions(name):
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
        quiet_kafka_logging()  # ensure_topics uses kafka-python's admin client either way
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


class KafkaPublisher(ThreadedPublisher[KafkaProducer]):
    """kafka-python's producer (the default)."""

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
        for index, future in enumerate(futures):
            if not future.is_done:
                results[index] = PublishError("not acknowledged within the publish timeout")
            elif future.failed():
                results[index] = future.exception
        return results

    def _abandon(self, producer: KafkaProducer) -> None:
        producer.close(timeout=0)

    def _close_producer(self, producer: KafkaProducer) -> None:
        producer.close(timeout=2.0)


class Publisher(Protocol):
    async def publish(self, records: Sequence[OutgoingRecord]) -> list[Exception | None]: ...
    async def close(self) -> None: ...


def new_publisher(settings: EventSettings, client_id: str) -> Publisher:
    """The producer `settings.kafka_producer` names. librdkafka is imported only when used:
    every service imports this module, and its RSS is what it imports."""
    if settings.kafka_producer == "confluent":
        from loyalnest.platform.events.librdkafka import ConfluentPublisher

        return ConfluentPublisher(settings, client_id)
    return KafkaPublisher(settings, client_id)
