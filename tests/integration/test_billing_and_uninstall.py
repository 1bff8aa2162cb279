"""Issue 14, findings 4 and 5, through real processes: Auth, the edge (webhook ingress) and Core
over a Kafka-protocol broker, Shopify played by the OAuth + Admin API stand-in.

- Paid plans go through Shopify Billing: ChangePlan to a paid plan asks Shopify for an app
  subscription and answers its confirmationUrl with the plan unchanged; the plan changes when
  Shopify's signed app_subscriptions/update (edge -> webhook.received -> Core) reports it
  ACTIVE, once however often it is delivered, and returns to the free plan when the paying
  subscription ends; a free plan applies at once and cancels the subscription at Shopify.
- App uninstall: sessions end (refresh tokens too), the shop's tokens are dropped,
  merchant.uninstalled is published (Core ends the paid plan), later webhooks are skipped;
  a reinstall makes the merchant work again (merchant.reinstalled).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
import pytest
from google.api import httpbody_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from prometheus_client import REGISTRY

from loyalnest.devstack.standins.shopify_admin import ShopifyAdminStandIn
from loyalnest.gen.auth.v1 import auth_pb2, auth_pb2_grpc
from loyalnest.gen.core.v1 import core_pb2, core_pb2_grpc
from loyalnest.gen.edge.v1 import edge_pb2, edge_pb2_grpc
from loyalnest.gen.events.v1 import auth_pb2 as auth_events
from loyalnest.gen.events.v1 import envelope_pb2
from loyalnest.platform.auth.service_identity import service_credential
from loyalnest.platform.auth.tokens import SERVICE
from loyalnest.platform.events.topics import EDGE as EDGE_TOPIC
from loyalnest.services.auth.service import SPEC as AUTH
from loyalnest.services.core.service import SPEC as CORE
from loyalnest.services.edge.service import SPEC as EDGE
from loyalnest.services.edge.signing import shopify_headers
from tests.auth import ISSUER, token
from tests.integration.broker import BrokerProcess
from tests.integration.conftest import eventually, serving
from tests.integration.shopify_standin import API_KEY, API_SECRET
from tests.integration.test_access_wiring import auth_with, edge_settings_asking, events_on
from tests.integration.test_auth_service import bearer, install
from tests.integration.test_core_service import core_settings
from tests.integration.test_service_identity import MASTER_KEY

pytestmark = pytest.mark.integration

SECRET = "billing-webhook-secret"
SUBSCRIPTION_TOPIC = "app_subscriptions/update"
PLANS = {
    "free": {"customers_limit": 5, "orders_per_month_limit": 5},
    "plus": {"price": "29.00", "currency_code": "USD"},
    "pro": {"price": "99.00", "currency_code": "USD", "interval": "ANNUAL"},
}
SKIPPED = "loyalnest_merchant_work_skipped_total"


@pytest.fixture
def shopify() -> Iterator[ShopifyAdminStandIn]:
    """Shopify's OAuth and Admin API in one stand-in: the tokens Auth gets at install are
    the ones the Admin API accepts."""
    standin = ShopifyAdminStandIn(api_key=API_KEY, api_secret=API_SECRET)
    standin.start()
    yield standin
    standin.stop()


@dataclass
class Mesh:
    auth_address: str
    auth: auth_pb2_grpc.AuthServiceStub
    core: core_pb2_grpc.CoreServiceStub
    edge: edge_pb2_grpc.EdgeServiceStub
    # An edge without a service credential: it asks Auth nothing, so Core must check.
    unchecked_edge: edge_pb2_grpc.EdgeServiceStub

    async def deliver(
        self,
        shop: str,
        topic: str,
        payload: dict[str, Any],
        *,
        checked: bool = True,
        event_id: str | None = None,
    ) -> int:
        """A Shopify-signed delivery to the edge, as the gateway's transcoder hands it over."""
        body = json.dumps(payload).encode()
        headers = shopify_headers(
            body, topic=topic, shop_domain=shop, secret=SECRET, event_id=event_id
        )
        resource, action = topic.split("/")
        edge = self.edge if checked else self.unchecked_edge
        response = await edge.ReceiveWebhook(
            edge_pb2.ReceiveWebhookRequest(
                resource=resource,
                action=action,
                body=httpbody_pb2.HttpBody(content_type="application/json", data=body),
            ),
            metadata=tuple(headers.items()),
        )
        return int(response.outcome)


