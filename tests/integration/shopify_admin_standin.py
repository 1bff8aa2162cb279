"""A local stand-in for Shopify's Admin GraphQL API (DESIGN §7), started by the tests.

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
`lose_next_answer` (create the code, then answer 503 as if the reply was lost),
`throttle_next` (the next N queries are not run: `THROTTLED` in `errors` with the cost
extension, as 200, or as 429 with `throttle_status=429`), `stall_mutations` (apply every
mutation, then answer only after that many seconds: a client with a shorter timeout never sees
the answer; queries answer at once).

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
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.integration.shopify_standin import ShopifyStandIn

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
    api_key: str = "admin-standin-key"
    api_secret: str = "admin-standin-secret"
    # shop -> the access token it accepts
    tokens: dict[str, str] = field(default_factory=dict)
    locked: set[str] = field(default_factory=set)
    unavailable: bool = False
    fail_next: int = 0
    lose_next_answer: int = 0
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
        for (s, _), found in self.codes.items():
            if s == shop and found["id"] == discount_id:
                return found
        found = self.automatic.get(discount_id)
        return found if found is not None and found["shop"] == shop else None

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
            status, answer = self._graphql(shop, payload["query"], payload.get("variables", {}))
            if status == 200 and self.lose_next_answer > 0:
                self.lose_next_answer -= 1
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
        errors = []
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

    def _subscribe(self, shop: str, variables: dict[str, Any]) -> dict[str, Any]:
        errors = []
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
                positive = float(price.get("amount")) > 0
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
    if starts and datetime.fromisoformat(starts) > datetime.now(UTC):
        return "SCHEDULED"
    return "ACTIVE"


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
