"""What a Shopify order earns and what a refund takes back (services/points/orders.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.platform.program_settings import default_program
from loyalnest.services.points.orders import (
    MalformedOrder,
    OrderEarning,
    OrderStatus,
    cancellation_adjustment,
    order_totals,
    refund_adjustment,
)
from tests.shared import shared_file


def settings(
    rate: str = "1",
    rounding: core_pb2.PointsRounding.ValueType = core_pb2.POINTS_ROUNDING_DOWN,
    multipliers: dict[str, list[str]] | None = None,
) -> core_pb2.ProgramSettings:
    program = default_program()
    program.points_per_currency_unit = rate
    program.rounding = rounding
    for factor, products in (multipliers or {}).items():
        program.multipliers.add(collection_id="c", product_ids=products, multiplier=factor)
    return program


def line(product: int, quantity: int, price: str, *discounts: str) -> dict[str, Any]:
    return {
        "product_id": product,
        "quantity": quantity,
        "price": price,
        "discount_allocations": [{"amount": d} for d in discounts],
    }


def order(*lines: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": 1001,
        "customer": {"id": 42},
        "currency": "EUR",
        "line_items": list(lines),
    } | extra


def test_price_times_quantity_less_discounts_excluding_shipping_and_tax() -> None:
    totals = order_totals(
        order(
            line(1, 2, "19.99", "4.00"),
            line(2, 1, "10.00"),
            total_shipping_price_set={"shop_money": {"amount": "5.00"}},
            total_tax="7.00",
        ),
        settings(),
    )
    assert totals.eligible_amount == Decimal("45.98")
    assert totals.points == 45
    assert (totals.order_id, totals.customer_id, totals.currency) == ("1001", "42", "EUR")


def fixture(name: str) -> dict[str, Any]:
    path = shared_file("fixtures", "shopify", name)
    loaded: dict[str, Any] = json.loads(path.read_bytes())
    return loaded


def test_shopify_fixture_order_and_its_refund() -> None:
    # Two lines of 60.00 with 6.00 of WELCOME10 each (`total_discount`); tax and shipping out.
    totals = order_totals(fixture("orders-create.json"), settings())
    assert (totals.points, totals.eligible_amount) == (108, Decimal("108.00"))
    assert (totals.order_id, totals.customer_id) == ("5829301457001", "7390012230001")
    now = datetime.now(UTC)
    recorded = OrderEarning(
        "m", "5829301457001", "7390012230001", 108, Decimal("108.00"), "USD",
        OrderStatus.PENDING, now, now, 1,
    )  # fmt: skip
    adjustment = refund_adjustment(fixture("refunds-create.json"), recorded)
    assert (adjustment.adjustment_id, adjustment.points) == ("refund:930110002001", 54)


def test_shop_money_wins_over_presentment_prices() -> None:
    item = line(1, 1, "120.00") | {
        "price_set": {
            "shop_money": {"amount": "100.00", "currency_code": "EUR"},
            "presentment_money": {"amount": "120.00", "currency_code": "USD"},
        }
    }
    assert order_totals(order(item), settings()).points == 100


@pytest.mark.parametrize(
    ("rounding", "points"),
    [
        (core_pb2.POINTS_ROUNDING_DOWN, 15),
        (core_pb2.POINTS_ROUNDING_NEAREST, 16),
        (core_pb2.POINTS_ROUNDING_UP, 16),
        (core_pb2.POINTS_ROUNDING_UNSPECIFIED, 15),
    ],
)
def test_rounding_once_per_order(rounding: core_pb2.PointsRounding.ValueType, points: int) -> None:
    # 10.35 * 1.5 = 15.525
    assert order_totals(order(line(1, 1, "10.35")), settings("1.5", rounding)).points == points


def test_multipliers_apply_to_matching_products_only_highest_wins() -> None:
    program = settings(multipliers={"2": ["7"], "3": ["7", "gid://shopify/Product/8"]})
    totals = order_totals(order(line(7, 1, "10"), line(8, 1, "10"), line(9, 1, "10")), program)
    assert totals.points == 30 + 30 + 10


def test_discount_larger_than_the_line_earns_zero_not_negative() -> None:
    assert order_totals(order(line(1, 1, "5", "8")), settings()).points == 0


def test_guest_checkout_has_no_customer() -> None:
    assert order_totals(order(line(1, 1, "5"), customer=None), settings()).customer_id == ""


@pytest.mark.parametrize(
    "bad",
    [
        {"customer": {"id": 1}, "line_items": []},
        order(line(1, 1, "abc")),
        order(line(1, 1, "NaN")),
        order(line_items="nope"),
        order(line_items=["nope"]),
    ],
)
def test_unreadable_orders_are_malformed(bad: dict[str, Any]) -> None:
    with pytest.raises(MalformedOrder):
        order_totals(bad, settings())


def earning(points: int, amount: str) -> OrderEarning:
    now = datetime.now(UTC)
    return OrderEarning(
        "m", "1001", "42", points, Decimal(amount), "EUR", OrderStatus.PENDING, now, now, 1
    )


def test_refund_takes_back_the_refunded_share() -> None:
    refund = {
        "id": 5,
        "order_id": 1001,
        "refund_line_items": [{"subtotal_set": {"shop_money": {"amount": "25.00"}}}],
    }
    adjustment = refund_adjustment(refund, earning(99, "100.00"))
    assert (adjustment.adjustment_id, adjustment.points) == ("refund:5", 25)  # 24.75 half up


def test_shipping_only_refund_takes_back_nothing() -> None:
    refund = {"id": 6, "order_id": 1001, "refund_line_items": [], "shipping": {"amount": "5"}}
    assert refund_adjustment(refund, earning(100, "100")).points == 0


def test_cancellation_takes_back_everything() -> None:
    assert cancellation_adjustment(earning(70, "70")).points == 70


def test_version_1_body_and_version_2_content_earn_the_same() -> None:
    # During a rollout webhook.received events of both payload versions are in the topic.
    from loyalnest.platform.shopify_payloads import content

    raw = fixture("orders-create.json")
    v2 = content("orders/create", raw, "loyalnest-demo.myshopify.com").message
    assert order_totals(raw, settings("2")) == order_totals(v2, settings("2"))  # type: ignore[arg-type]
    refund = fixture("refunds-create.json")
    v2_refund = content("refunds/create", refund, "loyalnest-demo.myshopify.com").message
    recorded = earning(216, "108.00")
    assert refund_adjustment(refund, recorded) == refund_adjustment(v2_refund, recorded)  # type: ignore[arg-type]