# How long the edge and Core remember Auth's answer about a merchant (platform/merchants.py):
# an uninstall reaches their checks within it.
MERCHANT_CACHE_SECONDS = 0.2


@contextlib.asynccontextmanager
async def mesh(
    database_url: str, redis_url: str, shopify: ShopifyAdminStandIn
) -> AsyncIterator[Mesh]:
    broker = BrokerProcess()
    await broker.start()
    events = events_on(broker)
    try:
        async with serving(AUTH, auth_with(database_url, redis_url, shopify, **events)) as auth:
            identity = {"call_targets": {"auth": auth.address}}
            edge_settings, unchecked_settings = edge_settings_asking(
                auth,
                database_url,
                redis_url,
                secret=SECRET,
                cache_seconds=MERCHANT_CACHE_SECONDS,
                events=events,
            )
            core = core_settings(
                database_url,
                redis_url,
                core_plans=PLANS,
                service_credential=service_credential(MASTER_KEY, "core"),
                shopify_admin_base_url=shopify.base_url,
                core_billing_test=True,
                core_merchant_cache_seconds=MERCHANT_CACHE_SECONDS,
                **identity,
                **events,
            )
            async with (
                serving(EDGE, edge_settings) as edge,
                serving(EDGE, unchecked_settings) as unchecked,
                serving(CORE, core) as core_service,
                grpc.aio.insecure_channel(auth.address) as auth_channel,
                grpc.aio.insecure_channel(core_service.address) as core_channel,
                grpc.aio.insecure_channel(edge.address) as edge_channel,
                grpc.aio.insecure_channel(unchecked.address) as unchecked_channel,
            ):
                yield Mesh(
                    auth.address,
                    auth_pb2_grpc.AuthServiceStub(auth_channel),
                    core_pb2_grpc.CoreServiceStub(core_channel),
                    edge_pb2_grpc.EdgeServiceStub(edge_channel),
                    edge_pb2_grpc.EdgeServiceStub(unchecked_channel),
                )
    finally:
        broker.close()


def latest_access_token(shopify: ShopifyAdminStandIn) -> str:
    # issued_tokens holds refresh tokens (shprt_) too.
    return [t for t in shopify.issued_tokens if t.startswith("shpat_")][-1]


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def rows(database_url: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(sql, params)
        return list(await cursor.fetchall())


async def auth_events_of(database_url: str, merchant_id: str, event_type: str) -> list[Message]:
    """The events Auth enqueued for the merchant (its outbox keeps them once relayed)."""
    found = await rows(
        database_url,
        "SELECT envelope FROM auth.outbox WHERE event_type = %s AND partition_key = %s",
        event_type,
        merchant_id,
    )
    payloads: list[Message] = []
    for (raw,) in found:
        envelope = envelope_pb2.Envelope.FromString(bytes(raw))
        payload = {
            "merchant.uninstalled": auth_events.MerchantUninstalled,
            "merchant.reinstalled": auth_events.MerchantReinstalled,
        }[event_type]()
        envelope.payload.Unpack(payload)
        payloads.append(payload)
    return payloads


def failure(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, list[str]]:
    """The status code and the PreconditionFailure violation types of an error."""
    types: list[str] = []
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)  # type: ignore[arg-type]
            for detail in status.details:
                precondition = error_details_pb2.PreconditionFailure()
                if detail.Unpack(precondition):
                    types += [v.type for v in precondition.violations]
    return error.code(), types


async def plan_of(m: Mesh, merchant_id: str) -> str:
    response = await m.core.GetPlan(
        core_pb2.GetPlanRequest(), metadata=bearer(token(merchant_id, ["core:read"]))
    )
    return response.plan.plan


def owner(merchant_id: str) -> tuple[tuple[str, str], ...]:
    # What an owner's token carries for Core (core:* satisfies core:plan).
    return bearer(token(merchant_id, ["core:*"]))


async def change_plan(
    m: Mesh, merchant_id: str, plan: str, key: str | None = None
) -> core_pb2.ChangePlanResponse:
    return await m.core.ChangePlan(
        core_pb2.ChangePlanRequest(plan=plan, idempotency_key=key or uuid.uuid4().hex),
        metadata=owner(merchant_id),
    )


async def until_plan(m: Mesh, merchant_id: str, plan: str) -> None:
    async def on_plan() -> bool:
        return await plan_of(m, merchant_id) == plan

    await eventually(on_plan, 30, f"the merchant on {plan!r}")


