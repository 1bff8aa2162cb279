"""Whether a Shopify body fits its topic, and what webhook.received carries of it
(platform/shopify_payloads.py, services/edge/events.py): no servers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loyalnest.gen.events.v1 import gateway_pb2 as gateway_events
from loyalnest.platform.shopify_payloads import (
    FIT,
    UnfitBody,
    compatible_topics,
    content,
)
from loyalnest.services.edge.events import webhook_received
from loyalnest.services.edge.signing import shopify_headers
from loyalnest.services.edge.webhooks import TOPICS, Delivery
from tests.shared import shared_file

SHOP = "loyalnest-demo.myshopify.com"


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(shared_file("fixtures", "shopify", name).read_bytes())
    return loaded


ORDER = fixture("orders-create.json")
CANCELLED = fixture("orders-cancelled.json")
REFUND = fixture("refunds-create.json")


def test_every_topic_the_edge_takes_has_a_body_rule() -> None:
    assert set(FIT) >= TOPICS


@pytest.mark.parametrize(
    ("topic", "body"),
    [
        ("orders/create", ORDER),
        ("orders/paid", ORDER),
        ("orders/updated", ORDER),
        ("orders/updated", CANCELLED),
        ("orders/cancelled", CANCELLED),
        ("refunds/create", REFUND),
        ("customers/create", fixture("customers-create.json")),
        ("customers/update", fixture("customers-create.json")),
        ("customers/redact", fixture("customers-redact.json")),
        ("customers/data_request", fixture("customers-data_request.json")),
        ("shop/redact", fixture("shop-redact.json")),
        ("app/uninstalled", fixture("app-uninstalled.json")),
    ],
)
def test_shopify_bodies_fit_their_topics(topic: str, body: dict[str, Any]) -> None:
    assert content(topic, body, SHOP).field or content(topic, body, SHOP).passthrough


@pytest.mark.parametrize(
    ("topic", "body", "why"),
    [
        # The attack of issue 14: a paid order is not a cancellation.
        ("orders/cancelled", ORDER, "cancelled_at"),
        ("orders/create", CANCELLED, "cancelled order"),
        ("orders/paid", ORDER | {"financial_status": "pending"}, "paid order"),
        ("orders/cancelled", REFUND, "order_id"),
        ("refunds/create", ORDER, "line_items"),
        ("refunds/create", CANCELLED, "line_items"),
        ("refunds/create", {"id": 1, "order_id": 2}, "refund_line_items"),
        ("orders/create", {"line_items": []}, "id"),
        ("orders/create", ORDER | {"line_items": [{"quantity": 1.5, "price": "1"}]}, "whole"),
        ("orders/create", ORDER | {"line_items": [{"quantity": 1, "price": "abc"}]}, "number"),
        ("customers/update", ORDER, "line_items"),
        ("customers/update", fixture("app-uninstalled.json"), "myshopify_domain"),
        ("customers/redact", fixture("customers-redact.json") | {"shop_domain": "x"}, "shop"),
        ("customers/redact", fixture("shop-redact.json"), "customer"),
        ("shop/redact", fixture("customers-redact.json"), "customer"),
        ("app/uninstalled", fixture("shop-redact.json"), "myshopify_domain"),
        ("orders/teleported", ORDER, "no body rule"),
        (
            "customers/update",
            fixture("customers-create.json") | {"email_marketing_consent": "subscribed"},
            "email_marketing_consent is not an object",
        ),
        (
            "customers/update",
            fixture("customers-create.json")
            | {"email_marketing_consent": {"state": "subscribed", "consent_updated_at": 5}},
            "consent_updated_at is not a time",
        ),
    ],
)
def test_bodies_that_do_not_fit_their_topic_are_refused(
    topic: str, body: dict[str, Any], why: str
) -> None:
    with pytest.raises(UnfitBody, match=why):
        content(topic, body, SHOP)


def test_order_content_keeps_what_earning_needs_in_shop_money() -> None:
    found = content("orders/create", ORDER, SHOP)
    order = found.message
    assert isinstance(order, gateway_events.ShopifyOrder)
    assert (order.order_id, order.customer_id, order.currency) == (
        "5829301457001",
        "7390012230001",
        "USD",
    )
    assert order.financial_status == "paid" and list(order.discount_codes) == ["WELCOME10"]
    assert [
        (i.product_id, i.variant_id, i.quantity, i.price, i.discount) for i in order.line_items
    ] == [
        ("8123400001", "45012300001", 2, "30.00", "6.00"),
        ("8123400002", "45012300002", 1, "60.00", "6.00"),
    ]
    assert order.created_time.seconds > 0 and not order.HasField("cancelled_time")
    assert found.customer_data == gateway_events.CustomerData(
        email="ada.lovelace@example.com",
        phone="+14155550101",
        first_name="Ada",
        last_name="Lovelace",
    )


def test_guest_order_has_no_customer_data() -> None:
    guest = ORDER | {"customer": None}
    found = content("orders/create", guest, SHOP)
    assert found.customer_id == "" and found.customer_data is None


def test_same_snapshot_topics() -> None:
    assert "orders/cancelled" in compatible_topics("orders/updated")
    assert compatible_topics("refunds/create") == {"refunds/create"}
    assert "shop/redact" not in compatible_topics("customers/update")


def _delivery(topic: str, body: bytes) -> Delivery:
    headers = shopify_headers(body, topic=topic, shop_domain=SHOP, secret="s")
    return Delivery.parse(*topic.split("/"), headers, body)


@pytest.mark.parametrize(
    "name", ["orders-create.json", "refunds-create.json", "customers-redact.json"]
)
def test_event_carries_no_personal_data_in_clear(name: str) -> None:
    raw = shared_file("fixtures", "shopify", name).read_bytes()
    topic = {
        "orders-create.json": "orders/create",
        "refunds-create.json": "refunds/create",
        "customers-redact.json": "customers/redact",
    }[name]
    delivery = _delivery(topic, raw)
    found = content(topic, json.loads(raw), SHOP)
    sealed = gateway_events.SealedCustomerData(
        customer_id=found.customer_id, key_id="k", ciphertext=b"\x01sealed"
    )
    event = webhook_received(delivery, found, sealed if found.customer_data else None)
    assert event.payload_version == 2 and event.body == b""
    serialized = event.SerializeToString()
    for personal in (b"ada.lovelace@example.com", b"+14155550101", b"Lovelace", b"Socks too small"):
        assert personal not in serialized
    assert event.WhichOneof("content") == found.field


def test_bodies_without_personal_data_pass_through() -> None:
    body = json.dumps({"app_subscription": {"status": "ACTIVE", "name": "plus"}}).encode()
    found = content("app_subscriptions/update", json.loads(body), SHOP)
    assert found.passthrough
    headers = shopify_headers(body, topic="orders/create", shop_domain=SHOP, secret="s")
    delivery = Delivery.parse("orders", "create", headers, body)
    assert webhook_received(delivery, found).body == body


PRODUCT = {
    "id": 632910392,
    "title": "IPod Nano - 8GB",
    "vendor": "Apple",
    "product_type": "Cult Products",
    "updated_at": "2026-11-20T19:05:00-05:00",
    "tags": "Emotive, Flash Memory",
    "variants": [{"id": 808950810, "title": "Pink", "price": "199.00", "sku": "IPOD2008PINK"}],
}


@pytest.mark.parametrize("topic", ["products/create", "products/update"])
def test_product_bodies_pass_through_and_others_are_refused(topic: str) -> None:
    fitted = content(topic, PRODUCT, SHOP)
    assert fitted.passthrough and fitted.customer_id == ""
    for unfit in (ORDER, {"id": 1}, {**PRODUCT, "updated_at": None}, {**PRODUCT, "email": "x"}):
        with pytest.raises(UnfitBody):
            content(topic, unfit, SHOP)
    assert content("products/delete", {"id": 632910392}, SHOP).passthrough
    with pytest.raises(UnfitBody):
        content("products/delete", {"title": "no id"}, SHOP)
    # A new product's snapshot may come under both; an order's bytes never as a product.
    assert compatible_topics("products/create") == {"products/create", "products/update"}
    assert "orders/create" not in compatible_topics(topic)


def test_customer_content_keeps_the_email_marketing_state() -> None:
    """What the NEWSLETTER_SIGNUP rule needs: the state and when it was given, in clear (a
    preference, not contact data); the email itself stays sealed."""
    body = fixture("customers-create.json")
    found = content("customers/create", body, SHOP)
    assert isinstance(found.message, gateway_events.ShopifyCustomer)
    assert found.message.email_marketing_state == "subscribed"
    assert not found.message.HasField("email_marketing_consent_updated_time")
    given = {"state": "SUBSCRIBED", "consent_updated_at": "2026-12-01T10:00:00-05:00"}
    update = content("customers/update", body | {"email_marketing_consent": given}, SHOP)
    assert isinstance(update.message, gateway_events.ShopifyCustomer)
    assert update.message.email_marketing_state == "subscribed"
    assert update.message.email_marketing_consent_updated_time.ToJsonString() == (
        "2026-12-01T15:00:00Z"
    )
    bare = content("customers/update", {"id": 5}, SHOP)
    assert isinstance(bare.message, gateway_events.ShopifyCustomer)
    assert bare.message.email_marketing_state == ""
