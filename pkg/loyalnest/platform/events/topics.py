"""Every LoyalNest event: its name, payload type, Kafka topic and partition key. The one place.

One topic per producing service (`loyalnest.<service>.events`): a topic has a single writer,
and all the events of one aggregate (e.g. a customer's `points.earned` and `points.redeemed`)
share its topic, which ordering needs, since Kafka orders records only within a partition.
The record key is the aggregate id, `<merchant_id>/<aggregate>`, so one aggregate's events
land on one partition and stay in order; an event without an aggregate field is keyed by
its merchant. Consumers that fail a record for good send it to `<topic>.dlq`.

Adding an event: a payload message in proto/loyalnest/events/v1/, then one `EventSpec` here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.message import Message

from loyalnest.gen.events.v1 import (
    admin_core_pb2,
    admin_features_pb2,
    audit_pb2,
    auth_pb2,
    campaign_pb2,
    core_pb2,
    event_tracking_pb2,
    gamification_pb2,
    gateway_pb2,
    points_pb2,
    products_pb2,
    referrals_pb2,
    rfm_pb2,
    roles_pb2,
    users_pb2,
)

DEAD_LETTER_SUFFIX = ".dlq"
# Kafka's legal topic names.
_TOPIC_NAME_RE = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


@dataclass(frozen=True)
class Topic:
    name: str
    # The only service that writes it.
    producer: str
    # Fixed at creation: changing it later remaps keys to other partitions and breaks
    # ordering for events in flight. 6 lets up to six consumer processes share the work.
    partitions: int = 6

    def __post_init__(self) -> None:
        if not _TOPIC_NAME_RE.match(self.name) or self.name.endswith(DEAD_LETTER_SUFFIX):
            raise ValueError(f"invalid topic name {self.name!r}")

    @property
    def dead_letter(self) -> str:
        return self.name + DEAD_LETTER_SUFFIX


def _topic(producer: str) -> Topic:
    return Topic(f"loyalnest.{producer}.events", producer)


CORE = _topic("core")
AUTH = _topic("auth")
EDGE = _topic("edge")  # the API-Gateway's edge service (webhook ingress)
POINTS = _topic("points")
REFERRALS = _topic("referrals")
USERS = _topic("users")
ROLES = _topic("roles")
RFM = _topic("rfm")
EVENT_TRACKING = _topic("event_tracking")
ADMIN_CORE = _topic("admin_core")
ADMIN_FEATURES = _topic("admin_features")
CAMPAIGN = _topic("campaign")
GAMIFICATION = _topic("gamification")
PRODUCTS = _topic("products")
# Written by every audited service's shipper (loyalnest.platform.audit.shipper), read by
# AdminCore: one topic so one consumer sees the mesh's log; each key has one writer.
AUDIT = _topic("audit")


@dataclass(frozen=True)
class EventSpec:
    event_type: str
    payload_type: type[Message]
    topic: Topic
    # The payload field naming the aggregate whose events must stay ordered; None for
    # merchant-level events, keyed by the merchant alone.
    aggregate_field: str | None

    @property
    def payload_name(self) -> str:
        return str(self.payload_type.DESCRIPTOR.full_name)

    def partition_key(self, merchant_id: str, payload: Message) -> str:
        if self.aggregate_field is None:
            return merchant_id
        aggregate = getattr(payload, self.aggregate_field)
        # An event that names no aggregate (e.g. a webhook about no customer) still keeps
        # its merchant's order.
        return f"{merchant_id}/{aggregate}" if aggregate else merchant_id


EVENTS: tuple[EventSpec, ...] = (
    EventSpec("customer.created", core_pb2.CustomerCreated, CORE, "customer_id"),
    EventSpec("customer.updated", core_pb2.CustomerUpdated, CORE, "customer_id"),
    EventSpec("plan_limit_warning", core_pb2.PlanLimitWarning, CORE, None),
    EventSpec("program_settings.updated", core_pb2.ProgramSettingsUpdated, CORE, None),
    EventSpec("merchant.created", auth_pb2.MerchantCreated, AUTH, None),
    EventSpec("merchant.uninstalled", auth_pb2.MerchantUninstalled, AUTH, None),
    EventSpec("merchant.reinstalled", auth_pb2.MerchantReinstalled, AUTH, None),
    EventSpec("auth.revoked", auth_pb2.AuthRevoked, AUTH, "user_id"),
    EventSpec("webhook.received", gateway_pb2.WebhookReceived, EDGE, "customer_id"),
    EventSpec("points.earned", points_pb2.PointsEarned, POINTS, "customer_id"),
    EventSpec("points.redeemed", points_pb2.PointsRedeemed, POINTS, "customer_id"),
    EventSpec("points.adjusted", points_pb2.PointsAdjusted, POINTS, "customer_id"),
    EventSpec("points.reversed", points_pb2.PointsReversed, POINTS, "customer_id"),
    EventSpec("points.expired", points_pb2.PointsExpired, POINTS, "customer_id"),
    EventSpec("points.expiring", points_pb2.PointsExpiring, POINTS, "customer_id"),
    EventSpec("tier.changed", points_pb2.TierChanged, POINTS, "customer_id"),
    EventSpec("referral.created", referrals_pb2.ReferralCreated, REFERRALS, "referrer_id"),
    EventSpec("referral.completed", referrals_pb2.ReferralCompleted, REFERRALS, "referrer_id"),
    EventSpec("user.created", users_pb2.UserCreated, USERS, "user_id"),
    EventSpec("user.updated", users_pb2.UserUpdated, USERS, "user_id"),
    EventSpec("role.assigned", roles_pb2.RoleAssigned, ROLES, "role_id"),
    EventSpec("role.updated", roles_pb2.RoleUpdated, ROLES, "role_id"),
    EventSpec("rfm.updated", rfm_pb2.RfmUpdated, RFM, "customer_id"),
    EventSpec("task.created", event_tracking_pb2.TaskCreated, EVENT_TRACKING, "task_id"),
    EventSpec("task.completed", event_tracking_pb2.TaskCompleted, EVENT_TRACKING, "task_id"),
    EventSpec("audit_log.recorded", audit_pb2.AuditLogRecorded, AUDIT, "resource"),
    EventSpec("gdpr_request.created", admin_core_pb2.GdprRequestCreated, ADMIN_CORE, "customer_id"),
    EventSpec(
        "email_event.created", admin_features_pb2.EmailEventCreated, ADMIN_FEATURES, "customer_id"
    ),
    EventSpec("campaign.created", campaign_pb2.CampaignCreated, CAMPAIGN, "campaign_id"),
    EventSpec("campaign.state_changed", campaign_pb2.CampaignStateChanged, CAMPAIGN, "campaign_id"),
    EventSpec("badge.awarded", gamification_pb2.BadgeAwarded, GAMIFICATION, "customer_id"),
    EventSpec("product_rfm.updated", products_pb2.ProductRfmUpdated, PRODUCTS, "product_id"),
)

BY_TYPE: Mapping[str, EventSpec] = {spec.event_type: spec for spec in EVENTS}
_BY_PAYLOAD: Mapping[str, EventSpec] = {spec.payload_name: spec for spec in EVENTS}
TOPICS: Mapping[str, Topic] = {spec.topic.name: spec.topic for spec in EVENTS}


class UnknownEvent(LookupError):
    pass


def spec_for_type(event_type: str) -> EventSpec:
    try:
        return BY_TYPE[event_type]
    except KeyError:
        raise UnknownEvent(f"unknown event type {event_type!r}") from None


def spec_for_payload(payload: Message) -> EventSpec:
    name = payload.DESCRIPTOR.full_name
    try:
        return _BY_PAYLOAD[name]
    except KeyError:
        raise UnknownEvent(f"{name} is not a registered event payload") from None


def topic_partitions(topic: str) -> int:
    """Partitions for a topic we create: a registered topic's, its dead letters' too."""
    registered = TOPICS.get(topic.removesuffix(DEAD_LETTER_SUFFIX))
    # Dead letters are rare and read by hand: one partition keeps them in arrival order.
    if registered is None or topic.endswith(DEAD_LETTER_SUFFIX):
        return 1
    return registered.partitions