async def test_paid_plans_apply_only_when_shopify_reports_the_subscription_active(
    database_url: str, redis_url: str, shopify: ShopifyAdminStandIn
) -> None:
    async with mesh(database_url, redis_url, shopify) as m:
        shop = "billed.myshopify.com"
        merchant = (await install(m.auth, shopify, shop)).merchant.merchant_id

        # The owner asks for plus: a subscription at Shopify, the plan unchanged.
        pending = await change_plan(m, merchant, "plus", key="upgrade-1")
        assert pending.status == core_pb2.PLAN_CHANGE_STATUS_PENDING_APPROVAL
        assert pending.settings.plan.plan == "free"
        assert pending.confirmation_url.startswith(f"https://{shop}/admin/charges/")
        subscription = shopify.subscription(pending.subscription_id)
        assert subscription["status"] == "PENDING" and subscription["test"] is True
        assert subscription["name"] == "LoyalNest plus"
        details = subscription["line_items"][0]["plan"]["appRecurringPricingDetails"]
        assert details == {
            "price": {"amount": "29.00", "currencyCode": "USD"},
            "interval": "EVERY_30_DAYS",
        }
        assert await plan_of(m, merchant) == "free"
        # A retry of the same request: the same subscription, Shopify asked once.
        again = await change_plan(m, merchant, "plus", key="upgrade-1")
        assert (again.subscription_id, again.confirmation_url) == (
            pending.subscription_id,
            pending.confirmation_url,
        )
        assert len(shopify.subscriptions) == 1

        # Declined: nothing changes.
        declined = await change_plan(m, merchant, "pro")
        body = shopify.set_status(declined.subscription_id, "DECLINED")
        assert await m.deliver(shop, SUBSCRIPTION_TOPIC, body) == edge_pb2.WEBHOOK_OUTCOME_ACCEPTED

        # Approved: Shopify's signed webhook puts the merchant on plus.
        body = shopify.set_status(pending.subscription_id, "ACTIVE")
        assert await m.deliver(shop, SUBSCRIPTION_TOPIC, body) == edge_pb2.WEBHOOK_OUTCOME_ACCEPTED
        await until_plan(m, merchant, "plus")
        settings = await m.core.GetProgramSettings(
            core_pb2.GetProgramSettingsRequest(), metadata=owner(merchant)
        )
        # Delivered again as a new event (Shopify resends; the edge cannot tell): applied once.
        assert await m.deliver(shop, SUBSCRIPTION_TOPIC, body) == edge_pb2.WEBHOOK_OUTCOME_ACCEPTED
        # ...and another shop's delivery naming this subscription changes nothing.
        other = "other-billed.myshopify.com"
        other_merchant = (await install(m.auth, shopify, other)).merchant.merchant_id
        await m.deliver(other, SUBSCRIPTION_TOPIC, body)
        # An older report arriving late (PENDING before ACTIVE) changes nothing either.
        stale = json.loads(json.dumps(body))
        stale["app_subscription"] |= {"status": "CANCELLED", "updated_at": "2020-01-01T00:00:00Z"}
        await m.deliver(shop, SUBSCRIPTION_TOPIC, stale)
        marker = await change_plan(m, other_merchant, "plus")  # proof the consumer moved on
        marker_body = shopify.set_status(marker.subscription_id, "ACTIVE")
        await m.deliver(other, SUBSCRIPTION_TOPIC, marker_body)
        await until_plan(m, other_merchant, "plus")
        after = await m.core.GetProgramSettings(
            core_pb2.GetProgramSettingsRequest(), metadata=owner(merchant)
        )
        assert after.settings.version == settings.settings.version
        assert after.settings.plan.plan == "plus"

        # Frozen (the shop's own Shopify bill is unpaid): back to free; thawed: plus again.
        await m.deliver(
            shop, SUBSCRIPTION_TOPIC, shopify.set_status(pending.subscription_id, "FROZEN")
        )
        await until_plan(m, merchant, "free")
        await m.deliver(
            shop, SUBSCRIPTION_TOPIC, shopify.set_status(pending.subscription_id, "ACTIVE")
        )
        await until_plan(m, merchant, "plus")

        # Downgrade: at once, and the subscription is cancelled at Shopify; its CANCELLED
        # webhook then changes nothing.
        down = await change_plan(m, merchant, "free")
        assert down.status == core_pb2.PLAN_CHANGE_STATUS_APPLIED
        assert down.settings.plan.plan == "free"
        assert shopify.subscription(pending.subscription_id)["status"] == "CANCELLED"
        cancelled = shopify.webhooks[-1]
        assert cancelled[2]["app_subscription"]["status"] == "CANCELLED"
        await m.deliver(shop, SUBSCRIPTION_TOPIC, cancelled[2])

        # Throttled by Shopify: the mutation is sent again once the bucket allows it.
        shopify.throttle_next = 1
        shopify.throttle_status = 429
        upgrade = await change_plan(m, merchant, "pro")
        assert upgrade.status == core_pb2.PLAN_CHANGE_STATUS_PENDING_APPROVAL
        assert shopify.throttle_next == 0
        assert (
            shopify.subscription(upgrade.subscription_id)["line_items"][0]["plan"][
                "appRecurringPricingDetails"
            ]["interval"]
            == "ANNUAL"
        )
        await m.deliver(
            shop, SUBSCRIPTION_TOPIC, shopify.set_status(upgrade.subscription_id, "ACTIVE")
        )
        await until_plan(m, merchant, "pro")
        # Expired (e.g. a trial or a charge that lapsed): back to free.
        await m.deliver(
            shop, SUBSCRIPTION_TOPIC, shopify.set_status(upgrade.subscription_id, "EXPIRED")
        )
        await until_plan(m, merchant, "free")

        # Shopify refuses a real charge on a development store: a clear FAILED_PRECONDITION.
        dev = "dev-store.myshopify.com"
        shopify.development_stores.add(dev)
        dev_merchant = (await install(m.auth, shopify, dev)).merchant.merchant_id
        async with (
            serving(
                CORE,
                core_settings(
                    database_url,
                    redis_url,
                    core_plans=PLANS,
                    service_credential=service_credential(MASTER_KEY, "core"),
                    shopify_admin_base_url=shopify.base_url,
                    core_billing_test=False,
                    call_targets={"auth": m.auth_address},
                ),
            ) as live_core,
            grpc.aio.insecure_channel(live_core.address) as channel,
        ):
            live = core_pb2_grpc.CoreServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await live.ChangePlan(
                    core_pb2.ChangePlanRequest(plan="plus", idempotency_key="dev-1"),
                    metadata=owner(dev_merchant),
                )
            assert failure(refused.value) == (
                grpc.StatusCode.FAILED_PRECONDITION,
                ["BILLING_REFUSED"],
            )
        # A merchant without an installed shop (a development token's): not connected.
        with pytest.raises(grpc.aio.AioRpcError) as unconnected:
            await change_plan(m, str(uuid.uuid4()), "plus")
        assert failure(unconnected.value) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            ["SHOP_NOT_CONNECTED"],
        )
        assert await plan_of(m, dev_merchant) == "free"


