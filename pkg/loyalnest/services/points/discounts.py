"""Single-use Shopify discount codes for redeemed rewards, and the shop credentials they need.

The code is derived from the redemption id, so every attempt for one redemption asks Shopify
for the same code: a retry after a lost answer gets `TAKEN`, and the code found under that
name is ours if its title names this redemption (then the earlier attempt worked).

Shop credentials: the merchant's offline Admin API token is obtained by Auth during the OAuth
install (DESIGN §7) and stays there, encrypted; `ShopCredentials` is the seam, and
`shop_access.AuthShopCredentials` asks Auth for it (`GetShopAccessToken`, with Points' own
service token) whenever a code is created.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from loyalnest.platform.errors import FailedPrecondition
from loyalnest.platform.shopify_admin import ShopifyAdminClient, ShopifyRejected
from loyalnest.services.points.domain import Reward, RewardKind


@dataclass(frozen=True)
class ShopAccess:
    shop: str  # e.g. example.myshopify.com
    access_token: str


class ShopNotConnected(FailedPrecondition):
    def __init__(self, merchant_id: str) -> None:
        super().__init__(
            "the merchant's Shopify shop is not connected: no discount codes can be created",
            violation_type="SHOP_NOT_CONNECTED",
            subject=f"merchant/{merchant_id}",
        )


class ShopCredentials(Protocol):
    async def shop_access(self, merchant_id: str) -> ShopAccess:
        """Raises ShopNotConnected when the merchant has no shop token."""
        ...


def discount_code(redemption_id: str) -> str:
    digest = hashlib.sha256(f"loyalnest-reward:{redemption_id}".encode()).digest()
    return "LN-" + base64.b32encode(digest).decode()[:12]


def discount_title(redemption_id: str) -> str:
    return f"LoyalNest reward {redemption_id}"


_BASIC = """
mutation RewardCode($input: DiscountCodeBasicInput!) {
  discountCodeBasicCreate(basicCodeDiscount: $input) {
    codeDiscountNode { id }
    userErrors { field code message }
  }
}"""

_FREE_SHIPPING = """
mutation RewardCode($input: DiscountCodeFreeShippingInput!) {
  discountCodeFreeShippingCreate(freeShippingCodeDiscount: $input) {
    codeDiscountNode { id }
    userErrors { field code message }
  }
}"""

_BY_CODE = """
query RewardCodeOwner($code: String!) {
  codeDiscountNodeByCode(code: $code) {
    id
    codeDiscount {
      ... on DiscountCodeBasic { title }
      ... on DiscountCodeFreeShipping { title }
    }
  }
}"""


def _input(reward: Reward, code: str, title: str) -> tuple[str, str, dict[str, Any]]:
    common: dict[str, Any] = {
        "title": title,
        "code": code,
        "startsAt": datetime.now(UTC).isoformat(),
        "customerSelection": {"all": True},
        "appliesOncePerCustomer": True,
        "usageLimit": 1,  # single use
    }
    match reward.kind:
        case RewardKind.FREE_SHIPPING:
            return (
                _FREE_SHIPPING,
                "discountCodeFreeShippingCreate",
                {**common, "destination": {"all": True}},
            )
        case RewardKind.PERCENTAGE:
            value: dict[str, Any] = {"percentage": float(reward.value) / 100}
        case RewardKind.FIXED_AMOUNT:
            value = {"discountAmount": {"amount": reward.value, "appliesOnEachItem": False}}
    gets = {"value": value, "items": {"all": True}}
    return _BASIC, "discountCodeBasicCreate", {**common, "customerGets": gets}


class DiscountCodes:
    def __init__(self, admin: ShopifyAdminClient, credentials: ShopCredentials) -> None:
        self._admin = admin
        self._credentials = credentials

    async def check_connected(self, merchant_id: str) -> None:
        """Raises ShopNotConnected when no code could be created for the merchant."""
        await self._credentials.shop_access(merchant_id)

    async def create(self, merchant_id: str, redemption_id: str, reward: Reward) -> str:
        """Creates the redemption's code (or finds it created by an earlier attempt)."""
        access = await self._credentials.shop_access(merchant_id)
        code, title = discount_code(redemption_id), discount_title(redemption_id)
        mutation, field, payload = _input(reward, code, title)
        data = await self._admin.graphql(
            access.shop, access.access_token, mutation, {"input": payload}
        )
        errors = (data.get(field) or {}).get("userErrors") or []
        if not errors:
            return code
        if [e.get("code") for e in errors] == ["TAKEN"] and await self._is_ours(
            access, code, title
        ):
            return code
        raise ShopifyRejected(f"Shopify refused discount code {code}: {errors}")

    async def _is_ours(self, access: ShopAccess, code: str, title: str) -> bool:
        data = await self._admin.graphql(access.shop, access.access_token, _BY_CODE, {"code": code})
        node = data.get("codeDiscountNodeByCode") or {}
        return bool((node.get("codeDiscount") or {}).get("title") == title)
