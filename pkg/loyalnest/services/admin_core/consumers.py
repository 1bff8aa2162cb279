"""The events AdminCore applies, each once (processed events recorded with the effect).

- webhook.received of Shopify's GDPR topics (customers/data_request, customers/redact,
  shop/redact), which the edge accepts even for an uninstalled merchant: a GDPR request is
  filed, with a step per personal-data holder, and gdpr.py carries it out. Other topics are
  not AdminCore's.
"""

from __future__ import annotations

from loyalnest.gen.events.v1 import gateway_pb2
from loyalnest.platform.events.consumer import PermanentEventError
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import Handler
from loyalnest.services.admin_core.domain import TOPICS, NewRequest, Source
from loyalnest.services.admin_core.store import GdprStore


def handlers(store: GdprStore) -> dict[str, Handler]:
    async def on_webhook(event: ConsumedEvent) -> bool:
        webhook = event.payload_as(gateway_pb2.WebhookReceived)
        kind = TOPICS.get(webhook.topic)
        if kind is None:
            return True
        customer_id: str | None = None
        if kind.about_a_customer:
            # Version 2 carries the request's customer in `privacy_request`; a version-1 event
            # (raw body) still names them in `customer_id`.
            customer_id = webhook.privacy_request.customer_id or webhook.customer_id
            if not customer_id:
                raise PermanentEventError(
                    f"{webhook.topic} without a customer id ({event.event_id})"
                )
        return await store.file_from_event(event, NewRequest(kind, customer_id, Source.SHOPIFY))

    return {"webhook.received": on_webhook}