async def test_uninstall_ends_everything_for_the_merchant_and_a_reinstall_restores_it(
    database_url: str, redis_url: str, shopify: ShopifyAdminStandIn
) -> None:
    async with mesh(database_url, redis_url, shopify) as m:
        shop = "leaving.myshopify.com"
        webhooks_recorded = "SELECT count(*) FROM auth.processed_events WHERE topic = %s"
        recorded_before = await rows(database_url, webhooks_recorded, EDGE_TOPIC.name)
        installed = await install(m.auth, shopify, shop)
        merchant = installed.merchant.merchant_id
        first_token = latest_access_token(shopify)
        core_token = bearer(
            ISSUER.mint(
                subject="service:core",
                merchant_id=merchant,
                permissions=["auth:shop-token"],
                token_type=SERVICE,
                audience=["loyalnest/auth"],
            )
        )
        shop_token = await m.auth.GetShopAccessToken(
            auth_pb2.GetShopAccessTokenRequest(), metadata=core_token
        )
        assert shop_token.access_token == first_token
        # On a paid plan, with another subscription still waiting for approval.
        paid = await change_plan(m, merchant, "plus")
        await m.deliver(
            shop, SUBSCRIPTION_TOPIC, shopify.set_status(paid.subscription_id, "ACTIVE")
        )
        await until_plan(m, merchant, "plus")
        waiting = await change_plan(m, merchant, "pro")

        # Shopify: app/uninstalled.
        outcome = await m.deliver(
            shop, "app/uninstalled", {"id": 690933842, "myshopify_domain": shop}
        )
        assert outcome == edge_pb2.WEBHOOK_OUTCOME_ACCEPTED

        async def published() -> list[Message]:
            return await auth_events_of(database_url, merchant, "merchant.uninstalled")

        uninstalled = await eventually(published, 30, "merchant.uninstalled")
        assert len(uninstalled) == 1
        # Auth recorded the uninstall in its inbox, and not the subscription webhooks before
        # it on the same partition: other services' business, nothing for Auth to apply.
        recorded = await rows(database_url, webhooks_recorded, EDGE_TOPIC.name)
        assert recorded[0][0] == recorded_before[0][0] + 1
        assert uninstalled[0].shop_domain == shop  # type: ignore[attr-defined]
        # The offline token is gone from Auth's database, access and refresh alike.
        assert await rows(
            database_url,
            "SELECT access_token, refresh_token, status FROM auth.merchants WHERE merchant_id = %s",
            merchant,
        ) == [(None, None, "uninstalled")]
        with pytest.raises(grpc.aio.AioRpcError) as no_token:
            await m.auth.GetShopAccessToken(
                auth_pb2.GetShopAccessTokenRequest(), metadata=core_token
            )
        assert no_token.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        # The owner's session is over: its refresh token is refused, its access token revoked.
        with pytest.raises(grpc.aio.AioRpcError) as refresh:
            await m.auth.RefreshToken(
                auth_pb2.RefreshTokenRequest(refresh_token=installed.tokens.refresh_token)
            )
        assert refresh.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as revoked:
            await m.core.GetPlan(
                core_pb2.GetPlanRequest(), metadata=bearer(installed.tokens.access_token)
            )
        assert revoked.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Core consumed merchant.uninstalled: Shopify ended the charges, the paid plan ends.
        await until_plan(m, merchant, "free")

        # Later webhooks: the edge skips them; so does Core's consumer when an edge that does
        # not check let one through (the approval of the subscription left pending). Once the
        # cache period is over: on a fast run everything above takes less, and the edge and Core
        # would still hold the "active" they were told for the app/uninstalled delivery itself.
        await asyncio.sleep(MERCHANT_CACHE_SECONDS * 1.5)
        late = shopify.set_status(waiting.subscription_id, "ACTIVE")
        assert await m.deliver(shop, SUBSCRIPTION_TOPIC, late) == edge_pb2.WEBHOOK_OUTCOME_SKIPPED
        before = counter(SKIPPED, component="core", what="webhook.received", reason="uninstalled")
        assert (
            await m.deliver(shop, SUBSCRIPTION_TOPIC, late, checked=False)
            == edge_pb2.WEBHOOK_OUTCOME_ACCEPTED
        )

        async def core_skipped() -> bool:
            now = counter(SKIPPED, component="core", what="webhook.received", reason="uninstalled")
            return now >= before + 1

        await eventually(core_skipped, 30, "Core to skip the uninstalled merchant's webhook")
        assert await plan_of(m, merchant) == "free"

        # Reinstall: the same merchant, active again, with a new token.
        again = await install(m.auth, shopify, shop)
        assert again.merchant.merchant_id == merchant and not again.created
        assert [
            e.shop_domain
            for e in await auth_events_of(  # type: ignore[attr-defined]
                database_url, merchant, "merchant.reinstalled"
            )
        ] == [shop]
        await m.auth.ValidateMerchant(
            auth_pb2.ValidateMerchantRequest(merchant_id=merchant),
            metadata=bearer(token(None, ["auth:validate"])),
        )
        renewed = await m.auth.GetShopAccessToken(
            auth_pb2.GetShopAccessTokenRequest(), metadata=core_token
        )
        assert renewed.access_token != first_token
        assert renewed.access_token == latest_access_token(shopify)
        # ...and billing works again for it, with the new token, once the edge's and Core's
        # "uninstalled" (told for the late webhook just above) is past its cache period.
        upgrade = await change_plan(m, merchant, "plus")
        assert upgrade.status == core_pb2.PLAN_CHANGE_STATUS_PENDING_APPROVAL
        await asyncio.sleep(MERCHANT_CACHE_SECONDS * 1.5)
        assert (
            await m.deliver(
                shop, SUBSCRIPTION_TOPIC, shopify.set_status(upgrade.subscription_id, "ACTIVE")
            )
            == edge_pb2.WEBHOOK_OUTCOME_ACCEPTED
        )
        await until_plan(m, merchant, "plus")
