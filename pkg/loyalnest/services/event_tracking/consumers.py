"""The domain events Event Tracking turns into analytics events for PostHog.

points.earned, referral.created, user.created, role.assigned, rfm.updated (seed §9) and
failed notifications (email_event.created with status FAILED: the referral e-mails and SMS
that did not go out). Each becomes one queued task, in the transaction that records the
event as processed; its task id (PostHog's uuid) is the event's id, so even a task queued
twice would be one event at PostHog. The person is the event's customer or user, as a
pseudonym; properties are what domain.ALLOWED_PROPERTIES lets through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message
from psycopg import AsyncConnection

from loyalnest.gen.events.v1 import (
    admin_features_pb2,
    points_pb2,
    referrals_pb2,
    rfm_pb2,
    roles_pb2,
    users_pb2,
)
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import Handler, transactional
from loyalnest.platform.postgres import Database
from loyalnest.services.event_tracking.domain import NewTask, Source, allowed
from loyalnest.services.event_tracking.domain import reason_kind as _reason_kind
from loyalnest.services.event_tracking.store import TaskStore

# What one payload says: (analytics event name, whom it is about, properties); None: skip.
Analytics = tuple[str, str, dict[str, Any]] | None


def _points_earned(p: points_pb2.PointsEarned) -> Analytics:
    return (
        "points_earned",
        p.customer_id,
        {
            "points": p.points,
            "balance_after": p.balance_after,
            "lifetime_earned_after": p.lifetime_earned_after,
            "reason_kind": _reason_kind(p.reason),
        },
    )


def _referral_created(p: referrals_pb2.ReferralCreated) -> Analytics:
    return "referral_created", p.referrer_id, {"channel": p.channel}


def _user_created(p: users_pb2.UserCreated) -> Analytics:
    kind = users_pb2.UserKind.Name(p.kind).removeprefix("USER_KIND_").lower()
    return "user_created", p.user_id, {"kind": kind}


def _role_assigned(p: roles_pb2.RoleAssigned) -> Analytics:
    return "role_assigned", p.user_id, {"role_id": p.role_id}


def _segment(value: int) -> str:
    return rfm_pb2.RfmSegment.Name(value).removeprefix("RFM_SEGMENT_").lower()


def _rfm_updated(p: rfm_pb2.RfmUpdated) -> Analytics:
    properties = {"segment": _segment(p.segment), "previous_segment": _segment(p.previous_segment)}
    return "rfm_updated", p.customer_id, properties


def _notification(p: admin_features_pb2.EmailEventCreated) -> Analytics:
    if p.status != admin_features_pb2.EMAIL_STATUS_FAILED:
        return None  # sent or queued notifications are not what analytics follows here
    return (
        "notification_failed",
        p.customer_id,
        {"provider": p.provider, "template_id": p.template_id},
    )


MAPPINGS: dict[str, tuple[type[Message], Callable[[Any], Analytics]]] = {
    "points.earned": (points_pb2.PointsEarned, _points_earned),
    "referral.created": (referrals_pb2.ReferralCreated, _referral_created),
    "user.created": (users_pb2.UserCreated, _user_created),
    "role.assigned": (roles_pb2.RoleAssigned, _role_assigned),
    "rfm.updated": (rfm_pb2.RfmUpdated, _rfm_updated),
    "email_event.created": (admin_features_pb2.EmailEventCreated, _notification),
}


def task_for(store: TaskStore, event: ConsumedEvent) -> NewTask | None:
    """The task a domain event becomes, or None for one analytics does not follow."""
    payload_type, mapping = MAPPINGS[event.event_type]
    analytics = mapping(event.payload_as(payload_type))  # a mismatch is a poison message
    if analytics is None:
        return None
    name, person, properties = analytics
    merchant_id = event.merchant_id
    subject = (
        store.pseudonyms.of(merchant_id, person)
        if person
        else store.pseudonyms.merchant(merchant_id)
    )
    return NewTask(
        task_id=event.event_id,
        merchant_id=merchant_id,
        event_type=name,
        source=Source.DOMAIN,
        subject=subject,
        properties=allowed(name, properties).kept,
        occurred_at=event.occurred_at,
    )


def handlers(database: Database, store: TaskStore) -> dict[str, Handler]:
    async def queue(conn: AsyncConnection, event: ConsumedEvent) -> None:
        task = task_for(store, event)
        if task is not None:
            await store.queue_in(conn, task)

    handler = transactional(database, queue)
    return dict.fromkeys(MAPPINGS, handler)
