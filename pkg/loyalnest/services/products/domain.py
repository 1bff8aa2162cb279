"""Rules of the Products service, without I/O: a product as Shopify describes it (GraphQL
node or webhook body), what ListProducts searches, and what an order's lines add to each
product's RFM."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from loyalnest.gen.events.v1 import gateway_pb2 as gateway_events
from loyalnest.platform.errors import NotFound

SHOPIFY_ID_RE = re.compile(r"[0-9]{1,20}")
_GID_RE = re.compile(r"gid://shopify/[A-Za-z]+/([0-9]{1,20})")
MAX_QUERY_LENGTH = 200


class ProductNotFound(NotFound):
    def __init__(self, product_id: str) -> None:
        super().__init__("product", product_id)


class NeverSold(NotFound):
    def __init__(self, product_id: str) -> None:
        super().__init__("product_rfm", product_id)


class UnfitProduct(ValueError):
    """Not a product as Shopify sends one (a webhook body that passed the edge's checks but
    lacks what Products needs, or a GraphQL node of another shape)."""


@dataclass(frozen=True)
class Variant:
    variant_id: str
    title: str
    sku: str
    price: str


@dataclass(frozen=True)
class Product:
    product_id: str
    title: str
    handle: str
    vendor: str
    product_type: str
    status: str
    tags: tuple[str, ...]
    variants: tuple[Variant, ...]
    updated_at: datetime
    # None: not known from this source (webhooks do not carry collections).
    collection_ids: tuple[str, ...] | None = None

    def search_text(self) -> str:
        return " ".join((self.title, self.vendor, self.product_type, *self.tags)).lower()


def numeric_id(value: Any) -> str:
    """Shopify's numeric id from a number, a digit string or a GID; "" for anything else."""
    if isinstance(value, bool):
        return ""
    text = str(value) if isinstance(value, int | str) else ""
    match = _GID_RE.fullmatch(text)
    if match:
        return match.group(1)
    return text if SHOPIFY_ID_RE.fullmatch(text) else ""


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise UnfitProduct("updated_at is not a time")
    try:
        stamp = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise UnfitProduct(f"updated_at {value!r} is not a time") from exc
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def from_graphql(node: Mapping[str, Any]) -> Product:
    """A `products` connection node (Admin GraphQL)."""
    product_id = numeric_id(node.get("id"))
    if not product_id:
        raise UnfitProduct("a product node without an id")
    variants = tuple(
        Variant(numeric_id(v.get("id")), _text(v.get("title")), _text(v.get("sku")),
                _text(v.get("price")))
        for v in (node.get("variants") or {}).get("nodes") or []
    )  # fmt: skip
    collection_nodes = (node.get("collections") or {}).get("nodes") or []
    collections = tuple(c for c in (numeric_id(n.get("id")) for n in collection_nodes) if c)
    return Product(
        product_id=product_id,
        title=_text(node.get("title")),
        handle=_text(node.get("handle")),
        vendor=_text(node.get("vendor")),
        product_type=_text(node.get("productType")),
        status=_text(node.get("status")).upper(),
        tags=tuple(t for t in node.get("tags") or [] if isinstance(t, str)),
        variants=variants,
        updated_at=_time(node.get("updatedAt")),
        collection_ids=collections,
    )


def from_webhook(body: Mapping[str, Any]) -> Product:
    """A products/create or products/update body (Shopify's REST representation)."""
    product_id = numeric_id(body.get("id"))
    if not product_id:
        raise UnfitProduct("a product without an id")
    tags = body.get("tags")
    tag_list = (
        [t.strip() for t in tags.split(",") if t.strip()]
        if isinstance(tags, str)
        else [t for t in tags or [] if isinstance(t, str)]
    )
    variants = tuple(
        Variant(numeric_id(v.get("id")), _text(v.get("title")), _text(v.get("sku")),
                str(v.get("price") or ""))
        for v in body.get("variants") or [] if isinstance(v, Mapping)
    )  # fmt: skip
    return Product(
        product_id=product_id,
        title=_text(body.get("title")),
        handle=_text(body.get("handle")),
        vendor=_text(body.get("vendor")),
        product_type=_text(body.get("product_type")),
        status=_text(body.get("status")).upper(),
        tags=tuple(tag_list),
        variants=variants,
        updated_at=_time(body.get("updated_at")),
    )


def query_words(query: str) -> list[str]:
    return [w for w in query.lower().split() if w]


# ---- sales and product RFM -----------------------------------------------------------------


@dataclass
class Sale:
    """What one order adds to one product's sales."""

    product_id: str
    quantity: int = 0
    revenue_minor: int = 0


def _minor(amount: Decimal) -> int:
    # Two decimals, as the shop money of most currencies (a zero-decimal currency's amounts
    # carry no fraction, so they scale the same way).
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text or "0")
    except InvalidOperation:
        return Decimal(0)
    return value if value.is_finite() else Decimal(0)


def order_sales(order: gateway_events.ShopifyOrder) -> list[Sale]:
    """Per product, the quantity and revenue (line price x quantity less its discounts) of an
    order; lines without a product (custom items, tips) are left out."""
    by_product: dict[str, Sale] = {}
    for line in order.line_items:
        if not numeric_id(line.product_id):
            continue
        sale = by_product.setdefault(line.product_id, Sale(line.product_id))
        sale.quantity += line.quantity
        amount = _decimal(line.price) * line.quantity - _decimal(line.discount)
        sale.revenue_minor += _minor(max(amount, Decimal(0)))
    return list(by_product.values())


@dataclass(frozen=True)
class ProductRfm:
    product_id: str
    last_order_at: datetime
    frequency: int
    buyers: int
    monetary_minor: int
    currency: str
    buyer_segments: dict[str, int] = field(default_factory=dict)

    def score_key(self) -> tuple[datetime, int, int, int, str]:
        """What product_rfm.updated announces a change of."""
        return (self.last_order_at, self.frequency, self.buyers, self.monetary_minor, self.currency)


def recency_days(last_order_at: datetime, now: datetime) -> float:
    return max((now - last_order_at).total_seconds(), 0.0) / 86400
