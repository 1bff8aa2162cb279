"""Customer pseudonyms in events (platform/events/pseudonyms.py): the rewrite both ways, the
declaration of every Shopify-customer-id field, and who may ask the edge. The owner here is
an in-memory map (the edge's store and RPC are tested in
tests/integration/test_customer_pseudonyms.py)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor

import loyalnest.services
from loyalnest.gen.events.v1 import (
    admin_core_pb2,
    core_pb2,
    envelope_pb2,
    gateway_pb2,
    points_pb2,
    referrals_pb2,
)
from loyalnest.gen.platform.v1 import customer_pseudonyms_pb2
from loyalnest.platform.auth.policy import access_policy
from loyalnest.platform.auth.service_identity import SERVICE_GRANTS
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.events import pseudonyms
from loyalnest.platform.events.clients import OutgoingRecord
from loyalnest.platform.events.consumer import EventProcessor
from loyalnest.platform.events.envelope import ConsumedEvent, new_event
from loyalnest.platform.events.pseudonyms import (
    NOT_SHOPIFY_CUSTOMER_FIELDS,
    SHOPIFY_CUSTOMER_FIELDS,
    MerchantValue,
    Pseudonymizer,
    Resolution,
    Resolver,
    is_pseudonym,
)
from loyalnest.platform.events.topics import BY_TYPE, EVENTS
from loyalnest.services.registry import SERVICES
from tests.unit.platform.test_events_runtime import Handler, Record, Sink

M = "merchant-1"
SERVICES_DIR = Path(loyalnest.services.__file__).parent


class Owner:
    """The mapping as the edge keeps it: random pseudonyms, tombstones after an erasure."""

    def __init__(self) -> None:
        self.live: dict[MerchantValue, str] = {}
        self.tombstones: dict[MerchantValue, str] = {}
        self.calls: list[str] = []
        self.down = False

    async def pseudonymize(self, customers: Sequence[MerchantValue]) -> list[str]:
        self.calls.append("pseudonymize")
        if self.down:
            raise ConnectionError("edge away")
        for customer in customers:
            self.live.setdefault(customer, "cust_" + uuid.uuid4().hex)
        return [self.live[c] for c in customers]

    async def resolve(self, asked: Sequence[MerchantValue]) -> list[Resolution]:
        self.calls.append("resolve")
        if self.down:
            raise ConnectionError("edge away")
        by_pseudonym = {(m, p): c for (m, c), p in self.live.items()}
        out = []
        for merchant, pseudonym in asked:
            if (merchant, pseudonym) in by_pseudonym:
                out.append(Resolution(by_pseudonym[(merchant, pseudonym)]))
            else:
                out.append(Resolution(self.tombstones[(merchant, pseudonym)], erased=True))
        return out

    def erase(self, merchant: str, customer: str, anonymous: str) -> None:
        self.tombstones[(merchant, self.live.pop((merchant, customer)))] = anonymous


def outgoing(payload) -> OutgoingRecord:  # type: ignore[no-untyped-def]
    event = new_event(M, payload)
    return OutgoingRecord.of(event.spec.topic.name, event.key, event.value, event.headers)


def unpacked(record: OutgoingRecord, payload_type):  # type: ignore[no-untyped-def]
    envelope = envelope_pb2.Envelope.FromString(record.value)
    payload = payload_type()
    assert envelope.payload.Unpack(payload)
    return payload


def webhook(customer: str) -> gateway_pb2.WebhookReceived:
    return gateway_pb2.WebhookReceived(
        topic="orders/create",
        customer_id=customer,
        order=gateway_pb2.ShopifyOrder(order_id="o-1", customer_id=customer),
        customer_data=gateway_pb2.SealedCustomerData(
            customer_id=customer, key_id="k", ciphertext=b"x"
        ),
    )


async def test_the_relay_side_leaves_no_shopify_id_in_keys_or_values():
    owner = Owner()
    records = [
        outgoing(webhook("7001")),
        outgoing(points_pb2.PointsEarned(customer_id="7001", points=5)),
        outgoing(
            core_pb2.CustomerCreated(customer_id=str(uuid.uuid4()), shopify_customer_id="7002")
        ),
        outgoing(
            referrals_pb2.ReferralCompleted(referral_id="r", referrer_id="7001", referee_id="7003")
        ),
    ]
    published = await Pseudonymizer(owner).records(records)
    assert owner.calls == ["pseudonymize"]  # one call for the batch
    p1, p2, p3 = owner.live[(M, "7001")], owner.live[(M, "7002")], owner.live[(M, "7003")]
    for record in published:
        assert b"7001" not in record.value + (record.key or b"")
        assert b"7002" not in record.value and b"7003" not in record.value
    sent = unpacked(published[0], gateway_pb2.WebhookReceived)
    assert (sent.customer_id, sent.order.customer_id, sent.customer_data.customer_id) == (
        p1,
        p1,
        p1,
    )
    assert sent.order.order_id == "o-1" and sent.customer_data.ciphertext == b"x"
    assert published[0].key == f"{M}/{p1}".encode()
    assert published[0].headers == records[0].headers
    assert unpacked(published[1], points_pb2.PointsEarned).points == 5
    created = unpacked(published[2], core_pb2.CustomerCreated)
    assert created.shopify_customer_id == p2
    # Core's own uuid is no Shopify id: it stays, and so does the key made of it.
    assert created.customer_id == unpacked(records[2], core_pb2.CustomerCreated).customer_id
    assert published[2].key == records[2].key
    completed = unpacked(published[3], referrals_pb2.ReferralCompleted)
    assert (completed.referrer_id, completed.referee_id) == (p1, p3)
    assert all(is_pseudonym(p) for p in (p1, p2, p3))


async def test_events_without_shopify_ids_are_published_as_they_are_without_asking():
    owner = Owner()
    records = [
        outgoing(points_pb2.PointsEarned(customer_id="erased:" + "a" * 32, points=1)),
        outgoing(points_pb2.PointsEarned(customer_id="cust_" + "b" * 32, points=1)),
        outgoing(webhook("")),
        outgoing(admin_core_pb2.GdprRequestCreated(request_id="g")),
    ]
    assert await Pseudonymizer(owner).records(records) == records
    assert owner.calls == []


async def test_the_relay_fails_as_a_whole_while_the_owner_is_away():
    owner = Owner()
    owner.down = True
    with pytest.raises(ConnectionError):
        await Pseudonymizer(owner).records([outgoing(points_pb2.PointsEarned(customer_id="7"))])


def consumed(record: OutgoingRecord) -> Record:
    return Record(record.value, list(record.headers), key=record.key)


async def test_handlers_see_the_shopify_id_then_the_anonymous_id_after_erasure():
    owner = Owner()
    published = await Pseudonymizer(owner).records(
        [outgoing(points_pb2.PointsEarned(customer_id="7001", points=5))]
    )
    handler = Handler()
    processor = EventProcessor(
        "g", {"points.earned": handler}, Sink(), ServiceSettings(), Resolver(owner)
    )
    assert await processor.process(consumed(published[0])) == "applied"
    event: ConsumedEvent = handler.calls[0]
    assert event.payload_as(points_pb2.PointsEarned).customer_id == "7001"
    earned = points_pb2.PointsEarned()
    assert event.envelope.payload.Unpack(earned) and earned.customer_id == "7001"
    # Cached: the same pseudonym again costs no call.
    await processor.process(consumed(published[0]))
    assert owner.calls == ["pseudonymize", "resolve"]
    # Erased: this replica forgets its cache; a late record resolves to the tombstone.
    owner.erase(M, "7001", "erased:" + "c" * 32)
    pseudonyms.forget_customer(M, "7001")
    await processor.process(consumed(published[0]))
    assert handler.calls[-1].payload_as(points_pb2.PointsEarned).customer_id == "erased:" + "c" * 32
    assert handler.calls[-1].payload_as(points_pb2.PointsEarned).points == 5


async def test_records_from_before_pseudonyms_pass_and_an_unreachable_owner_is_not_a_dead_letter():
    owner = Owner()
    handler, sink = Handler(), Sink()
    processor = EventProcessor(
        "g", {"points.earned": handler}, sink, ServiceSettings(), Resolver(owner)
    )
    clear = outgoing(points_pb2.PointsEarned(customer_id="7001"))
    await processor.process(consumed(clear))
    assert handler.calls[0].payload_as(points_pb2.PointsEarned).customer_id == "7001"
    assert owner.calls == []
    pseudonymous = (await Pseudonymizer(owner).records([clear]))[0]
    owner.down = True
    with pytest.raises(ConnectionError):  # the consumer loop reads the batch again later
        await processor.process(consumed(pseudonymous))
    assert sink.dead == [] and len(handler.calls) == 1


_CUSTOMER_ID_NAME = re.compile(r"(.*_)?customer_id|referrer_id|referee_id")


def test_every_customer_id_field_of_an_event_is_declared_or_said_to_be_another_id():
    undeclared = []
    seen = set()

    def walk(descriptor) -> None:  # type: ignore[no-untyped-def]
        if descriptor.full_name in seen:
            return
        seen.add(descriptor.full_name)
        for field in descriptor.fields:
            if field.message_type is not None:
                walk(field.message_type)
            elif field.type == FieldDescriptor.TYPE_STRING and _CUSTOMER_ID_NAME.fullmatch(
                field.name
            ):
                declared = field.name in SHOPIFY_CUSTOMER_FIELDS.get(descriptor.full_name, ())
                if not declared and f"{descriptor.full_name}.{field.name}" not in (
                    NOT_SHOPIFY_CUSTOMER_FIELDS
                ):
                    undeclared.append(f"{descriptor.full_name}.{field.name}")

    for spec in EVENTS:
        walk(spec.payload_type.DESCRIPTOR)
    assert undeclared == [], (
        "declare these in pseudonyms.SHOPIFY_CUSTOMER_FIELDS (or NOT_SHOPIFY_CUSTOMER_FIELDS"
        f" with the reason): {undeclared}"
    )
    # And every declaration names a real string field of an event message.
    for message in SHOPIFY_CUSTOMER_FIELDS:
        assert message in seen, message
    for spec in EVENTS:
        descriptor = spec.payload_type.DESCRIPTOR
        for field in SHOPIFY_CUSTOMER_FIELDS.get(descriptor.full_name, ()):
            assert descriptor.fields_by_name[field].type == FieldDescriptor.TYPE_STRING


def _consumed_event_types(service: str) -> set[str]:
    """The event types a service's consumers name (string literals of its consumers.py)."""
    path = SERVICES_DIR / service / "consumers.py"
    if not path.is_file():
        return set()
    return set(re.findall(r'"([a-z_]+\.[a-z_]+)"', path.read_text())) & set(BY_TYPE)


