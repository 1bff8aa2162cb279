"""A local stand-in for Shopify's Admin GraphQL API (DESIGN §7), started by the tests.

It extends the OAuth stand-in (same server, same shop-as-path base URL), so one server can
play both parts of a shop: the access tokens its OAuth part hands out (install, refresh) are
accepted until they expire, besides those configured in `tokens`.

`POST /{shop}/admin/api/{version}/graphql.json` with `X-Shopify-Access-Token`: a wrong token
gets 401, a locked shop 423. It answers `discountCodeBasicCreate`,
`discountCodeFreeShippingCreate` (a code already present: userErrors `TAKEN`) and
`codeDiscountNodeByCode`. A discount's `customerSelection` must be `{"all": true}` or
`{"customers": {"add": [<Customer GID>...]}}` (else userErrors `INVALID`), as in API 2025-10.
Faults for tests: `unavailable` (503 to every call), `fail_next` (503 to the next N calls),
`lose_next_answer` (create the code, then answer 503 as if the reply was lost),
`stall_mutations` (apply every mutation, then answer only after that many seconds: a client
with a shorter timeout never sees the answer; queries answer at once).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import dataclass, field
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
    # (shop, code) -> {"id", "title", "input", "kind"}
    codes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    calls: int = 0

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
        if "codeDiscountNodeByCode" in query:
            found = self.codes.get((shop, variables["code"]))
            node = None
            if found is not None:
                node = {"id": found["id"], "codeDiscount": {"title": found["title"]}}
            return 200, {"data": {"codeDiscountNodeByCode": node}}
        for name, kind in (
            ("discountCodeBasicCreate", "basic"),
            ("discountCodeFreeShippingCreate", "free_shipping"),
        ):
            if name in query:
                return 200, {"data": {name: self._create(shop, kind, variables["input"])}}
        return 200, {"errors": [{"message": "unsupported operation"}]}

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
        node_id = f"gid://shopify/DiscountCodeNode/{len(self.codes) + 1}"
        self.codes[(shop, code)] = {
            "id": node_id,
            "title": data["title"],
            "input": data,
            "kind": kind,
        }
        return {"codeDiscountNode": {"id": node_id}, "userErrors": []}
