"""Campaign's rules without I/O: what a valid campaign is, its clock, eligibility; Products'
reading of Shopify's product shapes and of an order's sales."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from loyalnest.gen.campaign.v1 import campaign_pb2 as pb
from loyalnest.gen.events.v1 import gateway_pb2, rfm_pb2
from loyalnest.services.campaign.domain import (
    ACTIVE,
    ENDED,
    SCHEDULED,
    Campaign,
    CartView,
    applies,
    campaign_problems,
    derived_code,
    eligibility_entry,
    time_state,
)
from loyalnest.services.campaign.shopify import discount_input
from loyalnest.services.products.domain import from_graphql, from_webhook, order_sales

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)


def campaign(**changes: object) -> Campaign:
    base = Campaign(
        campaign_id="3f1c2a8e-5b7d-4c3e-9a61-2d8f0b7e6c15",
        merchant_id="m-1",
        name="Win back",
        kind=pb.CAMPAIGN_KIND_SHARED_CODE,
        code="WINBACK",
        rules=pb.DiscountRules(type=pb.DISCOUNT_TYPE_PERCENTAGE, value="12.5"),
        audience=pb.Audience(rfm_segments=[rfm_pb2.RFM_SEGMENT_AT_RISK]),
        start_at=NOW - timedelta(days=1),
        end_at=NOW + timedelta(days=1),
        state=ACTIVE,
        shopify_discount_id="gid://shopify/DiscountCodeNode/1",
        created_at=NOW,
        updated_at=NOW,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def cart(subtotal: str = "100", products: tuple[str, ...] = ()) -> CartView:
    return CartView(Decimal(subtotal), frozenset(products), frozenset())


def test_eligibility_by_state_time_segment_minimum_and_products() -> None:
    entry = eligibility_entry(campaign())
    now = NOW.timestamp()
    assert applies(entry, "RFM_SEGMENT_AT_RISK", cart(), now)
    assert not applies(entry, "RFM_SEGMENT_NEW", cart(), now)
    assert not applies(entry, None, cart(), now)
    assert not applies(entry, "RFM_SEGMENT_AT_RISK", cart(), now + 2 * 86400)  # ended
    assert not applies(
        eligibility_entry(campaign(state=SCHEDULED)), "RFM_SEGMENT_AT_RISK", cart(), now
    )
    everyone = campaign(
        audience=pb.Audience(all_customers=True),
        rules=pb.DiscountRules(
            type=pb.DISCOUNT_TYPE_FIXED_AMOUNT, value="5", minimum_subtotal="50", product_ids=["7"]
        ),
    )
    entry = eligibility_entry(everyone)
    assert applies(entry, None, cart("50", ("7",)), now)
    assert not applies(entry, None, cart("49.99", ("7",)), now)
    assert not applies(entry, None, cart("80", ("8",)), now)


def test_the_clock_moves_live_campaigns() -> None:
    scheduled = campaign(state=SCHEDULED, start_at=NOW + timedelta(hours=1))
    assert time_state(scheduled, NOW) == SCHEDULED
    assert time_state(scheduled, NOW + timedelta(hours=2)) == ACTIVE
    assert time_state(campaign(), NOW + timedelta(days=2)) == ENDED


def test_derived_codes_are_stable_per_campaign() -> None:
    assert derived_code("m-1", "c-1") == derived_code("m-1", "c-1")
    assert derived_code("m-1", "c-1") != derived_code("m-2", "c-1")


def test_shopify_input_of_a_segment_code() -> None:
    sent = discount_input(campaign(), "WINBACK", ["7001"], NOW)
    assert sent["customerSelection"] == {"customers": {"add": ["gid://shopify/Customer/7001"]}}
    assert sent["customerGets"]["value"] == {"percentage": 0.125}
    assert sent["code"] == "WINBACK" and sent["endsAt"].startswith("2026-12-07")
    automatic = campaign(kind=pb.CAMPAIGN_KIND_AUTOMATIC, audience=pb.Audience(all_customers=True),
                         rules=pb.DiscountRules(type=pb.DISCOUNT_TYPE_FREE_SHIPPING))  # fmt: skip
    sent = discount_input(automatic, "", [], NOW)
    assert "code" not in sent and "customerSelection" not in sent
    assert sent["destination"] == {"all": True}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "x\n"}, "campaign.name"),
        ({"code": "lower"}, "campaign.code"),
        ({"rules": pb.DiscountRules(type=pb.DISCOUNT_TYPE_PERCENTAGE, value="0")},
         "campaign.rules.value"),
        ({"rules": pb.DiscountRules(type=pb.DISCOUNT_TYPE_PERCENTAGE, value="5",
                                    product_ids=["1"], collection_ids=["2"])},
         "campaign.rules.collection_ids"),
        ({"audience": pb.Audience(all_customers=True, rfm_segments=[1])}, "campaign.audience"),
    ],
)  # fmt: skip
def test_campaign_problems(changes: dict[str, object], field: str) -> None:
    message = pb.Campaign(
        name="Fine",
        kind=pb.CAMPAIGN_KIND_SHARED_CODE,
        rules=pb.DiscountRules(type=pb.DISCOUNT_TYPE_PERCENTAGE, value="10"),
        audience=pb.Audience(all_customers=True),
    )
    assert campaign_problems(message, None, None) == []
    for name, value in changes.items():
        if isinstance(value, str):
            setattr(message, name, value)
        else:
            getattr(message, name).CopyFrom(value)
    assert field in [f for f, _ in campaign_problems(message, None, None)]
    assert [f for f, _ in campaign_problems(message, NOW, NOW)].count("campaign.end_time") == 1


def test_products_read_from_graphql_and_webhooks() -> None:
    node = {
        "id": "gid://shopify/Product/42",
        "title": "Hat",
        "tags": ["a"],
        "updatedAt": "2026-12-01T00:00:00Z",
        "variants": {"nodes": [{"id": "gid://shopify/ProductVariant/421", "price": "9.00"}]},
        "collections": {"nodes": [{"id": "gid://shopify/Collection/7"}]},
    }
    product = from_graphql(node)
    assert (product.product_id, product.collection_ids, product.variants[0].variant_id) == (
        "42", ("7",), "421",
    )  # fmt: skip
    hooked = from_webhook(
        {"id": 42, "title": "Hat", "tags": "a, b", "updated_at": "2026-12-01T00:00:00Z"}
    )
    assert hooked.tags == ("a", "b") and hooked.collection_ids is None
    assert hooked.search_text().split() == ["hat", "a", "b"]


def test_order_sales_per_product_after_discounts() -> None:
    order = gateway_pb2.ShopifyOrder(
        order_id="1",
        line_items=[
            gateway_pb2.ShopifyLineItem(product_id="5", quantity=2, price="10.005", discount="1"),
            gateway_pb2.ShopifyLineItem(product_id="5", quantity=1, price="3", discount="0"),
            gateway_pb2.ShopifyLineItem(product_id="", quantity=1, price="2"),
            gateway_pb2.ShopifyLineItem(product_id="6", quantity=1, price="2", discount="5"),
        ],
    )
    sales = {s.product_id: (s.quantity, s.revenue_minor) for s in order_sales(order)}
    assert sales == {"5": (3, 1901 + 300), "6": (1, 0)}


def test_times_beyond_a_datetime_are_invalid_not_internal() -> None:
    from loyalnest.services.campaign.wire import times_of

    message = pb.Campaign(
        name="Far", kind=pb.CAMPAIGN_KIND_SHARED_CODE,
        rules=pb.DiscountRules(type=pb.DISCOUNT_TYPE_FREE_SHIPPING),
        audience=pb.Audience(all_customers=True),
    )  # fmt: skip
    message.end_time.seconds = 2**62
    assert times_of(message) == (None, None)
    assert "campaign.end_time" in [f for f, _ in campaign_problems(message, *times_of(message))]
