"""The event registry and envelope: every seed event has a payload, topic and key."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf import any_pb2
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from loyalnest.gen.events.v1 import envelope_pb2, points_pb2, rfm_pb2, users_pb2
from loyalnest.platform.events import topics
from loyalnest.platform.events.envelope import InvalidEvent, decode, new_event
from loyalnest.platform.events.outbox import OUTBOX_LANES, lane_for
from tests.shared import shared_file

REPO = Path(__file__).resolve().parents[3]

# Every event named on a "Produces" line of seed §1-15.
# Events of our own beyond the seed's, each with the reason in its proto: points.adjusted
# (adjustments are not customer activity), points.reversed (a refunded redemption or a
# cancelled order's points are neither an earn nor a redeem), program_settings.updated
# (Points earns from orders with a local copy of Core's rules instead of a call per order).
OUR_EVENTS = {
    # Issue 18: every service's audit rows, shipped to AdminCore.
    "audit_log.recorded",
    "points.adjusted",
    "points.reversed",
    "program_settings.updated",
    # Issue 14: uninstall completion.
    "merchant.uninstalled",
    "merchant.reinstalled",
    # Issue 21: points expiry.
    "points.expired",
    "points.expiring",
    # Issue 19: a campaign's lifecycle after campaign.created (paused, resumed, ended).
    "campaign.state_changed",
    "tier.changed",
}
SEED_EVENTS = {
    "customer.created",
    "customer.updated",
    "plan_limit_warning",
    "merchant.created",
    "auth.revoked",
    "webhook.received",
    "points.earned",
    "points.redeemed",
    "referral.created",
    "referral.completed",
    "user.created",
    "user.updated",
    "role.assigned",
    "role.updated",
    "rfm.updated",
    "task.created",
    "task.completed",
    "gdpr_request.created",
    "email_event.created",
    "campaign.created",
    "badge.awarded",
    "product_rfm.updated",
}
# Messages in the events package that are not events themselves.
NOT_EVENTS = {
    "loyalnest.events.v1.Envelope",
    "loyalnest.events.v1.RfmScore",
    "loyalnest.events.v1.RfmScores",
    "loyalnest.events.v1.ProgramSettings",
    "loyalnest.events.v1.EarningMultiplier",
    "loyalnest.events.v1.PlanLimits",
    # Parts of ProgramSettings (issue 21).
    "loyalnest.events.v1.EarningRule",
    "loyalnest.events.v1.EarningLimit",
    "loyalnest.events.v1.ReferralProgram",
    "loyalnest.events.v1.ReferralMilestone",
    "loyalnest.events.v1.VipTier",
    # Parts of webhook.received (payload version 2).
    "loyalnest.events.v1.ShopifyOrder",
    "loyalnest.events.v1.ShopifyLineItem",
    "loyalnest.events.v1.ShopifyRefund",
    "loyalnest.events.v1.ShopifyRefundLineItem",
    "loyalnest.events.v1.ShopifyCustomer",
    "loyalnest.events.v1.ShopifyPrivacyRequest",
    "loyalnest.events.v1.ShopifyShop",
    "loyalnest.events.v1.SealedCustomerData",
    "loyalnest.events.v1.CustomerData",
}


def test_every_seed_event_is_registered():
    assert set(topics.BY_TYPE) == SEED_EVENTS | OUR_EVENTS


def test_seed_produces_lines_match_the_list_above():
    produced: set[str] = set()
    seed = shared_file("seed", "loyalnest-microservice-design.txt")
    for line in seed.read_text().splitlines():
        if "Produces" in line:
            names = line.split(":", 1)[1].split("(")[0]
            produced |= {n.strip(" *") for n in names.split(",") if n.strip(" *.") != "None"}
    assert produced == SEED_EVENTS


def test_every_payload_message_is_registered_once():
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.Default()
    files = sorted((REPO / "proto" / "loyalnest" / "events" / "v1").glob("*.proto"))
    messages = set()
    for path in files:
        descriptor = pool.FindFileByName(f"loyalnest/events/v1/{path.name}")
        messages |= {m.full_name for m in descriptor.message_types_by_name.values()}
    registered = [spec.payload_name for spec in topics.EVENTS]
    assert len(registered) == len(set(registered))
    assert set(registered) == messages - NOT_EVENTS


@pytest.mark.parametrize("spec", topics.EVENTS, ids=lambda s: s.event_type)
def test_spec_is_consistent(spec: topics.EventSpec):
    assert re.fullmatch(r"[a-z_]+(\.[a-z_]+)?", spec.event_type)
    fields = spec.payload_type.DESCRIPTOR.fields_by_name
    if spec.aggregate_field is not None:
        assert fields[spec.aggregate_field].type == fields[spec.aggregate_field].TYPE_STRING
    # One producer per topic, named after it.
    assert spec.topic.name == f"loyalnest.{spec.topic.producer}.events"
    assert spec.topic.dead_letter == spec.topic.name + ".dlq"


def test_partition_key_is_the_aggregate():
    spec = topics.BY_TYPE["points.earned"]
    assert spec.partition_key("m1", points_pb2.PointsEarned(customer_id="c9")) == "m1/c9"
    merchant_level = topics.BY_TYPE["plan_limit_warning"]
    assert merchant_level.partition_key("m1", merchant_level.payload_type()) == "m1"
    # No aggregate named: the merchant's own order still holds.
    webhook = topics.BY_TYPE["webhook.received"]
    assert webhook.partition_key("m1", webhook.payload_type()) == "m1"


def test_topic_partitions():
    assert topics.topic_partitions("loyalnest.points.events") == topics.POINTS.partitions
    assert topics.topic_partitions("loyalnest.points.events.dlq") == 1
    assert topics.topic_partitions("somebody.else") == 1
    with pytest.raises(ValueError, match="invalid topic"):
        topics.Topic("bad topic!", "x")


def test_lanes_match_the_migration():
    sql = (REPO / "pkg/loyalnest/platform/migrations/platform_0002_outbox.sql").read_text()
    assert f"generate_series(0, {OUTBOX_LANES - 1})" in sql
    assert f"lane < {OUTBOX_LANES}" in sql
    lanes = {lane_for(f"m/c{i}") for i in range(2000)}
    assert lanes == set(range(OUTBOX_LANES))
    assert lane_for("m/c1") == lane_for("m/c1")  # stable: crc32, not the salted hash()


@dataclass
class Record:
    value: bytes | None
    topic: str = "loyalnest.points.events"
    partition: int = 0
    offset: int = 7
    key: bytes | None = b"m/c"
    headers: tuple[tuple[str, bytes | None], ...] = ()


def test_new_event_round_trips():
    payload = points_pb2.PointsEarned(customer_id="c", points=5, sequence=3)
    event = new_event("m", payload)
    assert event.key == "m/c"
    assert event.spec.event_type == "points.earned"
    assert event.envelope.producer == "points"
    assert event.envelope.payload.type_url.endswith("loyalnest.events.v1.PointsEarned")
    assert event.headers["event_id"] == event.event_id
    headers = tuple((k, v.encode()) for k, v in event.headers.items())
    consumed = decode(Record(event.value, headers=headers), "group")
    assert consumed.event_id == event.event_id
    assert consumed.merchant_id == "m"
    assert consumed.consumer == "group"
    assert consumed.offset == 7
    assert consumed.payload_as(points_pb2.PointsEarned) == payload
    with pytest.raises(TypeError):
        consumed.payload_as(points_pb2.PointsRedeemed)


def test_new_event_rejects_unregistered_payloads_and_missing_merchants():
    with pytest.raises(topics.UnknownEvent):
        new_event("m", rfm_pb2.RfmScore())
    with pytest.raises(ValueError, match="merchant"):
        new_event("", points_pb2.PointsEarned(customer_id="c"))


def test_new_event_captures_the_current_trace():
    provider = TracerProvider()
    with provider.get_tracer("test").start_as_current_span("rpc") as span:
        event = new_event("m", points_pb2.PointsEarned(customer_id="c"))
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert trace_id in event.envelope.trace_context["traceparent"]
    assert event.headers["traceparent"] == event.envelope.trace_context["traceparent"]
    # Outside any span there is nothing to carry.
    assert "traceparent" not in new_event("m", points_pb2.PointsEarned()).headers
    assert trace.get_current_span() is trace.INVALID_SPAN


def _envelope(**fields: object) -> bytes:
    base: dict[str, object] = {"event_id": "e1", "event_type": "user.created", "merchant_id": "m"}
    envelope = envelope_pb2.Envelope(**{**base, **fields})  # type: ignore[arg-type]
    return envelope.SerializeToString()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty"),
        (b"\xff\xff\xff", "not an event envelope"),
        (_envelope(event_id=""), "without event_id"),
        (_envelope(event_type="nope.happened"), "unknown event type"),
        (_envelope(), "must carry loyalnest.events.v1.UserCreated, not nothing"),
    ],
)
def test_decode_rejects_what_no_retry_can_fix(value: bytes | None, reason: str):
    with pytest.raises(InvalidEvent, match=reason):
        decode(Record(value), "group")


def test_decode_rejects_a_payload_of_the_wrong_type():
    envelope = envelope_pb2.Envelope(event_id="e", event_type="user.created", merchant_id="m")
    packed = any_pb2.Any()
    packed.Pack(points_pb2.PointsEarned(customer_id="c"))
    envelope.payload.CopyFrom(packed)
    with pytest.raises(InvalidEvent, match=r"not loyalnest\.events\.v1\.PointsEarned"):
        decode(Record(envelope.SerializeToString()), "group")
    envelope.payload.Pack(users_pb2.UserCreated(user_id="u"))
    assert decode(Record(envelope.SerializeToString()), "g").payload_as(users_pb2.UserCreated)
