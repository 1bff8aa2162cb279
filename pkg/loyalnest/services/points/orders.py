"""Points from Shopify orders: what an order earns and what a refund or cancellation takes back.

Pure functions of the orders and refunds webhook.received carries (`ShopifyOrder`,
`ShopifyRefund`; a version-1 event's raw JSON is read into them) and the merchant's
`ProgramSettings`; storage and scheduling live in `earning.py`. Amounts are in the shop's
currency (the edge takes `*_set.shop_money`, falling back to the plain field, which Shopify also
gives in shop currency): a customer paying in another presentment currency earns the same as
one paying in the shop's.

What counts: each line item's price times its quantity, less every discount allocated to
it (line-level and order-level codes alike: Shopify allocates both onto the lines, in
`discount_allocations`, or in `total_discount` in older payloads). Shipping,
taxes and tips earn nothing. A line item whose product is in a multiplier's collection earns
that multiplier (the highest, when several match). Rounding is applied once per order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.gen.events.v1 import gateway_pb2 as gateway_events
from loyalnest.platform import shopify_payloads
from loyalnest.services.points.domain import MAX_POINTS_PER_TRANSACTION
from loyalnest.services.points.rules import OrderFacts

ORDER_REASON_PREFIX = "order:"
_ROUNDING = {
    core_pb2.POINTS_ROUNDING_DOWN: ROUND_FLOOR,
    core_pb2.POINTS_ROUNDING_NEAREST: ROUND_HALF_UP,
    core_pb2.POINTS_ROUNDING_UP: ROUND_CEILING,
}


class MalformedOrder(ValueError):
    """The payload is not an order (or refund) this code can read: a permanent failure."""


class OrderStatus(StrEnum):
    PENDING = "pending"  # within the pending period (the return window): not spendable yet
    APPROVING = "approving"  # the credit is being posted (its amount is fixed)
    APPROVED = "approved"  # credited to the ledger
    NOT_EARNING = "not_earning"  # recorded so refunds find it, but it earns nothing (`note`)


@dataclass(frozen=True)
class OrderEarning:
    merchant_id: str
    order_id: str
    customer_id: str
    # What the order earns as computed when it arrived; adjustments take from it.
    points: int
    # The amount the points were computed from: refunds take back a share of it.
    eligible_amount: Decimal
    currency: str
    status: OrderStatus
    approve_at: datetime
    created_at: datetime
    settings_version: int
    # Why a NOT_EARNING order earns nothing, e.g. "over_plan_limit".
    note: str = ""
    # Set when approving: points minus the adjustments recorded before approval.
    approved_points: int = 0
    # What each earning rule gave: "rule:points,..." (rules.awards_text).
    awards: str = ""
    # What the rules saw of it, kept so a draft rule set can be replayed on it (simulation.py):
    # the eligible amount times the collection multipliers (None: recorded before it was
    # kept, then the eligible amount), and whether it came from the point of sale.
    weighted_amount: Decimal | None = None
    pos: bool = False


@dataclass(frozen=True)
class OrderAdjustment:
    """Points taken back from an order: a refund (`refund:<id>`) or its cancellation."""

    adjustment_id: str
    points: int  # positive: the amount taken back
    reason: str
    applied: bool = False


@dataclass(frozen=True)
class OrderSettlement:
    """An order and its adjustments, oldest first."""

    earning: OrderEarning
    adjustments: list[OrderAdjustment] = field(default_factory=list)

    @property
    def unapplied(self) -> list[OrderAdjustment]:
        """Adjustments not yet in the ledger."""
        return [a for a in self.adjustments if not a.applied]

    @property
    def taken_back(self) -> int:
        return sum(a.points for a in self.adjustments)


@dataclass(frozen=True)
class OrderTotals:
    order_id: str
    customer_id: str  # "" for a guest checkout: nobody to credit
    points: int
    eligible_amount: Decimal
    currency: str
    # The eligible amount with each line times its collection multiplier (rules.py rates it).
    weighted: Decimal = Decimal(0)


def order_reason(order_id: str) -> str:
    """The reason of the order's credit; Core counts rewarded orders from it."""
    return f"{ORDER_REASON_PREFIX}{order_id}"


