"""Events as a consumer's handler receives them, for tests that call handlers directly."""

from __future__ import annotations

from google.protobuf.message import Message

from loyalnest.platform.events.envelope import ConsumedEvent, new_event


def consumed(
    merchant: str, payload: Message, *, offset: int = 0, consumer: str = "loyalnest.points"
) -> ConsumedEvent:
    """`payload` published by `merchant` and delivered to `consumer` at `offset` of
    partition 0 of its topic."""
    event = new_event(merchant, payload)
    return ConsumedEvent(
        envelope=event.envelope,
        spec=event.spec,
        payload=payload,
        consumer=consumer,
        topic=event.spec.topic.name,
        partition=0,
        offset=offset,
    )
