"""The outbox's publisher on librdkafka (confluent-kafka): `kafka_producer = "confluent"`.

Same contract as clients.KafkaPublisher (idempotent, acks=all, per-record result, rebuilt
after any failure), different cost: kafka-python's producer is pure Python, and its sender
and network threads take the GIL from the service's requests for every batch (about a third
of the edge's CPU samples at 100 webhooks/s, bench/README.md "Where the time goes (issue
15)"). librdkafka batches, compresses and talks to the broker in C threads without the GIL;
what is left in Python is one `produce()` call per record and the delivery callbacks.

Order: the relay marks only acknowledged rows sent and counts on a partition's records
never landing after an earlier one of the partition failed. The idempotent producer keeps
order on retries; `enable.gapless.guarantee` turns any failure that could leave a gap into a
fatal error, so the records behind it fail too (and go again with the next batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from loyalnest.platform.config import EventSettings
from loyalnest.platform.events.clients import OutgoingRecord, PublishError, ThreadedPublisher
from loyalnest.platform.observability import get_logger

log = get_logger(__name__)

LINGER_MS = 5  # as kafka-python's producer: a few ms of batching nobody notices


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def producer_config(settings: EventSettings, client_id: str) -> dict[str, Any]:
    publish_ms = _ms(settings.kafka_publish_timeout_seconds)
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": client_id,
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
        "socket.connection.setup.timeout.ms": _ms(settings.kafka_connect_timeout_seconds),
        "reconnect.backoff.max.ms": _ms(settings.events_retry_max_seconds),
        "topic.metadata.refresh.interval.ms": _ms(max(5.0, settings.kafka_session_timeout_seconds)),
        # librdkafka logs to stderr by default; errors reach the relay as results instead.
        "log_level": 0,
    }


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

        def delivered(index: int) -> Any:
            def report(error: KafkaError | None, _message: Message) -> None:
                results[index] = None if error is None else KafkaException(error)

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
        return results

    def _abandon(self, producer: Producer) -> None:
        producer.purge()
        producer.flush(0)

    def _close_producer(self, producer: Producer) -> None:
        remaining = producer.flush(2.0)
        if remaining:
            log.warning("kafka producer closed with records unsent", records=remaining)
