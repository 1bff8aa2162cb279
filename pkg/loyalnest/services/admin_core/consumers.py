"""The events AdminCore applies, each once (processed events recorded with the effect).

- webhook.received of Shopify's GDPR topics (customers/data_request, customers/redact,
  shop/redact), which the edge accepts even for an uninstalled merchant: a GDPR request is
  filed, with a step per personal-data holder, and gdpr.py carries it out. Other topics are
  not AdminCore's.
- merchant.created / merchant.uninstalled / merchant.reinstalled (Auth) and
  program_settings.updated (Core, its plan): the merchants projection GetMerchants reads.
- audit_log.recorded (every audited service's shipper): the mesh's audit log (audit_log.py),
  stored once per log_id.
"""

from __future__ import annotations

from loyalnest.gen.events.v1 import auth_pb2, core_pb2, gateway_pb2
from loyalnest.platform.events.consumer import PermanentEventError
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import Handler
from loyalnest.services.admin_core.audit_log import MeshAuditLog
from loyalnest.services.admin_core.domain import TOPICS, NewRequest, Source
from loyalnest.services.admin_core.store import GdprStore, MerchantDirectory


def handlers(
    store: GdprStore, merchants: MerchantDirectory, audit_log: MeshAuditLog
) -> dict[str, Handler]:
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

    async def on_created(event: ConsumedEvent) -> bool:
        created = event.payload_as(auth_pb2.MerchantCreated)
        return await merchants.created(event, created.shop_domain)

    async def on_uninstalled(event: ConsumedEvent) -> bool:
        gone = event.payload_as(auth_pb2.MerchantUninstalled)
        return await merchants.installed(event, gone.shop_domain, installed=False)

    async def on_reinstalled(event: ConsumedEvent) -> bool:
        back = event.payload_as(auth_pb2.MerchantReinstalled)
        return await merchants.installed(event, back.shop_domain, installed=True)

    async def on_settings(event: ConsumedEvent) -> bool:
        settings = event.payload_as(core_pb2.ProgramSettingsUpdated).settings
        return await merchants.plan(event, settings.plan.plan, settings.version)

    return {
        "webhook.received": on_webhook,
        "merchant.created": on_created,
        "merchant.uninstalled": on_uninstalled,
        "merchant.reinstalled": on_reinstalled,
        "program_settings.updated": on_settings,
        "audit_log.recorded": audit_log.record,
    }
