"""A local stand-in for Shopify's Admin GraphQL API (DESIGN §7), started by the tests and by
`loyalnest up` (`python -m loyalnest.devstack.standins.shopify_admin`, on the OAuth
stand-in's port: it is that stand-in too).

It extends the OAuth stand-in (same server, same shop-as-path base URL), so one server can
play both parts of a shop: the access tokens its OAuth part hands out (install, refresh) are
accepted until they expire, besides those configured in `tokens`.

`POST /{shop}/admin/api/{version}/graphql.json` with `X-Shopify-Access-Token`: a wrong token
gets 401, a locked shop 423. It answers `discountCodeBasicCreate`,
`discountCodeFreeShippingCreate` (a code already present: userErrors `TAKEN`) and
`codeDiscountNodeByCode`; `discountAutomaticBasicCreate` and `discountAutomaticFreeShippingCreate`
(at most 25 automatic discounts ACTIVE or SCHEDULED per shop: userErrors `ACTIVE_PERIOD_OVERLAP`),
`discountCodeActivate`/`discountCodeDeactivate`, `discountAutomaticActivate`/
`discountAutomaticDeactivate` (deactivating ends the discount now: status EXPIRED; activating
starts it now: ACTIVE), `discountCodeBasicUpdate`/`discountCodeFreeShippingUpdate` of a code's
customer list (`customerSelection.customers` `add`/`remove`), `discountRedeemCodeBulkAdd` (more
codes for a code discount, existing ones skipped), `discountNode(id:)` (its status
and title) and `discountNodes(first:, query:)` for the filters `method:automatic`,
`status:active` and `title:'...'`. The merchant's side: `set_discount_status` (a change made
in Shopify's admin, for drift).

Products: `products(first:, after:, query:, sortKey: UPDATED_AT)` over `products[shop]`
(`add_product` / `touch_product`), at most 250 a page (more: a GraphQL error, as Shopify's
"first" limit), opaque cursors, the filter `updated_at:>'ISO'` / `updated_at:>='ISO'`; each
answer carries `extensions.cost`, and the shop's leaky bucket (`bucket_size`, `restore_rate`
points/s; a query costs 2 + one point per product asked for) answers `THROTTLED` (with the
real figures) when it cannot pay.

A discount's `customerSelection` must be `{"all": true}` or
`{"customers": {"add": [<Customer GID>...]}}` (else userErrors `INVALID`), as in API 2025-10.
Faults for tests: `unavailable` (503 to every call), `fail_next` (503 to the next N calls),
`lose_next_answer` (create the code, then answer 503 as if the reply was lost;
`lose_answer_of` the same for the next call of one operation),
`throttle_next` (the next N queries are not run: `THROTTLED` in `errors` with the cost
extension, as 200, or as 429 with `throttle_status=429`), `stall_mutations` (apply every
mutation, then answer only after that many seconds: a client with a shorter timeout never sees
the answer; queries answer at once).

Reward conditions: a code discount's `startsAt` is required and `endsAt` must follow it
(`END_DATE_BEFORE_START_DATE`); `minimumRequirement` is a positive subtotal or quantity;
a basic discount's `customerGets` has one value (percentage 0-1, or a positive
`discountAmount`) and items that are all, products (`productsToAdd` / `productVariantsToAdd`
GIDs) or collections (`add`), one of them (else userErrors `INVALID`, `GREATER_THAN`,
`VALUE_OUTSIDE_RANGE`). `checkout(shop, code, customer, lines)` applies a code to a cart as
Shopify's checkout does (status, start and end, usage limit, customer, minimum subtotal,
entitled items, one amount off per order unless `appliesOnEachItem`) or raises CodeRefused
with the buyer's message. `productVariant(id:)` answers a variant of `products` with its
price. Gift cards: `giftCardCreate` (`initialValue` > 0, else `GREATER_THAN`; a given `code`
of 8-20 letters and digits, a taken one `TAKEN`, none: 16 random characters; `customerId` a
Customer GID, else `CUSTOMER_NOT_FOUND`; `expiresOn` in the future) answers the code once
(`giftCardCode`; afterwards only `lastCharacters` / `maskedCode`), `giftCards(first:,
query:)` with `customer_id:` and `created_at:>=`, `giftCard(id:)` (balance) and
`giftCardDeactivate`; the buyer's side: `spend_gift_card(code, amount)`. `access_denied`
(operation names): Shopify's `ACCESS_DENIED` GraphQL error, as for an app without the
scope. Throttling (`throttle_next`) applies to all of them.

Shopify Billing: `appSubscriptionCreate` (a PENDING subscription and its `confirmationUrl`;
userErrors for a blank name, a return URL that is not http(s), line items without exactly
one recurring price > 0 in a known interval, or a real charge on a development store, which
accepts only `test: true`), `appSubscriptionCancel` (userErrors for an unknown or ended
subscription) and `node(id:)` of a subscription. The merchant's side: `set_status(id,
"ACTIVE")` approves (also DECLINED, FROZEN, CANCELLED, EXPIRED) and returns the
`app_subscriptions/update` body Shopify then sends, for the test to deliver signed;
activating a subscription cancels the shop's other active one, as Shopify's default
replacement does (its body is in `webhooks`, too).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler
from typing import Any

from loyalnest.devstack.standins import shopify
from loyalnest.devstack.standins.shopify import ShopifyStandIn

_CUSTOMER_GID = re.compile(r"gid://shopify/Customer/[0-9]+")


def _valid_customer_selection(selection: Any) -> bool:
    if not isinstance(selection, dict) or len(selection) != 1:
        return False
    if selection.get("all") is True:
        return True
    customers = selection.get("customers")
    added = customers.get("add") if isinstance(customers, dict) else None
    return (
        isinstance(added, list)
        and bool(added)
        and all(isinstance(g, str) and _CUSTOMER_GID.fullmatch(g) for g in added)
    )


@dataclass
class ShopifyAdminStandIn(ShopifyStandIn):
    """Stand-in for Shopify's Admin GraphQL API (and its OAuth, which it extends)."""

    api_key: str = "admin-standin-key"
    api_secret: str = "admin-standin-secret"
    # shop -> the access token it accepts
    tokens: dict[str, str] = field(default_factory=dict)
    locked: set[str] = field(default_factory=set)
    unavailable: bool = False
    fail_next: int = 0
    lose_next_answer: int = 0
    # An operation name (e.g. "giftCardCreate"): its next call is run, its answer lost (503).
    lose_answer_of: str = ""
    # Operations the app may not call (no access scope): Shopify's ACCESS_DENIED error.
    access_denied: set[str] = field(default_factory=set)
    stall_mutations: float = 0.0
    # (shop, code) -> {"id", "title", "input", "kind", "status"}
    codes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # id -> {"shop", "title", "input", "kind", "status"}: automatic discounts.
    automatic: dict[str, dict[str, Any]] = field(default_factory=dict)
    discounts_made: int = 0
    # shop -> products as the GraphQL API returns them (see add_product).
    products: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # The cost-based leaky bucket of products queries, per shop: (available, last refill).
    bucket_size: float = 2000.0
    restore_rate: float = 100.0
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    products_throttled: int = 0

    def add_product(
        self,
        shop: str,
        product_id: int,
        title: str,
        *,
        updated_at: datetime | None = None,
        collection_ids: tuple[int, ...] = (),
        vendor: str = "LoyalNest Test",
        tags: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        node = {
            "id": f"gid://shopify/Product/{product_id}",
            "title": title,
            "handle": title.lower().replace(" ", "-"),
            "vendor": vendor,
            "productType": "Shoes",
            "status": "ACTIVE",
            "tags": list(tags),
            "updatedAt": (updated_at or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
            "variants": {
                "nodes": [
                    {
                        "id": f"gid://shopify/ProductVariant/{product_id}01",
                        "title": "Default Title",
                        "sku": f"SKU-{product_id}",
                        "price": "30.00",
                    }
                ]
            },
            "collections": {
                "nodes": [{"id": f"gid://shopify/Collection/{c}"} for c in collection_ids]
            },
        }
        with self._lock:
            self.products.setdefault(shop, []).append(node)
        return node

    def touch_product(self, shop: str, product_id: int, **changes: Any) -> None:
        """The merchant edits a product: its fields change and updatedAt moves to now."""
        with self._lock:
            for node in self.products[shop]:
                if node["id"] == f"gid://shopify/Product/{product_id}":
                    node.update(changes)
                    node["updatedAt"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")

    calls: int = 0
    throttle_next: int = 0
    throttle_status: int = 200
    # Shops that accept only test charges.
    development_stores: set[str] = field(default_factory=set)
    # subscription id -> {"shop", "name", "status", "test", "line_items", "return_url", ...}
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (topic, shop, body) of each app_subscriptions/update Shopify would send, in order.
    webhooks: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    # (shop, customer gid) -> its tags (tagsAdd / tagsRemove); customers known to exist:
    # tags of any other customer id are refused as Shopify does ("Resource not found").
    customer_tags: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    customers: set[tuple[str, str]] = field(default_factory=set)
    # gift card id -> {"shop", "code", "initialValue", "balance", "customerId", "expiresOn",
    # "note", "enabled", "createdAt"} (giftCardCreate).
    gift_cards: dict[str, dict[str, Any]] = field(default_factory=dict)

    def tags_of(self, shop: str, customer_gid: str) -> set[str]:
        with self._lock:
            return set(self.customer_tags.get((shop, customer_gid), set()))

    def subscription(self, subscription_id: str) -> dict[str, Any]:
        with self._lock:
            return dict(self.subscriptions[subscription_id])

    def set_status(self, subscription_id: str, status: str) -> dict[str, Any]:
        """The merchant (or Shopify's billing) moves a subscription to `status`; the
        app_subscriptions/update body of that change."""
        with self._lock:
            subscription = self.subscriptions[subscription_id]
            if status == "ACTIVE":
                assert subscription["status"] in ("PENDING", "FROZEN"), subscription["status"]
                for other_id, other in self.subscriptions.items():
                    if (
                        other_id != subscription_id
                        and other["shop"] == subscription["shop"]
                        and other["status"] == "ACTIVE"
                    ):
                        self._change(other_id, "CANCELLED")
            return self._change(subscription_id, status)

    def _change(self, subscription_id: str, status: str) -> dict[str, Any]:
        subscription = self.subscriptions[subscription_id]
        subscription["status"] = status
        subscription["updated_at"] = datetime.now(UTC).isoformat()
        price = subscription["line_items"][0]["plan"]["appRecurringPricingDetails"]["price"]
        body = {
            "app_subscription": {
                "admin_graphql_api_id": subscription_id,
                "name": subscription["name"],
                "status": status,
                "admin_graphql_api_shop_id": "gid://shopify/Shop/"
                + str(abs(hash(subscription["shop"])) % 10**9),
                "created_at": subscription["created_at"],
                "updated_at": subscription["updated_at"],
                "currency": price["currencyCode"],
                "capped_amount": None,
            }
        }
        self.webhooks.append(("app_subscriptions/update", subscription["shop"], body))
        return body

    def discount(self, shop: str, discount_id: str) -> dict[str, Any] | None:
        """A code or automatic discount of the shop by its GID (a copy), or None."""
        with self._lock:
            found = self._discount(shop, discount_id)
            return None if found is None else dict(found)

    def set_discount_status(self, shop: str, discount_id: str, status: str) -> None:
        """The merchant changes a discount in Shopify's admin (our side does not know)."""
        with self._lock:
            found = self._discount(shop, discount_id)
            assert found is not None, discount_id
            found["status"] = status

    def _discount(self, shop: str, discount_id: str) -> dict[str, Any] | None:
        for (s, _), code in self.codes.items():
            if s == shop and code["id"] == discount_id:
                return code
        automatic = self.automatic.get(discount_id)
        return automatic if automatic is not None and automatic["shop"] == shop else None

    def _new_discount_id(self, node: str) -> str:
        self.discounts_made += 1
        return f"gid://shopify/{node}/{self.discounts_made}"

    def _active_automatic(self, shop: str) -> int:
        return sum(
            1
            for d in self.automatic.values()
            if d["shop"] == shop and d["status"] in ("ACTIVE", "SCHEDULED")
        )

    def codes_of(self, shop: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {code: c for (s, code), c in self.codes.items() if s == shop}

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = request.path.split("/")
        if parts[2:4] == ["admin", "oauth"]:
            super()._handle(request)
            return
        body = request.rfile.read(int(request.headers.get("content-length", "0")))
        with self._lock:
            self.calls += 1
            if self.unavailable or self.fail_next > 0:
                self.fail_next = max(0, self.fail_next - 1)
                self._reply(request, 503, {"errors": "Service Unavailable"})
                return
            if len(parts) != 6 or parts[2:4] != ["admin", "api"] or parts[5] != "graphql.json":
                self._reply(request, 404, {"errors": "Not Found"})
                return
            shop = parts[1]
            presented = request.headers.get("x-shopify-access-token") or ""
            # A token configured for the shop, or one the OAuth part issued and not expired.
            if presented != self.tokens.get(shop) and not self._accepts(shop, presented):
                self._reply(request, 401, {"errors": "[API] Invalid API key or access token"})
                return
            if shop in self.locked:
                self._reply(request, 423, {"errors": "Locked"})
                return
            if self.throttle_next > 0:
                # Shopify's leaky bucket is empty: the query is not run.
                self.throttle_next -= 1
                self._reply(request, self.throttle_status, _THROTTLED)
                return
            payload = json.loads(body)
            denied = next((op for op in self.access_denied if op in payload["query"]), None)
            if denied is not None:
                # The app lacks the scope (e.g. a shop whose plan has no gift cards).
                self._reply(request, 200, _access_denied(denied))
                return
            status, answer = self._graphql(shop, payload["query"], payload.get("variables", {}))
            if status == 200 and self.lose_next_answer > 0:
                self.lose_next_answer -= 1
                status, answer = 503, {"errors": "Service Unavailable"}
            elif status == 200 and self.lose_answer_of and self.lose_answer_of in payload["query"]:
                self.lose_answer_of = ""  # once, to that operation
                status, answer = 503, {"errors": "Service Unavailable"}
            stall = self.stall_mutations if payload["query"].lstrip().startswith("mutation") else 0
        if stall:
            time.sleep(stall)  # outside the lock: other calls go on meanwhile
        with contextlib.suppress(OSError):  # the client may have given up and closed
            self._reply(request, status, answer)

    def _graphql(self, shop: str, query: str, variables: dict[str, Any]) -> tuple[int, Any]:
        if "products(" in query:
            return self._products(shop, variables)
        if "appSubscriptionCreate" in query:
            return 200, {"data": {"appSubscriptionCreate": self._subscribe(shop, variables)}}
        if "appSubscriptionCancel" in query:
            return 200, {"data": {"appSubscriptionCancel": self._cancel(shop, variables["id"])}}
        if "node(id:" in query:
            found = self.subscriptions.get(variables["id"])
            node = None
            if found is not None and found["shop"] == shop:
                node = {"id": variables["id"], "status": found["status"]}
            return 200, {"data": {"node": node}}
        if "codeDiscountNodeByCode" in query:
            found = self.codes.get((shop, variables["code"]))
            node = None
            if found is not None:
                discount = {"title": found["title"], "asyncUsageCount": found.get("used", 0)}
                node = {"id": found["id"], "codeDiscount": discount}
            return 200, {"data": {"codeDiscountNodeByCode": node}}
        if "productVariant(id:" in query:
            return 200, {"data": {"productVariant": self._variant(shop, variables["id"])}}
        if "giftCardCreate" in query:
            made = self._create_gift_card(shop, variables["input"])
            return 200, {"data": {"giftCardCreate": made}}
        if "giftCardDeactivate" in query:
            done = self._deactivate_gift_card(shop, variables["id"])
            return 200, {"data": {"giftCardDeactivate": done}}
        if "giftCards(" in query:
            return 200, {"data": {"giftCards": self._search_gift_cards(shop, variables)}}
        if "giftCard(id:" in query:
            card = self.gift_cards.get(variables["id"])
            found = (
                None if card is None or card["shop"] != shop else self._gift_card(variables["id"])
            )
            return 200, {"data": {"giftCard": found}}
        for name in ("tagsAdd", "tagsRemove"):
            if f"{name}(" in query:
                return 200, {"data": {name: self._tags(shop, name, variables)}}
        for name, kind in (
            ("discountCodeBasicCreate", "basic"),
            ("discountCodeFreeShippingCreate", "free_shipping"),
        ):
            if name in query:
                return 200, {"data": {name: self._create(shop, kind, variables["input"])}}
        if "discountRedeemCodeBulkAdd" in query:
            added = self._bulk_add(shop, variables["id"], variables["codes"])
            return 200, {"data": {"discountRedeemCodeBulkAdd": added}}
        for name in ("discountCodeBasicUpdate", "discountCodeFreeShippingUpdate"):
            if name in query:
                changed = self._update_customers(shop, variables["id"], variables["input"])
                return 200, {"data": {name: changed}}
        for name, kind in (
            ("discountAutomaticBasicCreate", "basic"),
            ("discountAutomaticFreeShippingCreate", "free_shipping"),
        ):
            if name in query:
                made = self._create_automatic(shop, kind, variables["input"])
                return 200, {"data": {name: made}}
        for name, status in (
            ("discountCodeActivate", "ACTIVE"),
            ("discountCodeDeactivate", "EXPIRED"),
            ("discountAutomaticActivate", "ACTIVE"),
            ("discountAutomaticDeactivate", "EXPIRED"),
        ):
            if name in query:
                return 200, {"data": {name: self._set_status(shop, name, variables["id"], status)}}
        if "discountNodes(" in query:
            return 200, {"data": {"discountNodes": self._search(shop, variables)}}
        if "discountNode(" in query:
            found = self._discount(shop, variables["id"])
            node = None
            if found is not None:
                node = {
                    "id": variables["id"],
                    "discount": {"title": found["title"], "status": found["status"]},
                }
            return 200, {"data": {"discountNode": node}}
        return 200, {"errors": [{"message": "unsupported operation"}]}

    def _products(self, shop: str, variables: dict[str, Any]) -> tuple[int, Any]:
        first = int(variables.get("first") or 0)
        if not 0 < first <= 250:
            return 200, {"errors": [{"message": "The maximum number of products is 250"}]}
        cost = 2.0 + first
        now = time.monotonic()
        available, at = self.buckets.get(shop, (self.bucket_size, now))
        available = min(self.bucket_size, available + (now - at) * self.restore_rate)
        status = {
            "maximumAvailable": self.bucket_size,
            "currentlyAvailable": available,
            "restoreRate": self.restore_rate,
        }
        if available < cost:
            self.buckets[shop] = (available, now)
            self.products_throttled += 1
            throttled = json.loads(json.dumps(_THROTTLED))
            throttled["extensions"]["cost"] |= {
                "requestedQueryCost": cost,
                "throttleStatus": status,
            }
            return 200, throttled
        self.buckets[shop] = (available - cost, now)
        nodes = sorted(self.products.get(shop, []), key=lambda n: (n["updatedAt"], n["id"]))
        since = re.search(r"updated_at:(>=?)'([^']+)'", variables.get("query") or "")
        if since:
            bound = datetime.fromisoformat(since.group(2).replace("Z", "+00:00"))
            inclusive = since.group(1) == ">="
            nodes = [
                n
                for n in nodes
                if (at_ := datetime.fromisoformat(n["updatedAt"].replace("Z", "+00:00"))) > bound
                or (inclusive and at_ == bound)
            ]
        start = 0
        if variables.get("after"):
            start = int(base64.b64decode(variables["after"]).decode()) + 1
        page = nodes[start : start + first]
        edges = [
            {"cursor": base64.b64encode(str(start + i).encode()).decode(), "node": node}
            for i, node in enumerate(page)
        ]
        status["currentlyAvailable"] = available - cost
        return 200, {
            "data": {
                "products": {
                    "edges": edges,
                    "pageInfo": {
                        "hasNextPage": start + first < len(nodes),
                        "endCursor": edges[-1]["cursor"] if edges else None,
                    },
                }
            },
            "extensions": {
                "cost": {
                    "requestedQueryCost": cost,
                    "actualQueryCost": 2.0 + len(page),
                    "throttleStatus": status,
                }
            },
        }

    def _bulk_add(self, shop: str, discount_id: str, codes: list[dict[str, Any]]) -> dict[str, Any]:
        """More codes for a code discount (one entry shared by all its codes). Shopify creates
        them asynchronously and skips codes it has; here at once, the same way."""
        found = self._discount(shop, discount_id)
        if found is None or discount_id in self.automatic:
            error = {"field": ["discountId"], "code": "INVALID", "message": "Discount not found"}
            return {"bulkCreation": None, "userErrors": [error]}
        if not 0 < len(codes) <= 250:
            error = {"field": ["codes"], "code": "TOO_MANY_ARGUMENTS", "message": "1 to 250 codes"}
            return {"bulkCreation": None, "userErrors": [error]}
        for item in codes:
            code = item.get("code") or ""
            if code and (shop, code) not in self.codes:
                self.codes[(shop, code)] = found
        self.discounts_made += 1
        return {
            "bulkCreation": {
                "id": f"gid://shopify/DiscountRedeemCodeBulkCreation/{self.discounts_made}"
            },
            "userErrors": [],
        }

    def _update_customers(
        self, shop: str, discount_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        """A code discount's customer list changed (customerSelection.customers add/remove)."""
        found = self._discount(shop, discount_id)
        customers = ((data.get("customerSelection") or {}).get("customers")) or {}
        gids = [*customers.get("add", []), *customers.get("remove", [])]
        if found is None or discount_id in self.automatic:
            error = {"field": ["id"], "code": "INVALID", "message": "Discount does not exist"}
            return {"codeDiscountNode": None, "userErrors": [error]}
        if not gids or not all(isinstance(g, str) and _CUSTOMER_GID.fullmatch(g) for g in gids):
            error = {"field": ["customerSelection"], "code": "INVALID", "message": "is invalid"}
            return {"codeDiscountNode": None, "userErrors": [error]}
        selection = found["input"].setdefault("customerSelection", {})
        current = (selection.get("customers") or {}).get("add") or []
        kept = [g for g in current if g not in customers.get("remove", [])]
        kept += [g for g in customers.get("add", []) if g not in kept]
        found["input"]["customerSelection"] = {"customers": {"add": kept}}
        return {"codeDiscountNode": {"id": discount_id}, "userErrors": []}

    def _create_automatic(self, shop: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        errors = []
        if not data.get("title"):
            errors.append({"field": ["title"], "code": "BLANK", "message": "Title can't be blank"})
        if kind == "basic" and "customerGets" not in data:
            errors.append({"field": ["customerGets"], "code": "BLANK", "message": "missing"})
        if "customerSelection" in data or "usageLimit" in data:
            errors.append(
                {"field": ["automaticBasicDiscount"], "code": "INVALID", "message": "is invalid"}
            )
        if self._active_automatic(shop) >= 25:
            errors.append(
                {
                    "field": ["automaticBasicDiscount"],
                    "code": "ACTIVE_PERIOD_OVERLAP",
                    "message": "Only 25 automatic discounts can be active at the same time.",
                }
            )
        if errors:
            return {"automaticDiscountNode": None, "userErrors": errors}
        node_id = self._new_discount_id("DiscountAutomaticNode")
        self.automatic[node_id] = {
            "shop": shop,
            "title": data["title"],
            "input": data,
            "kind": kind,
            "status": _status_at_creation(data),
        }
        return {"automaticDiscountNode": {"id": node_id}, "userErrors": []}

    def _set_status(self, shop: str, mutation: str, node_id: str, status: str) -> dict[str, Any]:
        node_field = "automaticDiscountNode" if "Automatic" in mutation else "codeDiscountNode"
        found = self._discount(shop, node_id)
        is_automatic = found is not None and node_id in self.automatic
        if found is None or is_automatic != (node_field == "automaticDiscountNode"):
            return {
                node_field: None,
                "userErrors": [
                    {"field": ["id"], "code": "INVALID", "message": "Discount does not exist"}
                ],
            }
        if (
            status == "ACTIVE"
            and is_automatic
            and found["status"] not in ("ACTIVE", "SCHEDULED")
            and self._active_automatic(shop) >= 25
        ):
            return {
                node_field: None,
                "userErrors": [
                    {
                        "field": ["id"],
                        "code": "ACTIVE_PERIOD_OVERLAP",
                        "message": "Only 25 automatic discounts can be active at the same time.",
                    }
                ],
            }
        found["status"] = status
        # A deactivated code stays at Shopify, unusable (a second call changes nothing).
        found["active"] = status == "ACTIVE"
        return {node_field: {"id": node_id}, "userErrors": []}

    def _search(self, shop: str, variables: dict[str, Any]) -> dict[str, Any]:
        query = variables.get("query") or ""
        first = int(variables.get("first") or 50)
        assert 0 < first <= 250, first
        # One entry per discount (a discount with several codes is in `codes` once per code).
        by_id = {d["id"]: d for (s, _), d in self.codes.items() if s == shop}
        everything = [(i, d, False) for i, d in by_id.items()]
        everything += [(i, d, True) for i, d in self.automatic.items() if d["shop"] == shop]
        title = re.search(r"title:'((?:[^'\\]|\\.)*)'", query)
        nodes = [
            {"id": node_id, "discount": {"title": d["title"], "status": d["status"]}}
            for node_id, d, is_automatic in everything
            if ("method:automatic" not in query or is_automatic)
            and ("status:active" not in query or d["status"] == "ACTIVE")
            and (title is None or d["title"] == title.group(1).replace("\\'", "'"))
        ]
        return {"nodes": nodes[:first], "pageInfo": {"hasNextPage": len(nodes) > first}}

    def _tags(self, shop: str, name: str, variables: dict[str, Any]) -> dict[str, Any]:
        """tagsAdd / tagsRemove (Admin GraphQL): idempotent set operations on a resource."""
        gid, tags = variables.get("id", ""), variables.get("tags") or []
        if (shop, gid) not in self.customers:
            return {
                "node": None,
                "userErrors": [{"field": ["id"], "message": "Resource not found"}],
            }
        if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
            return {"node": None, "userErrors": [{"field": ["tags"], "message": "Invalid tags"}]}
        current = self.customer_tags.setdefault((shop, gid), set())
        if name == "tagsAdd":
            current.update(tags)
        else:
            current.difference_update(tags)
        return {"node": {"id": gid}, "userErrors": []}

    def _create(self, shop: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        code = data.get("code") or ""
        errors = _period_errors(data) + _minimum_errors(data)
        if kind == "basic" and "customerGets" in data:
            errors += _customer_gets_errors(data["customerGets"])
        if not code or not data.get("title"):
            errors.append({"field": ["code"], "code": "BLANK", "message": "Code can't be blank"})
        elif (shop, code) in self.codes:
            errors.append(
                {
                    "field": ["basicCodeDiscount", "code"],
                    "code": "TAKEN",
                    "message": "Code must be unique. Please try a different code.",
                }
            )
        if not _valid_customer_selection(data.get("customerSelection")):
            errors.append(
                {"field": ["customerSelection"], "code": "INVALID", "message": "is invalid"}
            )
        if kind == "basic" and "customerGets" not in data:
            errors.append({"field": ["customerGets"], "code": "BLANK", "message": "missing"})
        if errors:
            return {"codeDiscountNode": None, "userErrors": errors}
        node_id = self._new_discount_id("DiscountCodeNode")
        self.codes[(shop, code)] = {
            "id": node_id,
            "title": data["title"],
            "input": data,
            "kind": kind,
            "status": _status_at_creation(data),
        }
        return {"codeDiscountNode": {"id": node_id}, "userErrors": []}

    def _variant(self, shop: str, variant_id: str) -> dict[str, Any] | None:
        for product in self.products.get(shop, []):
            for variant in product["variants"]["nodes"]:
                if variant["id"] == variant_id:
                    return {"id": variant_id, "price": variant["price"]}
        return None

    def _create_gift_card(self, shop: str, data: dict[str, Any]) -> dict[str, Any]:
        """giftCardCreate: the code (given, 8-20 letters and digits, or 16 random ones) is in
        the answer once; Shopify shows it afterwards only masked (lastCharacters)."""
        errors = []
        try:
            value = Decimal(str(data.get("initialValue")))
        except (InvalidOperation, ValueError):
            value = Decimal(0)
        if not value.is_finite() or value <= 0:
            errors.append(
                {
                    "field": ["input", "initialValue"],
                    "code": "GREATER_THAN",
                    "message": "Initial value must be greater than 0",
                }
            )
        code = data.get("code") or secrets.token_hex(8)
        if not re.fullmatch(r"[A-Za-z0-9]{8,20}", code):
            errors.append({"field": ["input", "code"], "code": "INVALID", "message": "is invalid"})
        elif any(c["code"].lower() == code.lower() for c in self.gift_cards.values()):
            errors.append(
                {"field": ["input", "code"], "code": "TAKEN", "message": "has already been taken"}
            )
        customer = data.get("customerId")
        if customer is not None and not _CUSTOMER_GID.fullmatch(str(customer)):
            errors.append(
                {
                    "field": ["input", "customerId"],
                    "code": "CUSTOMER_NOT_FOUND",
                    "message": "Customer does not exist",
                }
            )
        expires = data.get("expiresOn")
        if expires is not None and date.fromisoformat(expires) <= datetime.now(UTC).date():
            errors.append(
                {
                    "field": ["input", "expiresOn"],
                    "code": "INVALID",
                    "message": "Expires on must be in the future",
                }
            )
        if errors:
            return {"giftCard": None, "giftCardCode": None, "userErrors": errors}
        self.discounts_made += 1
        card_id = f"gid://shopify/GiftCard/{self.discounts_made}"
        self.gift_cards[card_id] = {
            "shop": shop,
            "code": code,
            "initialValue": str(value),
            "balance": str(value),
            "customerId": customer,
            "expiresOn": expires,
            "note": data.get("note") or "",
            "enabled": True,
            "createdAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        return {"giftCard": self._gift_card(card_id), "giftCardCode": code, "userErrors": []}

    def _gift_card(self, card_id: str) -> dict[str, Any]:
        card = self.gift_cards[card_id]
        return {
            "id": card_id,
            "lastCharacters": card["code"][-4:],
            "maskedCode": "•••• •••• •••• " + card["code"][-4:],
            "initialValue": {"amount": card["initialValue"]},
            "balance": {"amount": card["balance"]},
            "expiresOn": card["expiresOn"],
            "note": card["note"],
            "enabled": card["enabled"],
            "createdAt": card["createdAt"],
        }

    def _search_gift_cards(self, shop: str, variables: dict[str, Any]) -> dict[str, Any]:
        """giftCards(first:, query:) with the filters customer_id:N and created_at:>='ISO'."""
        query = variables.get("query") or ""
        first = int(variables.get("first") or 50)
        assert 0 < first <= 250, first
        customer = re.search(r"customer_id:(\d+)", query)
        since = re.search(r"created_at:>=['\"]?([^'\" ]+)", query)
        nodes = [
            self._gift_card(card_id)
            for card_id, card in self.gift_cards.items()
            if card["shop"] == shop
            and (customer is None or card["customerId"] == f"gid://shopify/Customer/{customer[1]}")
            and (since is None or card["createdAt"] >= since[1])
        ]
        return {"nodes": nodes[:first], "pageInfo": {"hasNextPage": len(nodes) > first}}

    def spend_gift_card(self, code: str, amount: Decimal) -> Decimal:
        """A buyer pays with the card at checkout: what it still holds after. Refused
        (CodeRefused) when disabled, expired or short of `amount`."""
        with self._lock:
            card = next((c for c in self.gift_cards.values() if c["code"] == code), None)
            if card is None or not card["enabled"]:
                raise CodeRefused("This gift card is not valid")
            expires = card["expiresOn"]
            if expires is not None and date.fromisoformat(expires) < datetime.now(UTC).date():
                raise CodeRefused("This gift card has expired")
            balance = Decimal(card["balance"])
            if amount > balance:
                raise CodeRefused("This gift card does not hold enough")
            card["balance"] = str(balance - amount)
            return balance - amount

    def _deactivate_gift_card(self, shop: str, card_id: str) -> dict[str, Any]:
        card = self.gift_cards.get(card_id)
        if card is None or card["shop"] != shop:
            error = {"field": ["id"], "code": "INVALID", "message": "Gift card does not exist"}
            return {"giftCard": None, "userErrors": [error]}
        card["enabled"] = False  # idempotent: a disabled card stays disabled
        return {"giftCard": {"id": card_id, "enabled": False}, "userErrors": []}

    def checkout(
        self,
        shop: str,
        code: str,
        customer_gid: str,
        lines: list[CartLine],
        *,
        at: datetime | None = None,
    ) -> Decimal:
        """What the code takes off this cart at checkout, as Shopify applies a basic or free
        shipping code discount (shipping counted as 0 here); raises CodeRefused with
        Shopify's reason when the code does not apply."""
        with self._lock:
            found = self.codes.get((shop, code))
            if found is None:
                raise CodeRefused("Enter a valid discount code")
            data = found["input"]
            now = at or datetime.now(UTC)
            if found["status"] == "EXPIRED" or found.get("active") is False:
                raise CodeRefused("This discount code is no longer active")
            if datetime.fromisoformat(data["startsAt"]) > now:
                raise CodeRefused("This discount code is not active yet")
            if data.get("endsAt") and datetime.fromisoformat(data["endsAt"]) <= now:
                raise CodeRefused("This discount code has expired")
            if found.get("used", 0) >= int(data.get("usageLimit") or 10**9):
                raise CodeRefused("This discount code has reached its usage limit")
            added = ((data.get("customerSelection") or {}).get("customers") or {}).get("add")
            if added is not None and customer_gid not in added:
                raise CodeRefused("This discount code is not available to you")
            subtotal = sum((line.price * line.quantity for line in lines), Decimal(0))
            minimum = (data.get("minimumRequirement") or {}).get("subtotal")
            if minimum and subtotal < Decimal(minimum["greaterThanOrEqualToSubtotal"]):
                raise CodeRefused(
                    "Spend at least "
                    f"{minimum['greaterThanOrEqualToSubtotal']} to use this discount code"
                )
            if found["kind"] == "free_shipping":
                return Decimal(0)
            gets = data["customerGets"]
            items = gets["items"]
            entitled = [line for line in lines if _entitled(items, line)]
            if not entitled:
                raise CodeRefused("This discount code does not apply to the items in your cart")
            base = sum((line.price * line.quantity for line in entitled), Decimal(0))
            value = gets["value"]
            if "percentage" in value:
                off = base * Decimal(str(value["percentage"]))
            else:
                amount = Decimal(value["discountAmount"]["amount"])
                if value["discountAmount"].get("appliesOnEachItem"):
                    amount *= sum(line.quantity for line in entitled)
                off = min(amount, base)
            return off.quantize(Decimal("0.01"))

    def _subscribe(self, shop: str, variables: dict[str, Any]) -> dict[str, Any]:
        errors: list[dict[str, Any]] = []
        name = (variables.get("name") or "").strip()
        if not name:
            errors.append({"field": ["name"], "message": "Name can't be blank"})
        return_url = urllib.parse.urlsplit(variables.get("returnUrl") or "")
        if return_url.scheme not in ("http", "https") or not return_url.netloc:
            errors.append({"field": ["returnUrl"], "message": "Return url is invalid"})
        items = variables.get("lineItems") or []
        recurring = [
            item["plan"]["appRecurringPricingDetails"]
            for item in items
            if "appRecurringPricingDetails" in (item.get("plan") or {})
        ]
        if len(recurring) != 1 or len(items) != 1:
            errors.append(
                {"field": ["lineItems"], "message": "Exactly one recurring line item is required"}
            )
        else:
            details = recurring[0]
            price = details.get("price") or {}
            try:
                positive = float(price.get("amount", "")) > 0
            except (TypeError, ValueError):
                positive = False
            if not positive or len(str(price.get("currencyCode") or "")) != 3:
                errors.append(
                    {"field": ["lineItems", "0", "plan"], "message": "Price must be positive"}
                )
            if details.get("interval", "EVERY_30_DAYS") not in ("EVERY_30_DAYS", "ANNUAL"):
                errors.append(
                    {"field": ["lineItems", "0", "plan"], "message": "Interval is invalid"}
                )
        test = bool(variables.get("test"))
        if shop in self.development_stores and not test:
            errors.append({"field": None, "message": "The shop cannot accept the provided charge."})
        if errors:
            return {"appSubscription": None, "confirmationUrl": None, "userErrors": errors}
        number = len(self.subscriptions) + 1
        subscription_id = f"gid://shopify/AppSubscription/{number}"
        now = datetime.now(UTC).isoformat()
        self.subscriptions[subscription_id] = {
            "shop": shop,
            "name": name,
            "status": "PENDING",
            "test": test,
            "line_items": items,
            "return_url": variables["returnUrl"],
            "created_at": now,
            "updated_at": now,
        }
        return {
            "appSubscription": {"id": subscription_id, "status": "PENDING", "test": test},
            "confirmationUrl": f"https://{shop}/admin/charges/loyalnest/{number}"
            "/RecurringApplicationCharge/confirm_recurring_application_charge",
            "userErrors": [],
        }

    def _cancel(self, shop: str, subscription_id: str) -> dict[str, Any]:
        found = self.subscriptions.get(subscription_id)
        if found is None or found["shop"] != shop:
            return {
                "appSubscription": None,
                "userErrors": [{"field": ["id"], "message": "Subscription not found"}],
            }
        if found["status"] in ("CANCELLED", "DECLINED", "EXPIRED"):
            return {
                "appSubscription": None,
                "userErrors": [{"field": ["id"], "message": "Subscription is not active"}],
            }
        self._change(subscription_id, "CANCELLED")
        return {"appSubscription": {"id": subscription_id, "status": "CANCELLED"}, "userErrors": []}


def _status_at_creation(data: dict[str, Any]) -> str:
    starts = data.get("startsAt")
    now = datetime.now(UTC)
    if data.get("endsAt") and datetime.fromisoformat(data["endsAt"]) <= now:
        return "EXPIRED"
    if starts and datetime.fromisoformat(starts) > now:
        return "SCHEDULED"
    return "ACTIVE"


@dataclass(frozen=True)
class CartLine:
    """A line of a cart at checkout (see ShopifyAdminStandIn.checkout)."""

    product_id: int
    variant_id: int
    price: Decimal
    quantity: int = 1
    collection_ids: tuple[int, ...] = ()


class CodeRefused(Exception):
    """Shopify's checkout refuses the code (the message is what the buyer sees)."""


def _entitled(items: dict[str, Any], line: CartLine) -> bool:
    if items.get("all"):
        return True
    products = items.get("products") or {}
    if f"gid://shopify/Product/{line.product_id}" in products.get("productsToAdd", []):
        return True
    if f"gid://shopify/ProductVariant/{line.variant_id}" in products.get(
        "productVariantsToAdd", []
    ):
        return True
    collections = (items.get("collections") or {}).get("add", [])
    return any(f"gid://shopify/Collection/{c}" in collections for c in line.collection_ids)


def _period_errors(data: dict[str, Any]) -> list[dict[str, Any]]:
    starts, ends = data.get("startsAt"), data.get("endsAt")
    if not starts:
        return [{"field": ["startsAt"], "code": "BLANK", "message": "Starts at can't be blank"}]
    try:
        begin = datetime.fromisoformat(starts)
        end = datetime.fromisoformat(ends) if ends else None
    except (TypeError, ValueError):
        return [{"field": ["startsAt"], "code": "INVALID", "message": "is invalid"}]
    if end is not None and end <= begin:
        return [
            {
                "field": ["endsAt"],
                "code": "END_DATE_BEFORE_START_DATE",
                "message": "Ends at needs to be after starts_at",
            }
        ]
    return []


def _positive(value: Any) -> bool:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return False
    return number.is_finite() and number > 0


def _minimum_errors(data: dict[str, Any]) -> list[dict[str, Any]]:
    """minimumRequirement: {"subtotal": {"greaterThanOrEqualToSubtotal"}} or
    {"quantity": {"greaterThanOrEqualToQuantity"}}, a positive figure."""
    minimum = data.get("minimumRequirement")
    if minimum is None:
        return []
    field = ["minimumRequirement"]
    if not isinstance(minimum, dict) or len(minimum) != 1:
        return [{"field": field, "code": "INVALID", "message": "is invalid"}]
    ((kind, value),) = minimum.items()
    key = {"subtotal": "greaterThanOrEqualToSubtotal", "quantity": "greaterThanOrEqualToQuantity"}
    if kind not in key or not isinstance(value, dict) or key[kind] not in value:
        return [{"field": field, "code": "INVALID", "message": "is invalid"}]
    if not _positive(value[key[kind]]):
        return [
            {
                "field": [*field, kind, key[kind]],
                "code": "GREATER_THAN",
                "message": "must be greater than 0",
            }
        ]
    return []


def _customer_gets_errors(gets: Any) -> list[dict[str, Any]]:
    """customerGets of a basic discount: one value (percentage 0-1, or a positive
    discountAmount) off items that are all, products (productsToAdd /
    productVariantsToAdd) or collections (add), one of the three."""
    field = ["customerGets"]
    invalid = [{"field": field, "code": "INVALID", "message": "is invalid"}]
    if not isinstance(gets, dict):
        return invalid
    value, items = gets.get("value") or {}, gets.get("items") or {}
    errors = []
    if len(value) != 1 or not (set(value) <= {"percentage", "discountAmount"}):
        errors += invalid
    elif "percentage" in value and not 0 < float(value["percentage"]) <= 1:
        errors.append(
            {
                "field": [*field, "value", "percentage"],
                "code": "VALUE_OUTSIDE_RANGE",
                "message": "must be between 0 and 1",
            }
        )
    elif "discountAmount" in value and not _positive(value["discountAmount"].get("amount")):
        errors.append(
            {
                "field": [*field, "value", "discountAmount", "amount"],
                "code": "GREATER_THAN",
                "message": "must be greater than 0",
            }
        )
    gids = {
        "productsToAdd": "Product",
        "productVariantsToAdd": "ProductVariant",
        "add": "Collection",
    }
    if len(items) != 1 or not (set(items) <= {"all", "products", "collections"}):
        errors.append({"field": [*field, "items"], "code": "INVALID", "message": "is invalid"})
    elif "all" not in items:
        ((_, chosen),) = items.items()
        listed = [
            (name, gid)
            for name, values in (chosen or {}).items()
            for gid in (values if isinstance(values, list) else [values])
        ]
        if not listed or any(
            name not in gids or not re.fullmatch(rf"gid://shopify/{gids[name]}/[0-9]+", str(gid))
            for name, gid in listed
        ):
            errors.append({"field": [*field, "items"], "code": "INVALID", "message": "is invalid"})
    return errors


def _access_denied(operation: str) -> dict[str, Any]:
    """Shopify's answer to a field the app has no access scope for (nothing is run)."""
    return {
        "errors": [
            {
                "message": f"Access denied for {operation} field. Required access:"
                " `write_gift_cards` access scope.",
                "extensions": {
                    "code": "ACCESS_DENIED",
                    "documentation": "https://shopify.dev/api/usage/access-scopes",
                    "requiredAccess": "`write_gift_cards` access scope.",
                },
                "path": [operation],
            }
        ],
        "data": {operation: None},
    }


# Shopify's answer when the query's cost exceeds what the bucket holds.
_THROTTLED = {
    "errors": [
        {
            "message": "Throttled",
            "extensions": {
                "code": "THROTTLED",
                "documentation": "https://shopify.dev/api/usage/rate-limits",
            },
        }
    ],
    "extensions": {
        "cost": {
            "requestedQueryCost": 12,
            "actualQueryCost": None,
            "throttleStatus": {
                "maximumAvailable": 2000.0,
                "currentlyAvailable": 2,
                "restoreRate": 100.0,
            },
        }
    },
}


if __name__ == "__main__":
    shopify.main(standin_type=ShopifyAdminStandIn)