def _decimal(value: Any, what: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise MalformedOrder(f"{what} {value!r} is not a number") from exc
    if not number.is_finite():
        raise MalformedOrder(f"{what} {value!r} is not a number")
    return number


Order = gateway_events.ShopifyOrder | Mapping[str, Any]
Refund = gateway_events.ShopifyRefund | Mapping[str, Any]


def as_order(order: Order) -> gateway_events.ShopifyOrder:
    """The order as webhook.received v2 carries it; a v1 event's raw body (still in the topic
    during a rollout) is read the way the edge reads it now."""
    if isinstance(order, gateway_events.ShopifyOrder):
        return order
    try:
        return shopify_payloads.read_order(order)
    except shopify_payloads.UnfitBody as exc:
        raise MalformedOrder(str(exc)) from exc


def as_refund(refund: Refund) -> gateway_events.ShopifyRefund:
    if isinstance(refund, gateway_events.ShopifyRefund):
        return refund
    try:
        return shopify_payloads.read_refund(refund)
    except shopify_payloads.UnfitBody as exc:
        raise MalformedOrder(str(exc)) from exc


def _multipliers(settings: core_pb2.ProgramSettings) -> dict[str, Decimal]:
    by_product: dict[str, Decimal] = {}
    for rule in settings.multipliers:
        factor = _decimal(rule.multiplier or "1", "multiplier")
        for product_id in rule.product_ids:
            by_product[product_id] = max(factor, by_product.get(product_id, factor))
    return by_product


def _product_keys(product_id: str) -> tuple[str, str]:
    # Rules may name products by numeric id or by global id; orders carry the numeric one.
    return product_id, f"gid://shopify/Product/{product_id}"


def order_totals(order: Order, settings: core_pb2.ProgramSettings) -> OrderTotals:
    """What `order` (of orders/create or orders/paid) earns under `settings`."""
    order = as_order(order)
    if not order.order_id:
        raise MalformedOrder("the order has no id")
    rate = _decimal(settings.points_per_currency_unit or "1", "points_per_currency_unit")
    multipliers = _multipliers(settings)
    eligible = Decimal(0)
    weighted = Decimal(0)
    for item in order.line_items:
        price = _decimal(item.price or "0", "price")
        discount = _decimal(item.discount or "0", "discount")
        amount = max(price * item.quantity - discount, Decimal(0))
        factor = max(
            (multipliers.get(key, Decimal(1)) for key in _product_keys(item.product_id)),
            default=Decimal(1),
        )
        eligible += amount
        weighted += amount * factor
    points = int((weighted * rate).to_integral_value(_ROUNDING.get(settings.rounding, ROUND_FLOOR)))
    return OrderTotals(
        order_id=order.order_id,
        customer_id=order.customer_id,
        points=min(max(points, 0), MAX_POINTS_PER_TRANSACTION),
        eligible_amount=eligible,
        currency=order.currency,
        weighted=weighted,
    )


def refund_order_id(refund: Refund) -> str:
    order_id = as_refund(refund).order_id
    if not order_id:
        raise MalformedOrder("the refund has no order_id")
    return order_id


def refund_adjustment(refund: Refund, earning: OrderEarning) -> OrderAdjustment:
    """The share of the order's points a refund takes back: the refunded line items'
    subtotal over the order's eligible amount (rounded half up). A refund of shipping alone
    takes back nothing."""
    refund = as_refund(refund)
    if not refund.refund_id:
        raise MalformedOrder("the refund has no id")
    refunded = sum(
        (_decimal(item.subtotal or "0", "subtotal") for item in refund.refund_line_items),
        Decimal(0),
    )
    if earning.eligible_amount <= 0:
        share = 0
    else:
        fraction = min(refunded / earning.eligible_amount, Decimal(1))
        share = int((earning.points * fraction).to_integral_value(ROUND_HALF_UP))
    return OrderAdjustment(
        adjustment_id=f"refund:{refund.refund_id}", points=share, reason="refunded"
    )


def cancellation_adjustment(earning: OrderEarning) -> OrderAdjustment:
    """orders/cancelled takes back everything the order still holds (the store caps it)."""
    return OrderAdjustment(adjustment_id="cancelled", points=earning.points, reason="cancelled")


def order_facts(
    order: Order,
    totals: OrderTotals,
    now: datetime,
    *,
    placed_time: bool = True,
    tier_id: str = "",
    segment: str = "",
) -> OrderFacts:
    """What the earning rules see of an order: its amounts, channel and time (the order's
    creation time only if `placed_time`: no rule with a window, no need to read it)."""
    order = as_order(order)
    placed = (
        order.created_time.ToDatetime(UTC)
        if placed_time and order.HasField("created_time")
        else now
    )
    channel = (
        core_pb2.SALES_CHANNEL_POS if order.source_name == "pos" else core_pb2.SALES_CHANNEL_ONLINE
    )
    return OrderFacts(
        order_id=totals.order_id,
        customer_id=totals.customer_id,
        eligible=totals.eligible_amount,
        weighted=totals.weighted,
        channel=channel,
        placed_at=placed,
        base_points=totals.points,
        tier_id=tier_id,
        segment=segment,
    )
