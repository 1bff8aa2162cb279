"""The events Referrals applies: Core's settings (the copy of the referral program),
webhook.received (a friend's order carrying a referral code; first orders; cancellations)
and Points' points.earned for an order (`order:<id>`: the order is approved, kept past the
program's pending period: the conversion completes)."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from psycopg import AsyncConnection

from loyalnest.gen.events.v1 import core_pb2, gateway_pb2, points_pb2
from loyalnest.platform import audit
from loyalnest.platform.events import inbox
from loyalnest.platform.events.consumer import PermanentEventError
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import Handler
from loyalnest.platform.postgres import Database
from loyalnest.platform.shopify_payloads import UnfitBody, read_order
from loyalnest.services.referrals.domain import candidate_codes
from loyalnest.services.referrals.status_feed import StatusFeed
from loyalnest.services.referrals.store import ReferralStore, now

ORDER_TOPICS = frozenset({"orders/create", "orders/paid"})
CANCEL_TOPIC = "orders/cancelled"
# Points' reason for an order's credit (services/points/orders.py order_reason).
ORDER_REASON_PREFIX = "order:"


def _order(webhook: gateway_pb2.WebhookReceived) -> gateway_pb2.ShopifyOrder | None:
    """The order of the event: `content` (version 2), else the version-1 raw body."""
    if webhook.HasField("order"):
        return webhook.order
    if not webhook.body:
        return None
    try:
        payload: Any = json.loads(webhook.body)
        return read_order(payload) if isinstance(payload, dict) else None
    except (ValueError, UnfitBody) as exc:
        # Signed by Shopify yet unreadable: retrying cannot help; the consumer dead-letters.
        raise PermanentEventError(f"{webhook.topic} {webhook.webhook_id}: {exc}") from exc


def handlers(
    store: ReferralStore, database: Database, feed: StatusFeed | None = None
) -> dict[str, Handler]:
    # event id -> the referrals an event changed, announced once its transaction committed.
    touched: dict[str, str] = {}

    def announcing(handler: Handler) -> Handler:
        async def handle(event: ConsumedEvent) -> bool:
            try:
                applied = await handler(event)
            finally:
                referral_id = touched.pop(event.event_id, None)
            if applied and referral_id is not None and feed is not None:
                await feed.announce([referral_id])
            return applied

        return handle

    async def on_settings(conn: AsyncConnection, event: ConsumedEvent) -> None:
        settings = event.payload_as(core_pb2.ProgramSettingsUpdated).settings
        await store.save_program(conn, event.merchant_id, settings)

    async def on_webhook(conn: AsyncConnection, event: ConsumedEvent) -> None:
        webhook = event.payload_as(gateway_pb2.WebhookReceived)
        if webhook.topic not in ORDER_TOPICS and webhook.topic != CANCEL_TOPIC:
            return
        merchant_id = event.merchant_id
        if webhook.shop_domain:
            await store.remember_shop(conn, merchant_id, webhook.shop_domain)
        order = _order(webhook)
        if order is None or not order.order_id or not order.customer_id:
            return  # a guest checkout: nobody was referred
        await audit.set_actor(conn, audit.actor_of_event(event))
        if webhook.topic == CANCEL_TOPIC:
            cancelled = await store.order_cancelled(conn, merchant_id, order.order_id)
            if cancelled is not None:
                touched[event.event_id] = cancelled
            return
        await store.lock_order(conn, merchant_id, order.order_id)
        first = await store.first_order(conn, merchant_id, order.customer_id, order.order_id)
        if await store.order_converted(conn, merchant_id, order.order_id):
            return  # a redelivery, or orders/paid after orders/create
        codes = candidate_codes(order.discount_codes, order.landing_site_ref)
        referral = await store.find_referral(conn, merchant_id, codes) if codes else None
        if referral is None:
            return
        at = (
            order.created_time.ToDatetime(tzinfo=UTC)
            if order.HasField("created_time")
            else await now(conn)
        )
        conversion = await store.convert(
            conn,
            merchant_id,
            referral,
            order.customer_id,
            order.order_id,
            at=at,
            first_order=first,
            approved=await store.was_approved(conn, merchant_id, order.order_id),
        )
        touched[event.event_id] = conversion.referral_id

    async def on_points_earned(conn: AsyncConnection, event: ConsumedEvent) -> None:
        earned = event.payload_as(points_pb2.PointsEarned)
        if not earned.reason.startswith(ORDER_REASON_PREFIX):
            return
        await audit.set_actor(conn, audit.actor_of_event(event))
        completed = await store.order_approved(
            conn, event.merchant_id, earned.reason.removeprefix(ORDER_REASON_PREFIX)
        )
        if completed is not None:
            touched[event.event_id] = completed

    return {
        "program_settings.updated": inbox.transactional(database, on_settings),
        # Not batched with other events (announced one by one after their commit).
        "webhook.received": announcing(inbox.transactional(database, on_webhook)),
        "points.earned": announcing(inbox.transactional(database, on_points_earned)),
    }
