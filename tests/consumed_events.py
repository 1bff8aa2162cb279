"""Events as a consumer's handler receives them, for tests that call handlers directly."""

from __future__ import annotations

from google.protobuf.message import Message

from loyalnest.platform.events.envelope import ConsumedEvent, OutgoingEvent, new_event


def consumed(
    merchant: str, payload: Message, *, offset: int = 0, consumer: str = "loyalnest.points"
) -> ConsumedEvent:
    """`payload` published by `merchant` and delivered to `consumer` at `offset` of
    partition 0 of its topic."""
    return delivered(new_event(merchant, payload), payload, offset=offset, consumer=consumer)


def delivered(
    event: OutgoingEvent, payload: Message, *, offset: int = 0, consumer: str = "loyalnest.points"
) -> ConsumedEvent:
    """A published `event` (carrying `payload`) as `consumer` receives it: a redelivery is
    the same event delivered again."""
    return ConsumedEvent(
        envelope=event.envelope,
        spec=event.spec,
        payload=payload,
        consumer=consumer,
        topic=event.spec.topic.name,
        partition=0,
        offset=offset,
    )
