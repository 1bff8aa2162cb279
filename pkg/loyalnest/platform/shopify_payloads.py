"""Shopify webhook bodies: whether a body fits its topic, and what the mesh gets of it.

Shopify signs only the body; the topic (the URL path, `X-Shopify-Topic`), the shop and the
event id are unsigned headers. So the body itself must prove the topic: an `orders/cancelled`
body is a cancelled order (`cancelled_at` set), a `refunds/create` body a refund of an order
with its refund line items, the GDPR and shop bodies name the shop the delivery claims. A
captured `orders/paid` body replayed as `orders/cancelled` is refused here, whatever headers
come with it (`UnfitBody`).

What fits becomes `webhook.received`'s content (loyalnest.events.v1, payload version 2): ids,
line items, amounts in the shop's currency, times, statuses, and nothing personal. The
customer's personal data (email, phone, names) is returned apart (`Content.customer_data`) for
the edge to seal under that customer's key; addresses, notes and the rest of the body are
dropped.

The edge uses this on every delivery; Points uses the same readers for version-1 events (the
raw body) still in the topic during a rollout, so both read Shopify's JSON the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, urlsplit

from google.protobuf.message import Message

from loyalnest.gen.events.v1 import gateway_pb2 as gateway_events
from loyalnest.platform.protos import timestamp

PAYLOAD_VERSION = 2

ORDER_TOPICS = frozenset({"orders/create", "orders/paid", "orders/updated", "orders/cancelled"})
# Shopify sends one order snapshot under several of these (an order created paid: orders/create
# and orders/paid; a cancellation: orders/cancelled and orders/updated), so the same bytes under
# two of them is normal; under any other pair of topics it is a replay.
SAME_SNAPSHOT_TOPICS = ORDER_TOPICS
PRODUCT_TOPICS = frozenset({"products/create", "products/update", "products/delete"})
# A new product's snapshot may come as products/create and products/update alike.
SAME_PRODUCT_TOPICS = frozenset({"products/create", "products/update"})
# A paid order's financial_status (orders/paid); Shopify retries carry the original payload.
PAID_STATUSES = frozenset({"paid", "partially_paid", "partially_refunded", "refunded"})


class UnfitBody(ValueError):
    """The body (signed or not) is not what its topic sends."""


@dataclass(frozen=True)
class Content:
    """What a fitting body gives the mesh."""

    # The WebhookReceived `content` field set for the topic and its message; None for topics
    # forwarded as they are (`passthrough`).
    field: str | None
    message: Message | None
    # The Shopify customer the body concerns (the event's partition key), or "".
    customer_id: str
    # That customer's personal data from the body, to be sealed; None when there is none.
    customer_data: gateway_events.CustomerData | None = None
    # The body holds no personal data: forwarded byte for byte in `body`.
    passthrough: bool = False


# ---- readers ---------------------------------------------------------------------------


def _id(value: Any) -> str:
    """A Shopify id (a 64-bit integer, sometimes as a string), or ''."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return ""


