"""Prometheus metrics of the event backbone (relays and consumers of any service)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OUTBOX_BACKLOG = Gauge(
    "loyalnest_outbox_backlog",
    "Outbox rows not yet published to Kafka.",
    ["schema"],
)
OUTBOX_OLDEST_PENDING = Gauge(
    "loyalnest_outbox_oldest_pending_seconds",
    "Age of the oldest outbox row not yet published (0 when none).",
    ["schema"],
)
OUTBOX_PUBLISHED = Counter(
    "loyalnest_outbox_published_total",
    "Outbox rows published to Kafka and acknowledged by all in-sync replicas.",
    ["schema", "topic"],
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "loyalnest_outbox_publish_failures_total",
    "Relay batches that failed (broker or database unavailable); retried with backoff.",
    ["schema"],
)
EVENTS_PROCESSED = Counter(
    "loyalnest_events_processed_total",
    "Records consumed, by outcome: applied, duplicate (already applied), ignored (an event"
    " type the consumer does not handle), dead_lettered.",
    ["group", "topic", "event_type", "outcome"],
)
EVENTS_FAILED = Counter(
    "loyalnest_events_failed_total",
    "Failed attempts to apply an event (each retry counts), by kind: error (counts towards"
    " dead-lettering), unavailable (database or broker away; retried without limit),"
    " invalid (undecodable; dead-lettered at once).",
    ["group", "topic", "kind"],
)
CONSUMER_LAG = Gauge(
    "loyalnest_consumer_lag",
    "Records behind the partition's high watermark after the last processed batch.",
    ["group", "topic", "partition"],
)
EVENT_DELIVERY_SECONDS = Histogram(
    "loyalnest_event_delivery_seconds",
    "From the event's occurred_at to its effect being committed by this consumer.",
    ["group", "topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
KAFKA_CLIENT = Gauge(
    "loyalnest_kafka_client_info",
    "1 per Kafka producer (name: its client id) and consumer group member (name: its group),"
    " labelled with the library it runs on: kafka-python or confluent (librdkafka); during a"
    " rolling switch of LOYALNEST_KAFKA_CONSUMER a group has members of both.",
    ["role", "name", "client"],
)
