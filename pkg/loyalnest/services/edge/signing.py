"""Signed test deliveries: what Shopify would send for a body, for developers, tests and
benchmarks (`loyalnest webhook send`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from loyalnest.services.edge.webhooks import (
    EVENT_ID_HEADER,
    HMAC_HEADER,
    SHOP_HEADER,
    TOPIC_HEADER,
    TRIGGERED_AT_HEADER,
    WEBHOOK_ID_HEADER,
    signature,
)

API_VERSION = "2025-10"


def shopify_headers(
    body: bytes,
    *,
    topic: str,
    shop_domain: str,
    secret: str,
    event_id: str | None = None,
    webhook_id: str | None = None,
) -> dict[str, str]:
    """The headers of one delivery of `body`; a new event unless `event_id` is given."""
    return {
        "content-type": "application/json",
        HMAC_HEADER: signature(body, secret),
        TOPIC_HEADER: topic,
        SHOP_HEADER: shop_domain,
        EVENT_ID_HEADER: event_id or str(uuid.uuid4()),
        WEBHOOK_ID_HEADER: webhook_id or str(uuid.uuid4()),
        TRIGGERED_AT_HEADER: datetime.now(UTC).isoformat(),
        "x-shopify-api-version": API_VERSION,
    }


def webhook_path(topic: str) -> str:
    return f"/v1/api/webhooks/{topic}"