def test_the_services_handling_customer_events_are_the_callers_and_may_ask_the_owner():
    handling = {
        service
        for service in SERVICES
        if any(pseudonyms.carries_customer_ids(t) for t in _consumed_event_types(service))
        or any(
            spec.topic.producer == service and pseudonyms.carries_customer_ids(spec.event_type)
            for spec in EVENTS
        )
    }
    assert set(pseudonyms.CALLERS) == handling - {pseudonyms.OWNER}
    for service in pseudonyms.CALLERS:
        assert pseudonyms.PERMISSION in SERVICE_GRANTS[service], service


def test_the_owners_contract_asks_for_the_callers_permission_from_services_only():
    # The policy is read from the service's descriptor, registered when its module loads:
    # without this the test passed only after another test had imported it.
    assert customer_pseudonyms_pb2.DESCRIPTOR.services_by_name["CustomerPseudonymService"]
    for method in ("Pseudonymize", "Resolve"):
        policy = access_policy(f"/loyalnest.platform.v1.CustomerPseudonymService/{method}")
        assert policy.internal and policy.permission == pseudonyms.PERMISSION, method


def test_a_caller_with_pseudonyms_on_cannot_start_without_the_owner_or_a_credential():
    from loyalnest.platform import event_loops
    from loyalnest.platform.calls import CallConfigError

    on = ServiceSettings(customer_pseudonyms=True)
    with pytest.raises(CallConfigError, match="edge"):
        event_loops._backend(on, "points", None)
    targets = ServiceSettings(
        customer_pseudonyms=True, call_targets={"edge": "127.0.0.1:1", "auth": "127.0.0.1:2"}
    )
    with pytest.raises(CallConfigError, match="LOYALNEST_SERVICE_CREDENTIAL"):
        event_loops._backend(targets, "points", None)
    # Users handles no customer event; the edge uses its own store; off is off.
    assert event_loops._backend(on, "users", None) is None
    owner = Owner()
    assert event_loops._backend(on, "edge", owner) is owner  # type: ignore[arg-type]
    assert event_loops._backend(ServiceSettings(), "points", None) is None
