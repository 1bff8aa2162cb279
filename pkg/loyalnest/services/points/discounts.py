"""Single-use Shopify discount codes (and gift cards) for redeemed rewards, and the shop
credentials they need.

The code is derived from the redemption (merchant, redemption id, customer) under a secret
key (HMAC-SHA256), so nobody can compute another redemption's code, and every attempt for one
redemption asks Shopify for the same code: a retry after a lost answer gets `TAKEN`, and the
code found under that name is ours if its title names this redemption (then the earlier
attempt worked). The code is bound to the redeeming customer (`customerSelection`), so a code
seen by someone else is of no use to them.

Shop credentials: the merchant's offline Admin API token is obtained by Auth during the OAuth
install (DESIGN §7) and stays there, encrypted; `ShopCredentials` is the seam, and
`platform.shop_access.ShopTokens` asks Auth for it (`GetShopAccessToken`, with Points' own
service token) whenever a code is created.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from loyalnest.platform import shop_access
from loyalnest.platform.errors import FailedPrecondition
from loyalnest.platform.shop_access import ShopAccess
from loyalnest.platform.shopify_admin import ShopifyAdminClient, ShopifyRejected
from loyalnest.services.points.domain import (
    Redemption,
    RedemptionNotCancellable,
    Reward,
    RewardKind,
)


class ShopNotConnected(shop_access.ShopNotConnected):
    def __init__(self, merchant_id: str) -> None:
        super().__init__(merchant_id, "no discount codes can be created")


class ShopCredentials(Protocol):
    async def shop_access(self, merchant_id: str) -> ShopAccess:
        """Raises ShopNotConnected when the merchant has no shop token."""
        ...


class NotAShopifyCustomer(FailedPrecondition):
    def __init__(self, customer_id: str) -> None:
        super().__init__(
            "a reward's discount code is bound to the customer at Shopify: customer_id must be"
            " the customer's Shopify id (digits)",
            violation_type="NOT_A_SHOPIFY_CUSTOMER",
            subject=f"customer/{customer_id}",
        )


def shopify_customer_gid(customer_id: str) -> str:
    if not (customer_id.isascii() and customer_id.isdigit()):
        raise NotAShopifyCustomer(customer_id)
    return f"gid://shopify/Customer/{customer_id}"


def discount_code(key: bytes, merchant_id: str, redemption_id: str, customer_id: str) -> str:
    """Unguessable without `key`: 80 bits of HMAC-SHA256 in base32."""
    message = "\0".join((merchant_id, redemption_id, customer_id)).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return "LN-" + base64.b32encode(digest).decode()[:16]


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
      ... on DiscountCodeBasic { title asyncUsageCount }
      ... on DiscountCodeFreeShipping { title asyncUsageCount }
    }
  }
}"""

_DEACTIVATE = """
mutation RewardCodeOff($id: ID!) {
  discountCodeDeactivate(id: $id) {
    codeDiscountNode { id }
    userErrors { field code message }
  }
}"""


_VARIANT_PRICE = """
query RewardVariant($id: ID!) {
  productVariant(id: $id) { id price }
}"""


def _items(reward: Reward) -> dict[str, Any]:
    """What the code takes its value off (customerGets.items): the order, or the reward's
    products or collections (Shopify takes one of the three)."""
    if reward.product_ids:
        return {"products": {"productsToAdd": list(reward.product_ids)}}
    if reward.collection_ids:
        return {"collections": {"add": list(reward.collection_ids)}}
    return {"all": True}


