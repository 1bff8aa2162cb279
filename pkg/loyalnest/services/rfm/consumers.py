"""The events RFM applies, all from webhook.received (skipped for a merchant Auth does not know
or that uninstalled the app, GDPR topics excepted):

- orders/create, orders/paid: the order counts towards F and M and moves R at once;
- orders/cancelled: the order stops counting; refunds/create: its amount comes off M (an order
  wholly refunded stops counting);
- customers/create: a prospect (no order yet);
- customers/redact, shop/redact: the customer's or the merchant's data is erased.

points.earned and referral.completed are not scored: an order's points are that order again
(counting both would count it twice), and a referral is the friend's order, scored as theirs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from loyalnest.gen.events.v1 import gateway_pb2
from loyalnest.platform import shopify_payloads
from loyalnest.platform.events.consumer import PermanentEventError
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import Handler
from loyalnest.platform.merchants import MerchantGate
from loyalnest.services.rfm.domain import MalformedOrder, order_amount, refund_amount
from loyalnest.services.rfm.nightly import Nightly
from loyalnest.services.rfm.store.live import Live
from loyalnest.services.rfm.store.scores import Applied, OrderFacts, ScoreStore
from loyalnest.services.rfm.wire import scatter_point

ORDER_TOPICS = frozenset({"orders/create", "orders/paid", "orders/cancelled"})
GDPR_TOPICS = frozenset({"customers/redact", "shop/redact"})
TOPICS = ORDER_TOPICS | GDPR_TOPICS | {"refunds/create", "customers/create"}


def _order(webhook: gateway_pb2.WebhookReceived) -> gateway_pb2.ShopifyOrder:
    """`content` (payload version 2), else a version-1 event's raw body."""
    if webhook.HasField("order"):
        return webhook.order
    try:
        return shopify_payloads.read_order(_body(webhook))
    except shopify_payloads.UnfitBody as exc:
        raise MalformedOrder(str(exc)) from exc


def _refund(webhook: gateway_pb2.WebhookReceived) -> gateway_pb2.ShopifyRefund:
    if webhook.HasField("refund"):
        return webhook.refund
    try:
        return shopify_payloads.read_refund(_body(webhook))
    except shopify_payloads.UnfitBody as exc:
        raise MalformedOrder(str(exc)) from exc


def _body(webhook: gateway_pb2.WebhookReceived) -> dict[str, Any]:
    payload: Any = json.loads(webhook.body or b"null")
    if not isinstance(payload, dict):
        raise MalformedOrder("the event carries neither content nor a JSON object body")
    return payload


def order_facts(
    order: gateway_pb2.ShopifyOrder, *, cancelled: bool, received: datetime
) -> OrderFacts:
    if not order.order_id:
        raise MalformedOrder("the order has no id")
    placed = (
        order.created_time
        if order.HasField("created_time")
        else order.processed_time
        if order.HasField("processed_time")
        else None
    )
    return OrderFacts(
        order_id=order.order_id,
        customer_id=order.customer_id,
        placed_at=received if placed is None else placed.ToDatetime(tzinfo=received.tzinfo),
        amount=order_amount((i.price, i.quantity, i.discount) for i in order.line_items),
        currency=order.currency,
        cancelled=cancelled or order.HasField("cancelled_time"),
    )


def handlers(
    scores: ScoreStore,
    nightly: Nightly,
    live: Live,
    *,
    clock: Callable[[], datetime],
    merchants: MerchantGate | None = None,
) -> dict[str, Handler]:
    async def apply(event: ConsumedEvent, webhook: gateway_pb2.WebhookReceived) -> Applied:
        topic = webhook.topic
        if topic in ORDER_TOPICS:
            order = _order(webhook)
            if not order.customer_id:
                return Applied(True)  # a guest checkout: nobody to score
            facts = order_facts(
                order, cancelled=topic == "orders/cancelled", received=event.occurred_at
            )
            return await scores.record_order(event, facts)
        if topic == "refunds/create":
            refund = _refund(webhook)
            if not refund.refund_id or not refund.order_id:
                raise MalformedOrder("the refund has no id or order_id")
            amount = refund_amount(item.subtotal for item in refund.refund_line_items)
            return await scores.record_refund(event, refund.refund_id, refund.order_id, amount)
        if topic == "customers/create":
            customer_id = webhook.customer.customer_id or webhook.customer_id
            if not customer_id:
                raise MalformedOrder("customers/create names no customer")
            return await scores.record_customer(event, customer_id)
        if topic == "customers/redact":
            customer_id = webhook.privacy_request.customer_id or webhook.customer_id
            if customer_id:
                await scores.erase_customer(event.merchant_id, customer_id)
            return Applied(True)
        await scores.erase_merchant(event.merchant_id)  # shop/redact
        return Applied(True)

    async def on_webhook(event: ConsumedEvent) -> bool:
        webhook = event.payload_as(gateway_pb2.WebhookReceived)
        if webhook.topic not in TOPICS:
            return True  # another service's topic
        if (
            webhook.topic not in GDPR_TOPICS
            and merchants is not None
            and not await merchants.allows(event.merchant_id, what=event.event_type)
        ):
            return True
        try:
            applied = await apply(event, webhook)
        except ValueError as exc:  # MalformedOrder, or a body json cannot parse
            # Signed by Shopify yet unreadable: retrying cannot help; the consumer dead-letters.
            raise PermanentEventError(f"{webhook.topic} {webhook.webhook_id}: {exc}") from exc
        if applied.change is not None:
            point = scatter_point(applied.change.after, clock(), scores.half_life_days)
            await live.publish(event.merchant_id, point.SerializeToString())
        if applied.needs_rescore:
            await nightly.rescore_merchant(event.merchant_id)
        return applied.applied

    return {"webhook.received": on_webhook}
