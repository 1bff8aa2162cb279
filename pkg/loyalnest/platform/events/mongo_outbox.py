"""The outbox as a MongoDB collection, for services whose state lives in MongoDB.

`outbox_document` builds the document a service inserts with its state change, in the same
MongoDB transaction (same session), exactly as PostgreSQL services call outbox.enqueue().

Not built yet: the relay side. OutboxRelay takes any OutboxSource, and a MongoDB one needs
(a) lane leases instead of row locks (a document per lane with an owner and an expiry
longer than the publish timeout) and (b) an order that follows commit order per key: client
clocks do not, so the writer must also increment a per-lane counter inside its transaction
(write conflicts then serialise the lane). Until then documents accumulate unsent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson.binary import Binary
from google.protobuf.message import Message

from loyalnest.platform.events.envelope import new_event
from loyalnest.platform.events.outbox import lane_for

OUTBOX_COLLECTION = "outbox"


def outbox_document(
    merchant_id: str, payload: Message, *, occurred_at: datetime | None = None
) -> dict[str, Any]:
    event = new_event(merchant_id, payload, occurred_at=occurred_at)
    return {
        "_id": event.event_id,
        "event_type": event.spec.event_type,
        "topic": event.spec.topic.name,
        "partition_key": event.key,
        "lane": lane_for(event.key),
        "envelope": Binary(event.value),
        "headers": dict(event.headers),
        "created_at": event.envelope.occurred_at.ToDatetime(tzinfo=UTC),
        "sent_at": None,
    }
