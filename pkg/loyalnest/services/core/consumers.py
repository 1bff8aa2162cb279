"""The events Core applies, each once (processed events recorded in the effect's transaction).

- merchant.created: the merchant's program is saved (version 1, its plan from the event when
  Core knows it) and announced, so Points has a copy before the first order.
- points.earned with reason "order:<order id>": one more order rewarded this month.
- user.created / user.updated: the account projection that links customers to accounts.
- rfm.updated: the customer's latest RFM score.
- gdpr_request.created (redact): the customer's personal data is erased.
- webhook.received of topic app_subscriptions/update (Shopify Billing, through the edge): a paid
  plan's subscription changed status (store/billing.py applies it). Skipped, like every
  webhook, for a merchant Auth does not know or that uninstalled the app (MerchantGate).
- merchant.uninstalled: the paid plan ends (Shopify ends an app's charges with its install).
"""

from __future__ import annotations

from datetime import UTC

from loyalnest.gen.events.v1 import (
    admin_core_pb2,
    auth_pb2,
    gateway_pb2,
    points_pb2,
    rfm_pb2,
    users_pb2,
)
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import Handler
from loyalnest.platform.merchants import MerchantGate
from loyalnest.platform.observability import get_logger
from loyalnest.services.core.domain import (
    ProgramSettings,
    order_id_from_reason,
    parse_subscription_update,
    with_plan,
)
from loyalnest.services.core.store.billing import BillingStore
from loyalnest.services.core.store.customers import CustomerStore
from loyalnest.services.core.store.program import ProgramStore
from loyalnest.services.core.store.usage import UsageStore

log = get_logger(__name__)

SUBSCRIPTION_TOPIC = "app_subscriptions/update"


def _kind(kind: int) -> str:
    return users_pb2.UserKind.Name(kind).removeprefix("USER_KIND_").lower()


def handlers(
    programs: ProgramStore,
    usage: UsageStore,
    customers: CustomerStore,
    billing: BillingStore,
    merchants: MerchantGate | None = None,
) -> dict[str, Handler]:
    async def on_merchant_created(event: ConsumedEvent) -> bool:
        created = event.payload_as(auth_pb2.MerchantCreated)
        plan = programs.plans.get(created.plan)
        if plan is None and created.plan:
            log.warning(
                "merchant.created names an unknown plan; using the default", plan=created.plan
            )

        def first_program(current: ProgramSettings) -> ProgramSettings:
            # An install event never overrides a program the merchant has saved already.
            if current.version or plan is None:
                return current
            return with_plan(current, plan)

        await programs.apply_event(event, first_program)
        return True

    async def on_points_earned(event: ConsumedEvent) -> bool:
        earned = event.payload_as(points_pb2.PointsEarned)
        order_id = order_id_from_reason(earned.reason)
        if order_id is None:
            return True  # a referral, a signup bonus...: not an order
        return await usage.count_order(event, order_id)

    async def on_user_created(event: ConsumedEvent) -> bool:
        user = event.payload_as(users_pb2.UserCreated)
        return await customers.apply_account(
            event, user.user_id, kind=_kind(user.kind), role_id=user.role_id
        )

    async def on_user_updated(event: ConsumedEvent) -> bool:
        user = event.payload_as(users_pb2.UserUpdated)
        return await customers.apply_account(event, user.user_id, kind=None, role_id=user.role_id)

    async def on_rfm_updated(event: ConsumedEvent) -> bool:
        scored = event.payload_as(rfm_pb2.RfmUpdated)
        return await customers.apply_rfm(event, scored.customer_id, scored.score, scored.segment)

    async def on_gdpr_request(event: ConsumedEvent) -> bool:
        request = event.payload_as(admin_core_pb2.GdprRequestCreated)
        if request.type != admin_core_pb2.GDPR_REQUEST_TYPE_REDACT:
            return True  # data requests are answered by AdminCore, which exports
        return await customers.redact(event, request.request_id, request.customer_id)

    async def on_webhook(event: ConsumedEvent) -> bool:
        webhook = event.payload_as(gateway_pb2.WebhookReceived)
        if webhook.topic != SUBSCRIPTION_TOPIC:
            return True  # the other topics are the other services' business
        if merchants is not None and not await merchants.allows(
            event.merchant_id, what="webhook.received"
        ):
            return True
        update = parse_subscription_update(webhook.body)
        if update is None:
            # Signed by Shopify but not the documented shape: nothing to apply, no retry helps.
            log.warning(
                "app_subscriptions/update without a subscription; ignored",
                merchant_id=event.merchant_id,
                event_id=event.event_id,
            )
            return True
        return await billing.apply_update(event, update)

    async def on_merchant_uninstalled(event: ConsumedEvent) -> bool:
        uninstalled = event.payload_as(auth_pb2.MerchantUninstalled)
        at = (
            uninstalled.uninstall_time.ToDatetime(tzinfo=UTC)
            if uninstalled.HasField("uninstall_time")
            else None
        )
        return await billing.end_for_uninstall(event, at)

    return {
        "merchant.created": on_merchant_created,
        "merchant.uninstalled": on_merchant_uninstalled,
        "webhook.received": on_webhook,
        "points.earned": on_points_earned,
        "user.created": on_user_created,
        "user.updated": on_user_updated,
        "rfm.updated": on_rfm_updated,
        "gdpr_request.created": on_gdpr_request,
    }
