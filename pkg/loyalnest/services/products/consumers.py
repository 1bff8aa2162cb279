"""The events Products applies, each once.

- webhook.received, products/create|update|delete (bodies forwarded as they are: the
  catalogue holds no personal data): the product kept, a newer version only, or removed;
- webhook.received, orders/create|paid|updated: the order's lines become sales of their
  products (once per product and order), orders/cancelled removes them; product RFM follows
  (product_rfm.updated). Payload version 2 `order` content, else a version-1 raw body;
- rfm.updated: customers' segments, for the segments of a product's buyers;
- campaign.created, campaign.state_changed: which campaigns touch which products.
Unknown or uninstalled merchants' webhooks are skipped by the edge before they are published.
"""

from __future__ import annotations

import json

from loyalnest.gen.events.v1 import campaign_pb2 as campaign_events
from loyalnest.gen.events.v1 import gateway_pb2, rfm_pb2
from loyalnest.platform import shopify_payloads
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import Handler
from loyalnest.platform.observability import get_logger
from loyalnest.services.products.domain import UnfitProduct, from_webhook, numeric_id
from loyalnest.services.products.store.campaigns import CampaignsStore
from loyalnest.services.products.store.catalogue import CatalogueStore
from loyalnest.services.products.store.sales import SalesStore

log = get_logger(__name__)
_ORDERS = frozenset({"orders/create", "orders/paid", "orders/updated"})


def handlers(
    catalogue: CatalogueStore, sales: SalesStore, campaigns: CampaignsStore
) -> dict[str, Handler]:
    async def on_product(event: ConsumedEvent, webhook: gateway_pb2.WebhookReceived) -> bool:
        try:
            body = json.loads(webhook.body)
            product_id = numeric_id(body.get("id"))
            if not product_id:
                raise UnfitProduct("no product id")
            product = None if webhook.topic == "products/delete" else from_webhook(body)
        except (ValueError, AttributeError) as exc:
            # Signed by Shopify and passed the edge's checks, yet not a product: no retry helps.
            log.warning("product webhook ignored", event_id=event.event_id, error=str(exc))
            return True
        return await catalogue.apply_webhook(event, product_id, product)

    async def on_order(event: ConsumedEvent, webhook: gateway_pb2.WebhookReceived) -> bool:
        order = webhook.order
        if webhook.WhichOneof("content") != "order":
            try:
                order = shopify_payloads.read_order(json.loads(webhook.body))
            except (ValueError, shopify_payloads.UnfitBody) as exc:
                log.warning("order webhook ignored", event_id=event.event_id, error=str(exc))
                return True
        if not order.order_id:
            return True
        return await sales.apply_order(event, order, cancelled=webhook.topic == "orders/cancelled")

    async def on_webhook(event: ConsumedEvent) -> bool:
        webhook = event.payload_as(gateway_pb2.WebhookReceived)
        if webhook.topic in shopify_payloads.PRODUCT_TOPICS:
            return await on_product(event, webhook)
        if webhook.topic in _ORDERS or webhook.topic == "orders/cancelled":
            return await on_order(event, webhook)
        return True  # the other topics are the other services' business

    async def on_rfm_updated(event: ConsumedEvent) -> bool:
        scored = event.payload_as(rfm_pb2.RfmUpdated)
        if not scored.customer_id:
            return True
        return await sales.apply_segment(event, scored.customer_id, scored.segment)

    async def on_campaign_created(event: ConsumedEvent) -> bool:
        created = event.payload_as(campaign_events.CampaignCreated)
        return await campaigns.apply(
            event,
            campaign_id=created.campaign_id,
            name=created.name,
            state=created.state or "draft",
            product_ids=list(created.product_ids),
            collection_ids=list(created.collection_ids),
        )

    async def on_campaign_state(event: ConsumedEvent) -> bool:
        changed = event.payload_as(campaign_events.CampaignStateChanged)
        return await campaigns.apply(
            event,
            campaign_id=changed.campaign_id,
            name=changed.name,
            state=changed.state,
            product_ids=list(changed.product_ids),
            collection_ids=list(changed.collection_ids),
        )

    return {
        "webhook.received": on_webhook,
        "rfm.updated": on_rfm_updated,
        "campaign.created": on_campaign_created,
        "campaign.state_changed": on_campaign_state,
    }
