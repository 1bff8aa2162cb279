"""Products through real processes: Auth (the shop's token), the edge (signed webhooks through
Envoy), Products and Campaign over a Kafka-protocol broker, Shopify played by the stand-in.

- The catalogue syncs by paging (250 a page, Shopify's cost bucket throttling the third page:
  waited out), again with nothing to write, then incrementally by updated_at;
- products/create, products/update and products/delete webhooks change it;
- orders through the edge move the products' RFM (product_rfm.updated);
- a campaign naming a product shows under GET /v1/api/products/campaigns, and its pause too.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from loyalnest.devstack.standins.shopify_admin import ShopifyAdminStandIn
from loyalnest.gateway import Upstream
from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.campaign.v1 import campaign_pb2, campaign_pb2_grpc
from loyalnest.platform.auth.service_identity import service_credential
from loyalnest.services.auth.service import SPEC as AUTH
from loyalnest.services.campaign.service import SPEC as CAMPAIGN
from loyalnest.services.campaign.service import CampaignSettings
from loyalnest.services.edge.service import SERVICE_NAME as EDGE_SERVICE
from loyalnest.services.edge.service import SPEC as EDGE
from loyalnest.services.edge.signing import shopify_headers, webhook_path
from loyalnest.services.products.service import SERVICE_NAME as PRODUCTS_SERVICE
from loyalnest.services.products.service import SPEC as PRODUCTS
from loyalnest.services.products.service import ProductsSettings
from tests.auth import merchant_headers, merchant_metadata
from tests.integration.broker import BrokerProcess
from tests.integration.conftest import eventually, service_settings_for_tests, serving
from tests.integration.shopify_standin import API_KEY, API_SECRET
from tests.integration.test_access_wiring import auth_with, edge_settings_asking, events_on
from tests.integration.test_auth_service import install
from tests.integration.test_gateway_validate import (
    Gateway,
    Response,
    gateway_config,
    http,
    running_gateway,
)
from tests.integration.test_products_service import outbox_rfm
from tests.integration.test_service_identity import MASTER_KEY

pytestmark = pytest.mark.integration

SECRET = "products-webhook-secret"
PERMISSIONS = ("products:read", "products:write")
BASE = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def shopify() -> Iterator[ShopifyAdminStandIn]:
    # A bucket of 300 points refilling 100 a second: a page of 250 costs 252, so after the
    # first page each one is throttled until the bucket holds enough again (about 2 s).
    standin = ShopifyAdminStandIn(
        api_key=API_KEY, api_secret=API_SECRET, bucket_size=300, restore_rate=100
    )
    standin.start()
    yield standin
    standin.stop()


@dataclass
class Mesh:
    gateway: Gateway
    campaign: campaign_pb2_grpc.CampaignServiceStub
    shop: str
    merchant_id: str

    @property
    def headers(self) -> dict[str, str]:
        return merchant_headers(self.merchant_id, PERMISSIONS)

    async def get(self, path: str) -> Response:
        return await http("GET", self.gateway.url + path, headers=self.headers)

    async def post(self, path: str, body: dict[str, Any]) -> Response:
        return await http("POST", self.gateway.url + path, headers=self.headers, json_body=body)

    async def deliver(self, topic: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        headers = shopify_headers(
            body, topic=topic, shop_domain=self.shop, secret=SECRET, event_id=str(uuid.uuid4())
        )
        response = await http(
            "POST", self.gateway.url + webhook_path(topic), body=body, headers=headers
        )
        assert response.status == 200, response.body
        assert "ACCEPTED" in response.body.decode(), response.body


@contextlib.asynccontextmanager
async def mesh(
    database_url: str,
    redis_url: str,
    shopify: ShopifyAdminStandIn,
    tmp_path: Path,
    *,
    sync_seconds: float = 3600,
) -> AsyncIterator[Mesh]:
    broker = BrokerProcess()
    await broker.start()
    events = events_on(broker)
    try:
        async with serving(AUTH, auth_with(database_url, redis_url, shopify, **events)) as auth:
            identity = {"call_targets": {"auth": auth.address}}
            edge_settings, _ = edge_settings_asking(
                auth, database_url, redis_url, secret=SECRET, cache_seconds=0.2, events=events
            )
            shop_api = {"shopify_admin_base_url": shopify.base_url, **identity, **events}
            products = service_settings_for_tests(
                ProductsSettings,
                database_url,
                redis_url=redis_url,
                service_credential=service_credential(MASTER_KEY, "products"),
                products_sync_interval_seconds=sync_seconds,
                **shop_api,
            )
            campaign = service_settings_for_tests(
                CampaignSettings,
                database_url,
                redis_url=redis_url,
                service_credential=service_credential(MASTER_KEY, "campaign"),
                **shop_api,
            )
            async with (
                serving(EDGE, edge_settings) as edge,
                serving(PRODUCTS, products) as products_service,
                serving(CAMPAIGN, campaign) as campaign_service,
                grpc.aio.insecure_channel(auth.address) as auth_channel,
                grpc.aio.insecure_channel(campaign_service.address) as campaign_channel,
            ):
                shop = f"p{uuid.uuid4().hex[:8]}.myshopify.com"
                installed = await install(
                    auth_pb2_grpc.AuthServiceStub(auth_channel), shopify, shop
                )
                upstreams = (
                    Upstream("edge", (EDGE_SERVICE,), (("127.0.0.1", edge.port),)),
                    Upstream(
                        "products", (PRODUCTS_SERVICE,), (("127.0.0.1", products_service.port),)
                    ),
                )
                config = gateway_config(upstreams[0], upstreams=upstreams)
                async with running_gateway(config, tmp_path, {"edge": 1, "products": 1}) as gw:
                    yield Mesh(
                        gw,
                        campaign_pb2_grpc.CampaignServiceStub(campaign_channel),
                        shop,
                        installed.merchant.merchant_id,
                    )
    finally:
        broker.close()


def product(product_id: int, title: str, updated: datetime) -> dict[str, Any]:
    """A products/create or products/update body as Shopify sends it (REST representation)."""
    return {
        "id": product_id,
        "admin_graphql_api_id": f"gid://shopify/Product/{product_id}",
        "title": title,
        "handle": title.lower().replace(" ", "-"),
        "vendor": "Webhook Co",
        "product_type": "Hats",
        "status": "active",
        "tags": "new",
        "updated_at": updated.isoformat(),
        "variants": [
            {"id": product_id * 100 + 1, "title": "One size", "sku": "H-1", "price": "19.00"}
        ],
    }


def order(order_id: int, customer_id: int, *lines: tuple[int, int, str]) -> dict[str, Any]:
    return {
        "id": order_id,
        "currency": "USD",
        "financial_status": "paid",
        "created_at": datetime.now(UTC).isoformat(),
        "customer": {"id": customer_id, "email": "ann@example.com"},
        "line_items": [
            {
                "id": order_id * 10 + n,
                "product_id": product_id,
                "quantity": quantity,
                "price": price,
                "discount_allocations": [],
            }
            for n, (product_id, quantity, price) in enumerate(lines)
        ],
    }


async def test_catalogue_sync_webhooks_rfm_and_campaigns(
    database_url: str, redis_url: str, shopify: ShopifyAdminStandIn, tmp_path: Path
) -> None:
    async with mesh(database_url, redis_url, shopify, tmp_path) as m:
        for number in range(600):
            shopify.add_product(
                m.shop,
                1_000_000 + number,
                f"Product {number:03d}",
                updated_at=BASE + timedelta(seconds=number),
                collection_ids=(4410,) if number % 2 == 0 else (),
            )

        # Full sync: three pages of up to 250; the second and third wait for Shopify's bucket.
        synced = await m.post("/v1/api/products/sync", {"full": True})
        assert synced.status == 200, synced.body
        assert synced.json() | {"synced_through": ""} == {
            "products_synced": "600",
            "pages": "3",
            "synced_through": "",
        }
        assert synced.json()["synced_through"] == "2026-11-01T00:09:59Z"
        assert shopify.products_throttled >= 1
        listed = await m.get("/v1/api/products?query=product%2004&page_size=100")
        # Both words: "Product 004", "Product 040" to "049", "Product 104", 204, 304, 404, 504.
        assert len(listed.json()["products"]) == 16
        one = (await m.get("/v1/api/products/1000042")).json()["product"]
        assert one["collection_ids"] == ["4410"] and one["variants"][0]["sku"] == "SKU-1000042"

        # Again: nothing new to write.
        again = await m.post("/v1/api/products/sync", {"full": True})
        assert again.json().get("products_synced", "0") == "0"
        # Two products edited at Shopify: an incremental sync reads just them (one page).
        shopify.touch_product(m.shop, 1_000_007, title="Product 007 renamed")
        shopify.touch_product(m.shop, 1_000_008, title="Product 008 renamed")
        incremental = await m.post("/v1/api/products/sync", {})
        assert incremental.status == 200, incremental.body
        assert (incremental.json()["products_synced"], incremental.json()["pages"]) == ("2", "1")
        renamed = (await m.get("/v1/api/products/1000007")).json()["product"]
        assert renamed["title"] == "Product 007 renamed"

        # Webhooks through Envoy and the edge: created, updated, deleted.
        now = datetime.now(UTC) + timedelta(minutes=1)
        await m.deliver("products/create", product(5_000_001, "Sun hat", now))
        await m.deliver("products/update", product(1_000_009, "Product 009 by webhook", now))
        await m.deliver("products/delete", {"id": 1_000_010})

        async def webhooks_applied() -> bool:
            created = await m.get("/v1/api/products/5000001")
            updated = await m.get("/v1/api/products/1000009")
            deleted = await m.get("/v1/api/products/1000010")
            return (
                created.status == 200
                and updated.json()["product"]["title"] == "Product 009 by webhook"
                and deleted.status == 404
            )

        await eventually(webhooks_applied, 30, "the product webhooks applied")

        # Orders through the edge: the products' RFM moves.
        assert (await m.get("/v1/api/products/rfm?product_id=5000001")).status == 404
        await m.deliver(
            "orders/create", order(880001, 71, (5_000_001, 2, "19.00"), (1_000_003, 1, "30.00"))
        )

        async def rfm(product_id: int) -> dict[str, Any] | None:
            response = await m.get(f"/v1/api/products/rfm?product_id={product_id}")
            return response.json()["rfm"] if response.status == 200 else None

        first = await eventually(lambda: rfm(5_000_001), 30, "the hat's RFM")
        assert (first["frequency"], first["buyers"], first["monetary_minor_units"]) == (
            "1",
            "1",
            "3800",
        )
        await m.deliver("orders/create", order(880002, 72, (5_000_001, 1, "19.00")))

        async def second_order() -> bool:
            found = await rfm(5_000_001)
            return found is not None and found["frequency"] == "2"

        await eventually(second_order, 30, "the hat's RFM after the second order")
        hat = await rfm(5_000_001)
        assert hat is not None and (hat["buyers"], hat["monetary_minor_units"]) == ("2", "5700")
        announced = [e for e in await outbox_rfm(database_url, m.merchant_id) if e[0] == "5000001"]
        assert announced == [("5000001", 1, 3800), ("5000001", 2, 5700)]

        # A campaign naming the hat (Campaign -> campaign.created -> Products).
        created = await m.campaign.CreateCampaign(
            campaign_pb2.CreateCampaignRequest(
                campaign=campaign_pb2.Campaign(
                    name="Hats off",
                    kind=campaign_pb2.CAMPAIGN_KIND_SHARED_CODE,
                    rules=campaign_pb2.DiscountRules(
                        type=campaign_pb2.DISCOUNT_TYPE_PERCENTAGE,
                        value="10",
                        product_ids=["5000001"],
                    ),
                    audience=campaign_pb2.Audience(all_customers=True),
                ),
                idempotency_key="hats-1",
            ),
            metadata=merchant_metadata(m.merchant_id, ("campaign:write",)),
        )
        sent = shopify.codes_of(m.shop)[created.campaign.code]["input"]["customerGets"]["items"]
        assert sent == {"products": {"productsToAdd": ["gid://shopify/Product/5000001"]}}

        async def touching(product_id: int) -> list[tuple[str, str]]:
            response = await m.get(f"/v1/api/products/campaigns?product_id={product_id}")
            return [(c["campaign_id"], c["state"]) for c in response.json().get("campaigns", [])]

        campaign_id = created.campaign.campaign_id

        async def listed_active() -> bool:
            return await touching(5_000_001) == [(campaign_id, "active")]

        await eventually(listed_active, 30, "the campaign listed for the hat")
        assert await touching(1_000_003) == []
        await m.campaign.PauseCampaign(
            campaign_pb2.PauseCampaignRequest(campaign_id=campaign_id, idempotency_key="hp"),
            metadata=merchant_metadata(m.merchant_id, ("campaign:write",)),
        )

        async def listed_paused() -> bool:
            return await touching(5_000_001) == [(campaign_id, "paused")]

        await eventually(listed_paused, 30, "the campaign paused for the hat")


async def test_the_periodic_sync_catches_up_without_webhooks(
    database_url: str, redis_url: str, shopify: ShopifyAdminStandIn, tmp_path: Path
) -> None:
    async with mesh(database_url, redis_url, shopify, tmp_path, sync_seconds=0.5) as m:
        shopify.add_product(m.shop, 2_000_001, "Scarf", updated_at=BASE)
        synced = await m.post("/v1/api/products/sync", {"full": True})
        assert synced.status == 200 and synced.json()["products_synced"] == "1", synced.body
        # Edited and created at Shopify, no webhook delivered: the next rounds read them.
        shopify.touch_product(m.shop, 2_000_001, title="Scarf, wool")
        shopify.add_product(m.shop, 2_000_002, "Gloves")

        async def caught_up() -> bool:
            scarf = await m.get("/v1/api/products/2000001")
            gloves = await m.get("/v1/api/products/2000002")
            return scarf.json()["product"]["title"] == "Scarf, wool" and gloves.status == 200

        await eventually(caught_up, 30, "the periodic sync to read the edits")
