"""A campaign's Shopify discount through the GraphQL Admin API (never the legacy price rules).

Code campaigns are `discountCodeBasicCreate` / `discountCodeFreeShippingCreate`, automatic ones
`discountAutomaticBasicCreate` / `discountAutomaticFreeShippingCreate`; pausing and ending
deactivate the discount, resuming activates it. The shop's token comes from Auth
(`platform.shop_access.ShopTokens`, Campaign's own service token, grant `auth:shop-token`).

Retries: Shopify's discount mutations carry no idempotency key, so each attempt for one
campaign asks for the same thing and looks before it leaps: a code campaign's code is fixed
(chosen or derived), so a retry after a lost answer gets `TAKEN` and then finds the code
(`codeDiscountNodeByCode`) under the campaign's own title: success. An automatic discount has
no code: its title carries the campaign's reference and is looked up (`discountNodes`) before
creating. `THROTTLED` is waited out in `ShopifyAdminClient` (cost-based backoff).

userErrors: `TAKEN` on a code that is not ours is ALREADY_EXISTS (another discount of the shop
uses it), `ACTIVE_PERIOD_OVERLAP` (25 automatic discounts active) FAILED_PRECONDITION, the
others INVALID_ARGUMENT on the campaign field they concern.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.campaign.v1 import campaign_pb2 as pb
from loyalnest.platform import shop_access
from loyalnest.platform.errors import AlreadyExists, FieldViolation, InvalidArgument
from loyalnest.platform.observability import get_logger
from loyalnest.platform.shop_access import ShopAccess, ShopTokens
from loyalnest.platform.shopify_admin import ShopifyAdminClient
from loyalnest.services.campaign.domain import (
    MAX_ACTIVE_AUTOMATIC,
    AutomaticDiscountLimit,
    Campaign,
    discount_title,
)

log = get_logger(__name__)

_FIELDS = "userErrors { field code message }"
_CREATE = {
    (False, False): ("discountCodeBasicCreate", "basicCodeDiscount", "DiscountCodeBasicInput"),
    (False, True): (
        "discountCodeFreeShippingCreate",
        "freeShippingCodeDiscount",
        "DiscountCodeFreeShippingInput",
    ),
    (True, False): (
        "discountAutomaticBasicCreate",
        "automaticBasicDiscount",
        "DiscountAutomaticBasicInput",
    ),
    (True, True): (
        "discountAutomaticFreeShippingCreate",
        "freeShippingAutomaticDiscount",
        "DiscountAutomaticFreeShippingInput",
    ),
}

_BY_CODE = """
query CampaignCode($code: String!) {
  codeDiscountNodeByCode(code: $code) {
    id
    codeDiscount {
      ... on DiscountCodeBasic { title }
      ... on DiscountCodeFreeShipping { title }
    }
  }
}"""

_SEARCH = """
query CampaignDiscounts($first: Int!, $query: String!) {
  discountNodes(first: $first, query: $query) {
    nodes {
      id
      discount {
        ... on DiscountAutomaticBasic { title status }
        ... on DiscountAutomaticFreeShipping { title status }
        ... on DiscountCodeBasic { title status }
        ... on DiscountCodeFreeShipping { title status }
      }
    }
    pageInfo { hasNextPage }
  }
}"""

_NODE = """
query CampaignDiscount($id: ID!) {
  discountNode(id: $id) {
    id
    discount {
      ... on DiscountAutomaticBasic { title status }
      ... on DiscountAutomaticFreeShipping { title status }
      ... on DiscountCodeBasic { title status }
      ... on DiscountCodeFreeShipping { title status }
    }
  }
}"""


_BULK_ADD = """
mutation CampaignCodes($id: ID!, $codes: [DiscountRedeemCodeInput!]!) {
  discountRedeemCodeBulkAdd(discountId: $id, codes: $codes) {
    bulkCreation { id }
    userErrors { field code message }
  }
}"""
_BULK_CODES = 100


class ShopNotConnected(shop_access.ShopNotConnected):
    def __init__(self, merchant_id: str) -> None:
        super().__init__(
            merchant_id, "campaigns cannot create Shopify discounts; open the app from Shopify"
        )


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _gid(kind: str, shopify_id: str) -> str:
    return f"gid://shopify/{kind}/{shopify_id}"


def discount_input(
    campaign: Campaign, code: str, customers: Sequence[str], now: datetime
) -> dict[str, Any]:
    """The mutation's input for `campaign` (`customers`: Shopify customer ids for an RFM
    audience; ignored for all customers)."""
    rules = campaign.rules
    data: dict[str, Any] = {
        "title": discount_title(campaign),
        "startsAt": _iso(campaign.start_at or now),
        "combinesWith": {
            "orderDiscounts": rules.combines_with.order_discounts,
            "productDiscounts": rules.combines_with.product_discounts,
            "shippingDiscounts": rules.combines_with.shipping_discounts,
        },
    }
    if campaign.end_at is not None:
        data["endsAt"] = _iso(campaign.end_at)
    if rules.minimum_subtotal:
        data["minimumRequirement"] = {
            "subtotal": {"greaterThanOrEqualToSubtotal": rules.minimum_subtotal}
        }
    if not campaign.automatic:
        data["code"] = code
        data["appliesOncePerCustomer"] = rules.once_per_customer
        if rules.usage_limit:
            data["usageLimit"] = rules.usage_limit
        data["customerSelection"] = (
            {"all": True}
            if campaign.audience.all_customers
            else {"customers": {"add": [_gid("Customer", c) for c in customers]}}
        )
    if rules.type == pb.DISCOUNT_TYPE_FREE_SHIPPING:
        data["destination"] = {"all": True}
        return data
    value: dict[str, Any]
    if rules.type == pb.DISCOUNT_TYPE_PERCENTAGE:
        value = {"percentage": float(Decimal(rules.value) / 100)}
    else:
        value = {"discountAmount": {"amount": rules.value, "appliesOnEachItem": False}}
    items: dict[str, Any] = {"all": True}
    if rules.product_ids:
        items = {"products": {"productsToAdd": [_gid("Product", p) for p in rules.product_ids]}}
    elif rules.collection_ids:
        items = {"collections": {"add": [_gid("Collection", c) for c in rules.collection_ids]}}
    data["customerGets"] = {"value": value, "items": items}
    return data


# Shopify's input field -> the campaign's field, for INVALID_ARGUMENT violations.
_FIELD_OF = {
    "code": "campaign.code",
    "title": "campaign.name",
    "startsAt": "campaign.start_time",
    "endsAt": "campaign.end_time",
    "customerGets": "campaign.rules",
    "minimumRequirement": "campaign.rules.minimum_subtotal",
    "usageLimit": "campaign.rules.usage_limit",
    "customerSelection": "campaign.audience",
}


def _refusal(errors: list[dict[str, Any]]) -> Exception:
    codes = {e.get("code") for e in errors}
    if "ACTIVE_PERIOD_OVERLAP" in codes:
        return AutomaticDiscountLimit(MAX_ACTIVE_AUTOMATIC)
    if "TAKEN" in codes:
        return AlreadyExists(
            "another discount of the shop already uses this code: choose another campaign.code"
        )
    violations = []
    for error in errors:
        path = [str(p) for p in (error.get("field") or [])]
        field = next((_FIELD_OF[p] for p in path if p in _FIELD_OF), "campaign")
        violations.append(FieldViolation(field, f"Shopify: {error.get('message')}"))
    summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
    return InvalidArgument(f"Shopify refused the discount: {summary}", violations)


class CampaignDiscounts:
    def __init__(
        self, admin: ShopifyAdminClient, auth: auth_pb2_grpc.AuthServiceStub | None
    ) -> None:
        # auth None: no Auth target or service credential configured: no shop is connected.
        self._admin = admin
        self._tokens = ShopTokens(auth, component="campaign", not_connected=ShopNotConnected)

    async def access(self, merchant_id: str) -> ShopAccess:
        return await self._tokens.shop_access(merchant_id)

    async def _search(self, access: ShopAccess, query: str, first: int) -> list[dict[str, Any]]:
        data = await self._admin.graphql(
            access.shop, access.access_token, _SEARCH, {"first": first, "query": query}
        )
        nodes: list[dict[str, Any]] = (data.get("discountNodes") or {}).get("nodes") or []
        return nodes

    async def check_automatic_room(self, access: ShopAccess) -> None:
        """FAILED_PRECONDITION before anything changes when the shop holds 25 active
        automatic discounts already (ours and other apps')."""
        active = await self._search(
            access, "method:automatic AND status:active", MAX_ACTIVE_AUTOMATIC
        )
        if len(active) >= MAX_ACTIVE_AUTOMATIC:
            raise AutomaticDiscountLimit(len(active))

    async def create(
        self, access: ShopAccess, campaign: Campaign, code: str, customers: Sequence[str]
    ) -> str:
        """Creates the campaign's discount, or finds the one an earlier attempt created;
        its GID."""
        title = discount_title(campaign)
        if campaign.automatic:
            found = await self._search(access, f"title:'{_quoted(title)}'", 1)
            if found:
                return str(found[0]["id"])
            await self.check_automatic_room(access)
        free_shipping = campaign.rules.type == pb.DISCOUNT_TYPE_FREE_SHIPPING
        mutation, argument, input_type = _CREATE[(campaign.automatic, free_shipping)]
        node = "automaticDiscountNode" if campaign.automatic else "codeDiscountNode"
        query = (
            f"mutation Campaign($input: {input_type}!) {{"
            f" {mutation}({argument}: $input) {{ {node} {{ id }} {_FIELDS} }} }}"
        )
        data = await self._admin.graphql(
            access.shop,
            access.access_token,
            query,
            {"input": discount_input(campaign, code, customers, datetime.now(UTC))},
        )
        answer = data.get(mutation) or {}
        errors = answer.get("userErrors") or []
        if not errors:
            return str((answer.get(node) or {})["id"])
        if [e.get("code") for e in errors] == ["TAKEN"] and not campaign.automatic:
            ours = await self._code_owner(access, code, title)
            if ours is not None:
                log.info("discount code existed already: an earlier attempt created it")
                return ours
        raise _refusal(errors)

    async def _code_owner(self, access: ShopAccess, code: str, title: str) -> str | None:
        data = await self._admin.graphql(access.shop, access.access_token, _BY_CODE, {"code": code})
        node = data.get("codeDiscountNodeByCode") or {}
        if (node.get("codeDiscount") or {}).get("title") == title:
            return str(node["id"])
        return None

    async def set_active(self, access: ShopAccess, campaign: Campaign, active: bool) -> None:
        """Activates (resume) or deactivates (pause, end) the campaign's discount."""
        if active and campaign.automatic:
            await self.check_automatic_room(access)
        kind = "Automatic" if campaign.automatic else "Code"
        mutation = f"discount{kind}{'Activate' if active else 'Deactivate'}"
        node = "automaticDiscountNode" if campaign.automatic else "codeDiscountNode"
        query = (
            f"mutation Campaign($id: ID!) {{ {mutation}(id: $id) {{ {node} {{ id }} {_FIELDS} }} }}"
        )
        data = await self._admin.graphql(
            access.shop, access.access_token, query, {"id": campaign.shopify_discount_id}
        )
        errors = (data.get(mutation) or {}).get("userErrors") or []
        if errors:
            raise _refusal(errors)

    async def set_customer(
        self, access: ShopAccess, campaign: Campaign, customer_id: str, *, member: bool
    ) -> None:
        """Adds a customer to (or removes one from) a code discount's customer list. Both are
        idempotent at Shopify: a retry changes nothing more."""
        free_shipping = campaign.rules.type == pb.DISCOUNT_TYPE_FREE_SHIPPING
        mutation, argument, input_type = (
            ("discountCodeFreeShippingUpdate", "freeShippingCodeDiscount",
             "DiscountCodeFreeShippingInput")
            if free_shipping
            else ("discountCodeBasicUpdate", "basicCodeDiscount", "DiscountCodeBasicInput")
        )  # fmt: skip
        query = (
            f"mutation Audience($id: ID!, $input: {input_type}!) {{"
            f" {mutation}(id: $id, {argument}: $input) {{ codeDiscountNode {{ id }} {_FIELDS} }} }}"
        )
        change = "add" if member else "remove"
        data = await self._admin.graphql(
            access.shop,
            access.access_token,
            query,
            {
                "id": campaign.shopify_discount_id,
                "input": {
                    "customerSelection": {"customers": {change: [_gid("Customer", customer_id)]}}
                },
            },
        )
        errors = (data.get(mutation) or {}).get("userErrors") or []
        if errors:
            raise _refusal(errors)

    async def add_codes(self, access: ShopAccess, campaign: Campaign, codes: Sequence[str]) -> None:
        """Adds codes to a code discount (`discountRedeemCodeBulkAdd`, up to 100 a call;
        Shopify creates them asynchronously). Adding a code the discount has is harmless, so a
        retry is too."""
        for start in range(0, len(codes), _BULK_CODES):
            chunk = codes[start : start + _BULK_CODES]
            data = await self._admin.graphql(
                access.shop,
                access.access_token,
                _BULK_ADD,
                {"id": campaign.shopify_discount_id, "codes": [{"code": c} for c in chunk]},
            )
            errors = (data.get("discountRedeemCodeBulkAdd") or {}).get("userErrors") or []
            if errors:
                raise _refusal(errors)

    async def status(self, access: ShopAccess, campaign: Campaign) -> str | None:
        """Shopify's status of the discount (ACTIVE, SCHEDULED, EXPIRED), None if it is gone."""
        data = await self._admin.graphql(
            access.shop, access.access_token, _NODE, {"id": campaign.shopify_discount_id}
        )
        node = data.get("discountNode")
        if not node:
            return None
        return str((node.get("discount") or {}).get("status") or "")


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")
