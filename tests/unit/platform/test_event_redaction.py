"""Redacting an unsent event that names an erased customer (platform/events/redaction.py)."""

from __future__ import annotations

from loyalnest.gen.events.v1 import gateway_pb2, points_pb2
from loyalnest.platform.events.envelope import Envelope, new_event
from loyalnest.platform.events.redaction import Redactor


def _redacted(redactor: Redactor, payload: object, merchant: str = "m-1") -> tuple[object, str]:
    event = new_event(merchant, payload)  # type: ignore[arg-type]
    result = redactor.record(event.value, event.key)
    assert result is not None
    envelope = Envelope.FromString(result.envelope)
    decoded = type(payload)()
    assert envelope.payload.Unpack(decoded)
    assert envelope.event_id == event.event_id and envelope.merchant_id == merchant
    return decoded, result.key


def test_a_webhook_naming_the_customer_keeps_its_facts_under_the_anonymous_id() -> None:
    redactor = Redactor(["7390012230001", "ada@example.com"], "erased:abc")
    payload = gateway_pb2.WebhookReceived(
        topic="orders/create",
        customer_id="7390012230001",
        body=b'{"email": "ada@example.com"}',  # a version-1 body: clear data
        payload_version=2,
        order=gateway_pb2.ShopifyOrder(order_id="o-1", customer_id="7390012230001"),
        customer_data=gateway_pb2.SealedCustomerData(
            customer_id="7390012230001", key_id="k-1", ciphertext=b"sealed"
        ),
    )
    redacted, key = _redacted(redactor, payload)
    assert key == "m-1/erased:abc"
    assert isinstance(redacted, gateway_pb2.WebhookReceived)
    assert redacted.customer_id == "erased:abc" and redacted.order.customer_id == "erased:abc"
    assert redacted.order.order_id == "o-1" and redacted.topic == "orders/create"
    assert redacted.body == b"" and redacted.customer_data.ciphertext == b""
    assert b"7390012230001" not in redacted.SerializeToString()


def test_derived_ids_lose_the_identifier_but_longer_ids_are_not_touched() -> None:
    redactor = Redactor(["c-1"], "erased:x")
    assert redactor.text("m|c-1|gold") == "m|erased:x|gold"
    assert redactor.text("c-10") == "c-10"
    assert redactor.text("xc-1") == "xc-1"
    assert redactor.text("rule:birthday:c-1:2026") == "rule:birthday:erased:x:2026"


def test_an_event_about_someone_else_is_left_alone() -> None:
    redactor = Redactor(["c-1"], "erased:x")
    event = new_event("m-1", points_pb2.PointsEarned(customer_id="c-2", points=5))
    assert redactor.record(event.value, event.key) is None
    assert Redactor([""], "erased:x").record(event.value, event.key) is None


def test_contact_fields_go_only_from_a_message_naming_the_customer() -> None:
    from loyalnest.gen.events.v1 import gateway_pb2 as g

    redactor = Redactor(["ada@example.com", "c-1"], "erased:x")
    theirs = g.CustomerData(email="ada@example.com", first_name="Ada")
    assert redactor.message(theirs) and theirs == g.CustomerData()
    someone_else = g.CustomerData(email="bob@example.com", first_name="Bob")
    assert not redactor.message(someone_else) and someone_else.first_name == "Bob"


def test_an_erasure_gives_each_identifier_its_own_id_the_same_in_every_service() -> None:
    from loyalnest.platform.personal_data import CustomerRef, anonymous_id

    request = CustomerRef("c-1", user_ids=("u-1",))
    # What two services get from the same request (AdminCore sends one erasure key).
    points, users = request.only("c-1"), CustomerRef("c-1", erasure_key=request.erasure_key)
    assert points.anonymous_id("c-1") == users.anonymous_id("c-1")
    assert request.anonymous_id("c-1") != request.anonymous_id("u-1")
    # Another erasure (another key) of the same id: another id; none follows from the id.
    assert CustomerRef("c-1").anonymous_id("c-1") != request.anonymous_id("c-1")
    assert anonymous_id(request.erasure_key, "c-1") == request.anonymous_id("c-1")
    assert "c-1" not in request.anonymous_id("c-1")

    redactor = Redactor(["c-1", "u-1"], request.anonymous_id)
    assert redactor.text("m|c-1|u-1") == (
        f"m|{request.anonymous_id('c-1')}|{request.anonymous_id('u-1')}"
    )
    event = new_event("m-1", points_pb2.PointsEarned(customer_id="u-1", points=5))
    redacted = redactor.record(event.value, event.key)
    assert redacted is not None and redacted.key == f"m-1/{request.anonymous_id('u-1')}"
