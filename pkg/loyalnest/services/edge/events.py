"""What the edge tells the mesh: webhook.received, once per verified Shopify event."""

from __future__ import annotations

from loyalnest.gen.events.v1 import gateway_pb2 as gateway_events
from loyalnest.platform.protos import timestamp
from loyalnest.services.edge.webhooks import Delivery

# The consumer group of every edge process: each event is applied by one of them.
CONSUMER_GROUP = "loyalnest.edge"


def webhook_received(delivery: Delivery, customer_id: str) -> gateway_events.WebhookReceived:
    event = gateway_events.WebhookReceived(
        topic=delivery.topic,
        shopify_event_id=delivery.event_id,
        webhook_id=delivery.webhook_id,
        shop_domain=delivery.shop_domain,
        customer_id=customer_id,
        body=delivery.body,
    )
    if delivery.triggered_at is not None:
        event.triggered_time.CopyFrom(timestamp(delivery.triggered_at))
    return event
