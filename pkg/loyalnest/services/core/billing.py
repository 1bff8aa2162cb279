"""Shopify Billing for paid plans: app subscriptions at Shopify, with the shop's token from Auth.

A paid plan is charged by Shopify (public apps must bill through it): `appSubscriptionCreate`
answers a `confirmationUrl` where the shop's owner approves the charge, and Shopify's signed
`app_subscriptions/update` webhook then reports the subscription's status (the consumer in
consumers.py applies it). Moving to a free plan cancels the paying subscription
(`appSubscriptionCancel`).

The shop's Admin API token comes from Auth (`GetShopAccessToken`, internal), asked with Core's
own service token bound to the merchant (`auth:shop-token`), never with the caller's: a user's
token is refused for that RPC whatever it carries. Nothing is cached: plan changes are rare
and each hand-out is audited by Auth.
"""

from __future__ import annotations

from typing import Any

from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.platform import shop_access
from loyalnest.platform.observability import get_logger
from loyalnest.platform.shop_access import ShopAccess, ShopTokens
from loyalnest.platform.shopify_admin import ShopifyAdminClient, ShopifyRejected
from loyalnest.services.core.domain import (
    SUBSCRIPTION_FINAL,
    NewSubscription,
    PlanPrice,
    SubscriptionRefused,
    subscription_name,
)

log = get_logger(__name__)

_CREATE = """
mutation PlanSubscription(
  $name: String!, $lineItems: [AppSubscriptionLineItemInput!]!, $returnUrl: URL!,
  $test: Boolean
) {
  appSubscriptionCreate(name: $name, lineItems: $lineItems, returnUrl: $returnUrl, test: $test) {
    appSubscription { id status test }
    confirmationUrl
    userErrors { field message }
  }
}"""

_CANCEL = """
mutation PlanSubscriptionCancel($id: ID!) {
  appSubscriptionCancel(id: $id) {
    appSubscription { id status }
    userErrors { field message }
  }
}"""

_STATUS = """
query PlanSubscriptionStatus($id: ID!) {
  node(id: $id) { ... on AppSubscription { id status } }
}"""


class ShopNotConnected(shop_access.ShopNotConnected):
    def __init__(self, merchant_id: str) -> None:
        super().__init__(
            merchant_id,
            "paid plans are billed through Shopify, open the app from the Shopify admin again",
        )


class ShopifyBilling:
    def __init__(
        self,
        admin: ShopifyAdminClient,
        auth: auth_pb2_grpc.AuthServiceStub | None,
        *,
        return_url: str,
        test: bool,
    ) -> None:
        # auth None: no Auth target or service credential configured: no shop is connected.
        self._admin = admin
        self._tokens = ShopTokens(auth, component="core", not_connected=ShopNotConnected)
        self._return_url = return_url
        self._test = test

    async def shop_access(self, merchant_id: str) -> ShopAccess:
        return await self._tokens.shop_access(merchant_id)

    async def subscribe(self, merchant_id: str, plan: str, price: PlanPrice) -> NewSubscription:
        """Asks Shopify for a recurring subscription to `plan`, pending the owner's approval."""
        access = await self.shop_access(merchant_id)
        variables: dict[str, Any] = {
            "name": subscription_name(plan),
            "returnUrl": self._return_url.format(shop=access.shop),
            "test": self._test,
            "lineItems": [
                {
                    "plan": {
                        "appRecurringPricingDetails": {
                            "price": {
                                "amount": str(price.amount),
                                "currencyCode": price.currency_code,
                            },
                            "interval": price.interval,
                        }
                    }
                }
            ],
        }
        data = await self._admin.graphql(access.shop, access.access_token, _CREATE, variables)
        payload = data.get("appSubscriptionCreate") or {}
        if payload.get("userErrors"):
            raise SubscriptionRefused(merchant_id, _describe(payload["userErrors"]))
        subscription = payload.get("appSubscription") or {}
        if not subscription.get("id") or not payload.get("confirmationUrl"):
            raise ShopifyRejected(f"appSubscriptionCreate answered no subscription: {payload}")
        log.info(
            "plan subscription created at Shopify",
            merchant_id=merchant_id,
            plan=plan,
            subscription_id=subscription["id"],
            test=self._test,
        )
        return NewSubscription(
            subscription_id=subscription["id"],
            confirmation_url=payload["confirmationUrl"],
            status=str(subscription.get("status") or "PENDING"),
            test=bool(subscription.get("test", self._test)),
        )

    async def cancel(self, merchant_id: str, subscription_id: str) -> None:
        """Cancels the subscription at Shopify; one that has ended already is fine (a retry
        of a downgrade whose first attempt cancelled it, then failed to commit)."""
        access = await self.shop_access(merchant_id)
        data = await self._admin.graphql(
            access.shop, access.access_token, _CANCEL, {"id": subscription_id}
        )
        payload = data.get("appSubscriptionCancel") or {}
        if not payload.get("userErrors"):
            return
        status = await self._admin.graphql(
            access.shop, access.access_token, _STATUS, {"id": subscription_id}
        )
        if ((status.get("node") or {}).get("status")) in SUBSCRIPTION_FINAL:
            return
        raise SubscriptionRefused(merchant_id, _describe(payload["userErrors"]))


def _describe(errors: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{'.'.join(e.get('field') or []) or '-'}: {e.get('message', '')}" for e in errors
    )
