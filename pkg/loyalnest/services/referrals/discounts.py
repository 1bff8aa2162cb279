"""The friend's discount at Shopify: the referral's code itself, created as a basic code
discount (`discountCodeBasicCreate`, Admin GraphQL) with the merchant's shop token from Auth
(`platform.shop_access.ShopTokens`, Referrals' service token, grant `auth:shop-token`).

One code per referral, usable once per customer (`appliesOncePerCustomer`) by anyone the
referrer shares it with, ending when the referral expires. Every attempt asks for the same
code, so a retry after a lost answer gets `TAKEN`; the code found under that name
(`codeDiscountNodeByCode`) is ours when its title names this referral, and then the earlier
attempt worked. Created after the referral is stored, never holding its transaction; a code
Shopify could not create now stays `pending` and the loop here tries again.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from prometheus_client import Counter

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.platform import shop_access
from loyalnest.platform.errors import LoyalNestError
from loyalnest.platform.observability import get_logger
from loyalnest.platform.shop_access import ShopAccess, ShopTokens
from loyalnest.platform.shopify_admin import ShopifyAdminClient, ShopifyRejected
from loyalnest.services.referrals.domain import Referral
from loyalnest.services.referrals.store import ReferralStore

log = get_logger(__name__)

DISCOUNTS = Counter(
    "loyalnest_referrals_friend_discounts_total",
    "Friend discount codes asked of Shopify, by outcome (created, found, failed).",
    ["outcome"],
)
BATCH = 50

_CREATE = """
mutation ReferralCode($input: DiscountCodeBasicInput!) {
  discountCodeBasicCreate(basicCodeDiscount: $input) {
    codeDiscountNode { id }
    userErrors { field code message }
  }
}"""

_BY_CODE = """
query ReferralCodeOwner($code: String!) {
  codeDiscountNodeByCode(code: $code) {
    id
    codeDiscount { ... on DiscountCodeBasic { title } }
  }
}"""


class ShopNotConnected(shop_access.ShopNotConnected):
    def __init__(self, merchant_id: str) -> None:
        super().__init__(merchant_id, "no friend discount codes can be created")


def title(referral: Referral) -> str:
    return f"LoyalNest referral {referral.referral_id}"


def discount_input(referral: Referral, program: core_pb2.ReferralProgram) -> dict[str, Any]:
    value = Decimal(program.friend_discount_value)
    if program.friend_discount_type == core_pb2.REFERRAL_DISCOUNT_TYPE_PERCENTAGE:
        gets: dict[str, Any] = {"percentage": float(value / 100)}
    else:
        gets = {"discountAmount": {"amount": str(value), "appliesOnEachItem": False}}
    payload: dict[str, Any] = {
        "title": title(referral),
        "code": referral.code,
        "startsAt": referral.created_at.astimezone(UTC).isoformat(),
        "customerSelection": {"all": True},
        # A friend's first order: once per customer (first-order checks are Referrals').
        "appliesOncePerCustomer": True,
        "customerGets": {"value": gets, "items": {"all": True}},
    }
    if referral.expires_at is not None:
        payload["endsAt"] = referral.expires_at.astimezone(UTC).isoformat()
    return payload


class FriendDiscounts:
    def __init__(self, store: ReferralStore, admin: ShopifyAdminClient, tokens: ShopTokens) -> None:
        self._store = store
        self._admin = admin
        self._tokens = tokens

    async def ensure(self, referral: Referral) -> bool:
        """Creates the referral's code at Shopify if it is pending; True once it exists.
        Failures are recorded on the referral (retried by `run`), never raised."""
        program = await self._store.program(referral.merchant_id)
        try:
            outcome = await self._create(referral, program)
        except (LoyalNestError, ValueError, ArithmeticError) as error:
            DISCOUNTS.labels("failed").inc()
            log.warning(
                "friend discount not created; retried later",
                merchant_id=referral.merchant_id,
                referral_id=referral.referral_id,
                error=type(error).__name__,
            )
            await self._store.discount_failed(referral, f"{type(error).__name__}: {error}")
            return False
        DISCOUNTS.labels(outcome).inc()
        await self._store.discount_created(referral)
        return True

    async def _create(self, referral: Referral, program: core_pb2.ReferralProgram) -> str:
        access = await self._tokens.shop_access(referral.merchant_id)
        data = await self._admin.graphql(
            access.shop, access.access_token, _CREATE, {"input": discount_input(referral, program)}
        )
        errors = (data.get("discountCodeBasicCreate") or {}).get("userErrors") or []
        if not errors:
            return "created"
        if [e.get("code") for e in errors] == ["TAKEN"] and await self._is_ours(access, referral):
            return "found"  # an earlier attempt created it; its answer was lost
        raise ShopifyRejected(f"Shopify refused referral code {referral.code}: {errors}")

    async def _is_ours(self, access: ShopAccess, referral: Referral) -> bool:
        data = await self._admin.graphql(
            access.shop, access.access_token, _BY_CODE, {"code": referral.code}
        )
        node = data.get("codeDiscountNodeByCode") or {}
        return bool((node.get("codeDiscount") or {}).get("title") == title(referral))

    async def run(self, interval_seconds: float) -> None:
        """Retries codes still pending (Shopify down, the shop's token unavailable)."""
        while True:
            try:
                for referral in await self._store.discounts_pending(BATCH, datetime.now(UTC)):
                    await self.ensure(referral)
            except Exception:
                log.exception("retrying friend discounts failed; next pass")
            await asyncio.sleep(interval_seconds)
