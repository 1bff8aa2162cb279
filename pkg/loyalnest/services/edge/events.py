"""What the edge tells the mesh: webhook.received, once per verified Shopify event.

Payload version 2 (loyalnest.events.v1.WebhookReceived): the body's content as the consumers
need it (platform/shopify_payloads.py), the customer's personal data sealed under their own key
(store/customer_keys.py), and the raw body only for topics whose body holds no personal data.
"""

from __future__ import annotations

from loyalnest.gen.events.v1 import gateway_pb2 as gateway_events
from loyalnest.platform.protos import timestamp
from loyalnest.platform.shopify_payloads import PAYLOAD_VERSION, Content
from loyalnest.services.edge.webhooks import Delivery

# The consumer group of every edge process: each event is applied by one of them.
CONSUMER_GROUP = "loyalnest.edge"


def webhook_received(
    delivery: Delivery,
    content: Content,
    customer_data: gateway_events.SealedCustomerData | None = None,
) -> gateway_events.WebhookReceived:
    event = gateway_events.WebhookReceived(
        topic=delivery.topic,
        shopify_event_id=delivery.event_id,
        webhook_id=delivery.webhook_id,
        shop_domain=delivery.shop_domain,
        customer_id=content.customer_id,
        payload_version=PAYLOAD_VERSION,
    )
    if content.passthrough:
        event.body = delivery.body
    if content.field is not None and content.message is not None:
        getattr(event, content.field).CopyFrom(content.message)
    if customer_data is not None:
        event.customer_data.CopyFrom(customer_data)
    if delivery.triggered_at is not None:
        # Unsigned (a header): informative, as Auth uses it, never a proof of anything.
        event.triggered_time.CopyFrom(timestamp(delivery.triggered_at))
    return event