def discount_input(
    reward: Reward,
    code: str,
    title: str,
    customer_id: str,
    *,
    starts_at: datetime,
    ends_at: datetime | None,
    variant_price: str = "",
) -> tuple[str, str, dict[str, Any]]:
    """The mutation, its payload field and its input for a reward's code."""
    common: dict[str, Any] = {
        "title": title,
        "code": code,
        "startsAt": starts_at.isoformat(),
        # Only the redeeming customer can use it (API 2025-10: customerSelection).
        "customerSelection": {"customers": {"add": [shopify_customer_gid(customer_id)]}},
        "appliesOncePerCustomer": True,
        "usageLimit": 1,  # single use
    }
    if ends_at is not None:
        common["endsAt"] = ends_at.isoformat()
    if reward.min_subtotal:
        common["minimumRequirement"] = {
            "subtotal": {"greaterThanOrEqualToSubtotal": reward.min_subtotal}
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
            items = _items(reward)
        case RewardKind.FIXED_AMOUNT:
            value = {"discountAmount": {"amount": reward.value, "appliesOnEachItem": False}}
            items = _items(reward)
        case RewardKind.FREE_PRODUCT:
            # 100% off one unit: the variant's price off the variant, once per order (not
            # on each item), so two units in the cart cost one.
            value = {"discountAmount": {"amount": variant_price, "appliesOnEachItem": False}}
            items = {"products": {"productVariantsToAdd": [reward.variant_id]}}
        case RewardKind.GIFT_CARD:  # pragma: no cover - gift cards are no discount codes
            raise ValueError("a gift card reward has no discount code")
    gets = {"value": value, "items": items}
    return _BASIC, "discountCodeBasicCreate", {**common, "customerGets": gets}


class VariantNotFound(FailedPrecondition):
    def __init__(self, variant_id: str) -> None:
        super().__init__(
            f"the reward's product variant {variant_id} does not exist in the shop",
            violation_type="VARIANT_NOT_FOUND",
            subject=f"product_variant/{variant_id}",
        )


class DiscountCodes:
    def __init__(
        self, admin: ShopifyAdminClient, credentials: ShopCredentials, *, code_key: bytes
    ) -> None:
        """`code_key`: the secret codes are derived under, the same in every replica."""
        self._admin = admin
        self._credentials = credentials
        self._key = code_key

    async def check_connected(self, merchant_id: str) -> None:
        """Raises ShopNotConnected when no code could be created for the merchant."""
        await self._credentials.shop_access(merchant_id)

    def code_of(self, merchant_id: str, redemption_id: str, customer_id: str) -> str:
        return discount_code(self._key, merchant_id, redemption_id, customer_id)

    async def create(self, redemption: Redemption, reward: Reward) -> str:
        """Creates the redemption's code (or finds it created by an earlier attempt), valid
        from the redemption until its expiry."""
        merchant_id, redemption_id = redemption.merchant_id, redemption.redemption_id
        customer_id = redemption.customer_id
        access = await self._credentials.shop_access(merchant_id)
        code = self.code_of(merchant_id, redemption_id, customer_id)
        title = discount_title(redemption_id)
        price = ""
        if reward.kind is RewardKind.FREE_PRODUCT:
            found = await self._admin.graphql(
                access.shop, access.access_token, _VARIANT_PRICE, {"id": reward.variant_id}
            )
            price = str((found.get("productVariant") or {}).get("price") or "")
            if not price:
                raise VariantNotFound(reward.variant_id)
        mutation, field, payload = discount_input(
            reward,
            code,
            title,
            customer_id,
            starts_at=redemption.created_at,
            ends_at=redemption.expires_at,
            variant_price=price,
        )
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

    async def created(self, merchant_id: str, redemption_id: str, customer_id: str) -> str | None:
        """The redemption's code if it exists in the shop (`codeDiscountNodeByCode`), else None:
        after an attempt whose answer never came, whether it took effect."""
        access = await self._credentials.shop_access(merchant_id)
        code = self.code_of(merchant_id, redemption_id, customer_id)
        return code if await self._is_ours(access, code, discount_title(redemption_id)) else None

    async def _is_ours(self, access: ShopAccess, code: str, title: str) -> bool:
        data = await self._admin.graphql(access.shop, access.access_token, _BY_CODE, {"code": code})
        node = data.get("codeDiscountNodeByCode") or {}
        return bool((node.get("codeDiscount") or {}).get("title") == title)

    async def deactivate(self, merchant_id: str, redemption_id: str, customer_id: str) -> None:
        """Deactivates the redemption's code at Shopify, unless it was used (then
        RedemptionNotCancellable). Deactivating twice is harmless, so after a timeout the call
        is simply repeated; a code that does not exist (never created) needs nothing."""
        access = await self._credentials.shop_access(merchant_id)
        code = self.code_of(merchant_id, redemption_id, customer_id)
        data = await self._admin.graphql(access.shop, access.access_token, _BY_CODE, {"code": code})
        node = data.get("codeDiscountNodeByCode") or {}
        found = node.get("codeDiscount") or {}
        if found.get("title") != discount_title(redemption_id):
            return
        if int(found.get("asyncUsageCount") or 0) > 0:
            raise RedemptionNotCancellable(redemption_id, "its discount code was used")
        answer = await self._admin.graphql(
            access.shop, access.access_token, _DEACTIVATE, {"id": node["id"]}
        )
        errors = (answer.get("discountCodeDeactivate") or {}).get("userErrors") or []
        if errors:
            raise ShopifyRejected(f"Shopify refused to deactivate {code}: {errors}")


# ---- gift cards (REWARD_KIND_GIFT_CARD) ---------------------------------------------------

_GIFT_CARD_CREATE = """
mutation RewardGiftCard($input: GiftCardCreateInput!) {
  giftCardCreate(input: $input) {
    giftCard { id lastCharacters }
    giftCardCode
    userErrors { field code message }
  }
}"""

_GIFT_CARDS_OF = """
query RewardGiftCards($query: String!) {
  giftCards(first: 50, query: $query) {
    nodes { id note lastCharacters }
  }
}"""

_GIFT_CARD = """
query RewardGiftCard($id: ID!) {
  giftCard(id: $id) { id enabled balance { amount } initialValue { amount } }
}"""

_GIFT_CARD_DEACTIVATE = """
mutation RewardGiftCardOff($id: ID!) {
  giftCardDeactivate(id: $id) {
    giftCard { id enabled }
    userErrors { field code message }
  }
}"""


@dataclass(frozen=True)
class IssuedGiftCard:
    gift_card_id: str
    last_characters: str
    # The code, only from the call that created the card (Shopify shows it once); "" for a
    # card found again.
    code: str = ""


class GiftCards:
    """A redemption's Shopify gift card (giftCardCreate), bound to the customer, with the
    redemption named in its note. Shopify draws the code (16 random characters) and shows it
    once, in the create answer: Points hands it to the caller and keeps only the last
    characters and the card's id. Gift card mutations take no idempotency key, so before
    creating, a redemption's card is looked up by its note (giftCards, filtered by customer
    and creation time): an earlier attempt whose answer was lost left a card whose code
    nobody has; `orphan` finds it so it is deactivated rather than a second card made."""

    def __init__(self, admin: ShopifyAdminClient, credentials: ShopCredentials) -> None:
        self._admin = admin
        self._credentials = credentials

    async def orphan(self, redemption: Redemption) -> IssuedGiftCard | None:
        """The card an earlier attempt for `redemption` created, if any."""
        access = await self._credentials.shop_access(redemption.merchant_id)
        since = (redemption.created_at - timedelta(minutes=5)).astimezone(UTC)
        query = (
            f"customer_id:{redemption.customer_id}"
            f" created_at:>='{since.strftime('%Y-%m-%dT%H:%M:%SZ')}'"
        )
        data = await self._admin.graphql(
            access.shop, access.access_token, _GIFT_CARDS_OF, {"query": query}
        )
        title = discount_title(redemption.redemption_id)
        for node in (data.get("giftCards") or {}).get("nodes") or []:
            if node.get("note") == title:
                return IssuedGiftCard(node["id"], str(node.get("lastCharacters") or ""))
        return None

    async def create(self, redemption: Redemption, reward: Reward) -> IssuedGiftCard:
        access = await self._credentials.shop_access(redemption.merchant_id)
        card_input: dict[str, Any] = {
            "initialValue": reward.value,
            "customerId": shopify_customer_gid(redemption.customer_id),
            "note": discount_title(redemption.redemption_id),
        }
        if redemption.expires_at is not None:
            card_input["expiresOn"] = redemption.expires_at.astimezone(UTC).date().isoformat()
        # giftCardCreate has no idempotency key: never sent twice (a lost answer is settled
        # by looking the card up; see rewards.py).
        data = await self._admin.graphql(
            access.shop,
            access.access_token,
            _GIFT_CARD_CREATE,
            {"input": card_input},
            repeatable=False,
        )
        made = data.get("giftCardCreate") or {}
        errors = made.get("userErrors") or []
        card = made.get("giftCard") or {}
        if errors or not card.get("id") or not made.get("giftCardCode"):
            raise ShopifyRejected(f"Shopify refused the gift card: {errors}")
        code = str(made["giftCardCode"])
        return IssuedGiftCard(card["id"], str(card.get("lastCharacters") or code[-4:]), code)

    async def deactivate(
        self, merchant_id: str, redemption_id: str, gift_card_id: str, *, unless_used: bool
    ) -> None:
        """Deactivates the card (idempotent at Shopify); with `unless_used`, a card with any
        of its value spent is RedemptionNotCancellable instead."""
        access = await self._credentials.shop_access(merchant_id)
        if unless_used:
            data = await self._admin.graphql(
                access.shop, access.access_token, _GIFT_CARD, {"id": gift_card_id}
            )
            card = data.get("giftCard") or {}
            balance = Decimal(str((card.get("balance") or {}).get("amount") or "0"))
            initial = Decimal(str((card.get("initialValue") or {}).get("amount") or "0"))
            if card and balance < initial:
                raise RedemptionNotCancellable(redemption_id, "its gift card was used")
        answer = await self._admin.graphql(
            access.shop, access.access_token, _GIFT_CARD_DEACTIVATE, {"id": gift_card_id}
        )
        errors = (answer.get("giftCardDeactivate") or {}).get("userErrors") or []
        if errors:
            raise ShopifyRejected(f"Shopify refused to deactivate {gift_card_id}: {errors}")
