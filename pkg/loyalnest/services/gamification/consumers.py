"""The events Gamification applies: a customer's points (points.earned, points.reversed),
completed referrals (referral.completed, for the referrer) and RFM segments (rfm.updated).

Each moves the customer's counters and board scores and awards the badges it earns, in the
transaction that claims the event (a redelivery changes nothing); the committed scores then
go to the Redis boards. They go there on a redelivery too: a process that died between the
commit and Redis left them out, and setting a score again is harmless.
"""

from __future__ import annotations

from loyalnest.gen.events.v1 import points_pb2, referrals_pb2, rfm_pb2
from loyalnest.platform import audit
from loyalnest.platform.events import inbox
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import Handler
from loyalnest.platform.postgres import Database
from loyalnest.services.gamification.domain import is_order_credit
from loyalnest.services.gamification.leaderboards import Leaderboards
from loyalnest.services.gamification.store.postgres import GamificationStore


def handlers(
    database: Database, store: GamificationStore, leaderboards: Leaderboards
) -> dict[str, Handler]:
    async def on_points(event: ConsumedEvent) -> bool:
        if event.event_type == "points.earned":
            earned = event.payload_as(points_pb2.PointsEarned)
            customer, delta = earned.customer_id, earned.points
            lifetime, order = earned.lifetime_earned_after, is_order_credit(earned.reason)
        else:
            reversed_ = event.payload_as(points_pb2.PointsReversed)
            customer, delta = reversed_.customer_id, reversed_.points
            lifetime, order = reversed_.lifetime_earned_after, False
        if not customer:
            return False
        async with database.pool.connection() as conn, conn.transaction():
            applied = await inbox.claim(conn, event)
            if applied:
                await audit.set_actor(conn, audit.actor_of_event(event))
                await store.apply_points(
                    conn,
                    event.merchant_id,
                    customer,
                    delta=delta,
                    lifetime_after=lifetime,
                    order=order,
                    occurred_at=event.occurred_at,
                )
        await leaderboards.publish_earn(event.merchant_id, customer, event.occurred_at)
        return applied

    async def on_referral(event: ConsumedEvent) -> bool:
        referral = event.payload_as(referrals_pb2.ReferralCompleted)
        async with database.pool.connection() as conn, conn.transaction():
            if not await inbox.claim(conn, event):
                return False
            await audit.set_actor(conn, audit.actor_of_event(event))
            await store.apply_referral(conn, event.merchant_id, referral.referrer_id)
        return True

    async def on_rfm(event: ConsumedEvent) -> bool:
        update = event.payload_as(rfm_pb2.RfmUpdated)
        segment = rfm_pb2.RfmSegment.Name(update.segment).removeprefix("RFM_SEGMENT_").lower()
        async with database.pool.connection() as conn, conn.transaction():
            if not await inbox.claim(conn, event):
                return False
            await audit.set_actor(conn, audit.actor_of_event(event))
            await store.apply_segment(conn, event.merchant_id, update.customer_id, segment)
        return True

    return {
        "points.earned": on_points,
        "points.reversed": on_points,
        "referral.completed": on_referral,
        "rfm.updated": on_rfm,
    }