def _required_id(payload: Mapping[str, Any], name: str, what: str) -> str:
    value = _id(payload.get(name))
    if not value:
        raise UnfitBody(f"{what} has no {name}")
    return value


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool):
        raise UnfitBody(f"{what} {value!r} is not a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise UnfitBody(f"{what} {value!r} is not a number") from exc
    if not number.is_finite():
        raise UnfitBody(f"{what} {value!r} is not a number")
    return number


def _shop_money(item: Mapping[str, Any], name: str) -> Decimal:
    """`item[name + "_set"].shop_money.amount`, else `item[name]`, else zero: amounts in the
    shop's currency, whatever the customer paid in."""
    money_set = item.get(f"{name}_set")
    if isinstance(money_set, Mapping):
        shop_money = money_set.get("shop_money")
        if isinstance(shop_money, Mapping) and "amount" in shop_money:
            return _decimal(shop_money["amount"], name)
    value = item.get(name)
    return Decimal(0) if value in (None, "") else _decimal(value, name)


def _line_discount(item: Mapping[str, Any]) -> Decimal:
    """Every discount on a line: `discount_allocations` (current payloads, order-level codes
    included), else the older `total_discount`."""
    allocations = item.get("discount_allocations")
    if isinstance(allocations, list):
        return sum(
            (_shop_money(a, "amount") for a in allocations if isinstance(a, Mapping)), Decimal(0)
        )
    return _shop_money(item, "total_discount")


def _quantity(value: Any, what: str) -> int:
    number = _decimal(value if value is not None else 0, what)
    if number != number.to_integral_value() or number < 0:
        raise UnfitBody(f"{what} {value!r} is not a whole number")
    return int(number)


def _time(payload: Mapping[str, Any], name: str) -> datetime | None:
    value = payload.get(name)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise UnfitBody(f"{name} is not a time")
    try:
        stamp = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UnfitBody(f"{name} {value!r} is not an ISO 8601 time") from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _set_time(message: Message, field: str, payload: Mapping[str, Any], name: str) -> None:
    stamp = _time(payload, name)
    if stamp is not None:
        getattr(message, field).CopyFrom(timestamp(stamp))


def _object(payload: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise UnfitBody(f"{name} is not an object")
    return value


def _list(payload: Mapping[str, Any], name: str, what: str) -> list[Any]:
    value = payload.get(name)
    if not isinstance(value, list):
        raise UnfitBody(f"{what} has no {name} list")
    return value


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _customer_data(*sources: Mapping[str, Any] | None) -> gateway_events.CustomerData | None:
    """Email, phone and names from the first source that has each; None if none has any."""
    data = gateway_events.CustomerData()
    for field in ("email", "phone", "first_name", "last_name"):
        for source in sources:
            value = _text(source.get(field)) if source is not None else ""
            if value:
                setattr(data, field, value)
                break
    return data if data.ByteSize() else None


def _refuse_keys(payload: Mapping[str, Any], what: str, *names: str) -> None:
    for name in names:
        if name in payload:
            raise UnfitBody(f"{what} does not have {name}: this is another topic's body")


def read_order(payload: Mapping[str, Any]) -> gateway_events.ShopifyOrder:
    """An order body (orders/*) as the mesh sees it; UnfitBody when it is not an order."""
    _refuse_keys(payload, "an order", "order_id", "refund_line_items")
    order = gateway_events.ShopifyOrder(
        order_id=_required_id(payload, "id", "the order"),
        currency=_text(payload.get("currency")),
        financial_status=_text(payload.get("financial_status")),
        cancel_reason=_text(payload.get("cancel_reason")),
        source_name=_text(payload.get("source_name")),
    )
    customer = _object(payload, "customer")
    if customer is not None:
        order.customer_id = _id(customer.get("id"))
    for item in _list(payload, "line_items", "the order"):
        if not isinstance(item, Mapping):
            raise UnfitBody("a line item is not an object")
        order.line_items.append(
            gateway_events.ShopifyLineItem(
                line_item_id=_id(item.get("id")),
                product_id=_id(item.get("product_id")),
                variant_id=_id(item.get("variant_id")),
                quantity=_quantity(item.get("quantity"), "quantity"),
                price=str(_shop_money(item, "price")),
                discount=str(_line_discount(item)),
            )
        )
    codes = payload.get("discount_codes")
    if isinstance(codes, list):
        order.discount_codes.extend(
            _text(c.get("code")) for c in codes if isinstance(c, Mapping) and _text(c.get("code"))
        )
    _set_time(order, "created_time", payload, "created_at")
    _set_time(order, "processed_time", payload, "processed_at")
    _set_time(order, "cancelled_time", payload, "cancelled_at")
    order.landing_site_ref = _landing_site_ref(payload.get("landing_site"))
    return order


def _landing_site_ref(landing_site: Any) -> str:
    """Only `ref` of the landing page's query (a referral code, for Referrals): the rest of
    the URL may carry a visitor's tracking parameters, which no consumer needs."""
    if not isinstance(landing_site, str) or "ref=" not in landing_site:
        return ""
    values = parse_qs(urlsplit(landing_site).query).get("ref")
    return values[0][:64] if values else ""


def read_refund(payload: Mapping[str, Any]) -> gateway_events.ShopifyRefund:
    """A refunds/create body; UnfitBody when it is not a refund of an order."""
    _refuse_keys(payload, "a refund", "line_items", "cancelled_at")
    refund = gateway_events.ShopifyRefund(
        refund_id=_required_id(payload, "id", "the refund"),
        order_id=_required_id(payload, "order_id", "the refund"),
    )
    for item in _list(payload, "refund_line_items", "the refund"):
        if not isinstance(item, Mapping):
            raise UnfitBody("a refund line item is not an object")
        refund.refund_line_items.append(
            gateway_events.ShopifyRefundLineItem(
                line_item_id=_id(item.get("line_item_id")),
                quantity=_quantity(item.get("quantity"), "quantity"),
                subtotal=str(_shop_money(item, "subtotal")),
            )
        )
    _set_time(refund, "created_time", payload, "created_at")
    return refund


# ---- topics ----------------------------------------------------------------------------


def _same_shop(payload: Mapping[str, Any], name: str, shop_domain: str) -> None:
    claimed = _text(payload.get(name)).lower()
    if not claimed:
        raise UnfitBody(f"the body has no {name}")
    if claimed != shop_domain:
        raise UnfitBody(f"the body's {name} is not the delivery's shop")


def _order_content(topic: str) -> Callable[[Mapping[str, Any], str], Content]:
    def fit(payload: Mapping[str, Any], shop_domain: str) -> Content:
        order = read_order(payload)
        cancelled = order.HasField("cancelled_time")
        if topic == "orders/cancelled" and not cancelled:
            raise UnfitBody("an orders/cancelled body has cancelled_at")
        if topic in ("orders/create", "orders/paid") and cancelled:
            raise UnfitBody(f"a {topic} body is not a cancelled order")
        if topic == "orders/paid" and order.financial_status not in PAID_STATUSES:
            raise UnfitBody("an orders/paid body is a paid order (financial_status)")
        customer = payload.get("customer")
        data = (
            _customer_data(customer if isinstance(customer, Mapping) else None, payload)
            if order.customer_id
            else None  # a guest: nobody's key to seal it under, and nobody needs it
        )
        return Content("order", order, order.customer_id, data)

    return fit


def _refund_content(payload: Mapping[str, Any], shop_domain: str) -> Content:
    return Content("refund", read_refund(payload), "")


def read_customer(payload: Mapping[str, Any]) -> gateway_events.ShopifyCustomer:
    """A customer body (customers/create, customers/update) without its personal data;
    UnfitBody when it is not a customer."""
    _refuse_keys(payload, "a customer", "line_items", "order_id", "myshopify_domain")
    customer = gateway_events.ShopifyCustomer(
        customer_id=_required_id(payload, "id", "the customer")
    )
    _set_time(customer, "created_time", payload, "created_at")
    _set_time(customer, "updated_time", payload, "updated_at")
    consent = _object(payload, "email_marketing_consent")
    if consent is not None:
        customer.email_marketing_state = _text(consent.get("state")).lower()
        _set_time(customer, "email_marketing_consent_updated_time", consent, "consent_updated_at")
    return customer


def _customer_content(payload: Mapping[str, Any], shop_domain: str) -> Content:
    customer = read_customer(payload)
    return Content("customer", customer, customer.customer_id, _customer_data(payload))


def _privacy_content(orders_field: str) -> Callable[[Mapping[str, Any], str], Content]:
    def fit(payload: Mapping[str, Any], shop_domain: str) -> Content:
        _same_shop(payload, "shop_domain", shop_domain)
        customer = _object(payload, "customer")
        if customer is None:
            raise UnfitBody("the request names no customer")
        request = gateway_events.ShopifyPrivacyRequest(
            customer_id=_required_id(customer, "id", "the customer")
        )
        for order_id in _list(payload, orders_field, "the request"):
            if not _id(order_id):
                raise UnfitBody(f"{orders_field} holds something other than order ids")
            request.order_ids.append(_id(order_id))
        data_request = _object(payload, "data_request")
        if data_request is not None:
            request.data_request_id = _id(data_request.get("id"))
        return Content("privacy_request", request, request.customer_id, _customer_data(customer))

    return fit


def _shop_redact_content(payload: Mapping[str, Any], shop_domain: str) -> Content:
    _same_shop(payload, "shop_domain", shop_domain)
    _refuse_keys(payload, "shop/redact", "customer")
    return Content(
        "shop", gateway_events.ShopifyShop(shop_id=_required_id(payload, "shop_id", "it")), ""
    )


def _uninstalled_content(payload: Mapping[str, Any], shop_domain: str) -> Content:
    # The shop object: its owner's email and address are the merchant's, and nobody needs them.
    _same_shop(payload, "myshopify_domain", shop_domain)
    return Content(
        "shop", gateway_events.ShopifyShop(shop_id=_required_id(payload, "id", "the shop")), ""
    )


def _product_content(topic: str) -> Callable[[Mapping[str, Any], str], Content]:
    # The catalogue (Products): titles, variants, prices, nothing personal, forwarded as it
    # is. products/delete carries the id alone.
    def fit(payload: Mapping[str, Any], shop_domain: str) -> Content:
        _refuse_keys(payload, "a product", "line_items", "order_id", "email", "customer")
        _required_id(payload, "id", "the product")
        if topic != "products/delete":
            if not isinstance(payload.get("title"), str) or _time(payload, "updated_at") is None:
                raise UnfitBody("a product has a title and updated_at")
            _list(payload, "variants", "the product")
        return Content(None, None, "", passthrough=True)

    return fit


def _subscription_content(payload: Mapping[str, Any], shop_domain: str) -> Content:
    # Shopify Billing (app_subscriptions/update): a subscription's name, status and amounts,
    # nothing personal, forwarded as it is.
    if _object(payload, "app_subscription") is None:
        raise UnfitBody("the body has no app_subscription")
    return Content(None, None, "", passthrough=True)


FIT: dict[str, Callable[[Mapping[str, Any], str], Content]] = {
    **{topic: _order_content(topic) for topic in ORDER_TOPICS},
    "refunds/create": _refund_content,
    "customers/create": _customer_content,
    "customers/update": _customer_content,
    "customers/data_request": _privacy_content("orders_requested"),
    "customers/redact": _privacy_content("orders_to_redact"),
    "shop/redact": _shop_redact_content,
    "app/uninstalled": _uninstalled_content,
    "app_subscriptions/update": _subscription_content,
    **{topic: _product_content(topic) for topic in PRODUCT_TOPICS},
}


def content(topic: str, payload: Mapping[str, Any], shop_domain: str) -> Content:
    """What the body of a `topic` delivery for `shop_domain` gives the mesh; UnfitBody when it
    is not that topic's body (or the topic has no rule: refused rather than forwarded)."""
    fit = FIT.get(topic)
    if fit is None:
        raise UnfitBody(f"no body rule for {topic}")
    return fit(payload, shop_domain.lower())


def compatible_topics(topic: str) -> frozenset[str]:
    """The topics the same body bytes may also have been accepted under."""
    if topic in SAME_SNAPSHOT_TOPICS:
        return SAME_SNAPSHOT_TOPICS
    return SAME_PRODUCT_TOPICS if topic in SAME_PRODUCT_TOPICS else frozenset({topic})
