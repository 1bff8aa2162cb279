"""Building an event for the outbox, and decoding one received from Kafka."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from google.protobuf.message import DecodeError, Message
from opentelemetry import context as otel_context
from opentelemetry import propagate

from loyalnest.gen.events.v1 import envelope_pb2
from loyalnest.platform.events.topics import (
    EventSpec,
    UnknownEvent,
    spec_for_payload,
    spec_for_type,
)

Envelope = envelope_pb2.Envelope
MessageT = TypeVar("MessageT", bound=Message)

# Record headers next to the trace context: consumers route and skip on them without
# decoding, and tools (kcat, the dead-letter topic) show what a record is.
EVENT_ID_HEADER = "event_id"
EVENT_TYPE_HEADER = "event_type"


@dataclass(frozen=True)
class OutgoingEvent:
    """An event ready for the outbox: the serialized envelope and how to publish it."""

    spec: EventSpec
    envelope: Envelope
    key: str
    headers: Mapping[str, str]

    @property
    def event_id(self) -> str:
        return self.envelope.event_id

    @property
    def value(self) -> bytes:
        return self.envelope.SerializeToString()


def new_event(
    merchant_id: str, payload: Message, *, occurred_at: datetime | None = None
) -> OutgoingEvent:
    """Wraps `payload` (a registered event message) in an envelope for `merchant_id`.

    Captures the current OpenTelemetry context, so the consumer's span continues the trace
    of the operation that caused the event.
    """
    spec = spec_for_payload(payload)
    if not merchant_id:
        raise ValueError("an event needs a merchant_id")
    envelope = Envelope(
        event_id=str(uuid.uuid4()),
        event_type=spec.event_type,
        merchant_id=merchant_id,
        producer=spec.topic.producer,
    )
    envelope.occurred_at.FromDatetime(occurred_at or datetime.now(UTC))
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    envelope.trace_context.update(carrier)
    envelope.payload.Pack(payload)
    headers = {**carrier, EVENT_ID_HEADER: envelope.event_id, EVENT_TYPE_HEADER: spec.event_type}
    return OutgoingEvent(spec, envelope, spec.partition_key(merchant_id, payload), headers)


class InvalidEvent(Exception):
    """A record that can never be applied (undecodable, unknown type): dead-letter it."""


class RecordLike(Protocol):
    """The parts of a consumed record the consumer uses (kafka-python's ConsumerRecord,
    librdkafka.py's _Record)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


def record_headers(record: RecordLike) -> dict[str, str]:
    return {
        name: value.decode("utf-8", "replace")
        for name, value in record.headers or ()
        if value is not None
    }


@dataclass(frozen=True)
class ConsumedEvent:
    """A decoded event as a handler sees it."""

    envelope: Envelope
    spec: EventSpec
    payload: Message
    # The consumer group that received it: processed events are recorded per group.
    consumer: str
    topic: str
    partition: int
    offset: int
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def event_id(self) -> str:
        return self.envelope.event_id

    @property
    def event_type(self) -> str:
        return self.envelope.event_type

    @property
    def merchant_id(self) -> str:
        return self.envelope.merchant_id

    @property
    def occurred_at(self) -> datetime:
        return self.envelope.occurred_at.ToDatetime(tzinfo=UTC)

    def payload_as(self, payload_type: type[MessageT]) -> MessageT:
        if not isinstance(self.payload, payload_type):
            raise TypeError(
                f"{self.event_type} carries {self.spec.payload_name},"
                f" not {payload_type.DESCRIPTOR.full_name}"
            )
        return self.payload

    def trace_parent(self) -> otel_context.Context:
        """The producer's trace context: record headers first, the envelope's copy else."""
        carrier = self.headers if "traceparent" in self.headers else self.envelope.trace_context
        return propagate.extract(dict(carrier))


def decode(record: RecordLike, consumer: str) -> ConsumedEvent:
    """Raises InvalidEvent for anything a retry cannot fix."""
    if not record.value:
        raise InvalidEvent("empty record value")
    try:
        envelope = Envelope.FromString(record.value)
    except DecodeError as exc:
        raise InvalidEvent(f"not an event envelope: {exc}") from exc
    if not envelope.event_id or not envelope.merchant_id:
        raise InvalidEvent("envelope without event_id or merchant_id")
    try:
        spec = spec_for_type(envelope.event_type)
    except UnknownEvent as exc:
        raise InvalidEvent(str(exc)) from exc
    payload = spec.payload_type()
    try:
        unpacked = envelope.payload.Unpack(payload)
    except DecodeError as exc:
        raise InvalidEvent(f"undecodable {spec.payload_name} payload: {exc}") from exc
    if not unpacked:
        raise InvalidEvent(
            f"{envelope.event_type} must carry {spec.payload_name},"
            f" not {envelope.payload.TypeName() or 'nothing'}"
        )
    return ConsumedEvent(
        envelope=envelope,
        spec=spec,
        payload=payload,
        consumer=consumer,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        headers=record_headers(record),
    )
