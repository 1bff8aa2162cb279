"""The Products service against a real PostgreSQL and Redis: the events it applies (handed to
its handlers as the consumer would), its RPCs over gRPC and REST through a real Envoy, export
and erasure of a customer's data, and its isolation table. Through the broker, the edge and
the Shopify stand-in (sync by paging, webhooks, orders): test_products_shopify.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf.message import Message

from loyalnest.gateway import Upstream
from loyalnest.gen.events.v1 import campaign_pb2 as campaign_events
from loyalnest.gen.events.v1 import envelope_pb2, gateway_pb2, products_pb2, rfm_pb2
from loyalnest.gen.products.v1 import products_pb2 as pb
from loyalnest.gen.products.v1 import products_pb2_grpc
from loyalnest.platform.cache import client_from_url
from loyalnest.platform.events.envelope import ConsumedEvent, new_event
from loyalnest.platform.events.inbox import Handler
from loyalnest.platform.postgres import Database
from loyalnest.platform.protos import timestamp
from loyalnest.platform.server import RunningService
from loyalnest.services.products import consumers, events
from loyalnest.services.products.service import DATABASE, SERVICE_NAME, SPEC, ProductsSettings
from loyalnest.services.products.store.campaigns import CampaignsStore
from loyalnest.services.products.store.catalogue import CatalogueStore
from loyalnest.services.products.store.sales import SalesStore
from tests.auth import merchant_headers, merchant_metadata
from tests.integration.conftest import serve_for_test, service_settings_for_tests
from tests.integration.isolation import Case, Metadata, Table
from tests.integration.test_gateway_validate import Gateway, gateway_config, http, running_gateway

pytestmark = pytest.mark.integration

READ, WRITE = "products:read", "products:write"
Stub = products_pb2_grpc.ProductsServiceStub
Served = tuple[RunningService, Stub]


@pytest.fixture
async def served(database_url: str, redis_url: str) -> AsyncIterator[Served]:
    settings = service_settings_for_tests(ProductsSettings, database_url, redis_url=redis_url)
    async with serve_for_test(SPEC, settings, Stub) as running_service:
        yield running_service


@pytest.fixture
def stub(served: Served) -> Stub:
    return served[1]


@pytest.fixture
async def database(served: Served, database_url: str) -> AsyncIterator[Database]:
    """The service's database (migrated by the served service), for the stores of the test's
    own handlers."""
    database = Database(service_settings_for_tests(ProductsSettings, database_url), DATABASE)
    await database.open()
    yield database
    await database.close()


@pytest.fixture
async def sales(database: Database, redis_url: str) -> AsyncIterator[SalesStore]:
    client = client_from_url(redis_url)
    yield SalesStore(database, client, ttl_seconds=300)
    await client.aclose()


@pytest.fixture
def handlers(database: Database, sales: SalesStore) -> dict[str, Handler]:
    """The service's event handlers, as its consumer runs them."""
    return consumers.handlers(CatalogueStore(database), sales, CampaignsStore(database))


def consumed(merchant: str, payload: Message, at: datetime | None = None) -> ConsumedEvent:
    event = new_event(merchant, payload, occurred_at=at)
    return ConsumedEvent(
        envelope=event.envelope,
        spec=event.spec,
        payload=payload,
        consumer=events.CONSUMER_GROUP,
        topic=event.spec.topic.name,
        partition=0,
        offset=0,
    )


def product_body(product_id: int, title: str, updated: datetime, **more: Any) -> dict[str, Any]:
    return {
        "id": product_id,
        "title": title,
        "handle": title.lower().replace(" ", "-"),
        "vendor": more.get("vendor", "Acme"),
        "product_type": "Shoes",
        "status": "active",
        "tags": more.get("tags", "summer, sale"),
        "updated_at": updated.isoformat(),
        "variants": [
            {"id": product_id * 10, "title": "M", "sku": f"S-{product_id}", "price": "30.00"}
        ],
    }


def product_webhook(topic: str, body: dict[str, Any]) -> gateway_pb2.WebhookReceived:
    return gateway_pb2.WebhookReceived(
        topic=topic,
        payload_version=2,
        body=json.dumps(body).encode(),
        shop_domain="s.myshopify.com",
    )


def order_webhook(
    topic: str, order_id: str, customer: str, lines: list[tuple[str, int, str, str]]
) -> gateway_pb2.WebhookReceived:
    order = gateway_pb2.ShopifyOrder(
        order_id=order_id,
        customer_id=customer,
        currency="USD",
        financial_status="paid",
        line_items=[
            gateway_pb2.ShopifyLineItem(
                line_item_id=f"{order_id}{i}", product_id=p, quantity=q, price=price, discount=d
            )
            for i, (p, q, price, d) in enumerate(lines)
        ],
        created_time=timestamp(datetime.now(UTC)),
    )
    return gateway_pb2.WebhookReceived(
        topic=topic, payload_version=2, order=order, customer_id=customer
    )


async def outbox_rfm(database_url: str, merchant_id: str) -> list[tuple[str, int, int]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT envelope FROM products.outbox WHERE event_type = 'product_rfm.updated'"
            " ORDER BY id"
        )
        found = []
        for (raw,) in await cursor.fetchall():
            envelope = envelope_pb2.Envelope.FromString(bytes(raw))
            if envelope.merchant_id == merchant_id:
                payload = products_pb2.ProductRfmUpdated()
                envelope.payload.Unpack(payload)
                found.append(
                    (
                        payload.product_id,
                        payload.score.frequency,
                        payload.score.monetary_minor_units,
                    )
                )
        return found


async def test_catalogue_from_webhooks_search_and_paging(
    stub: Stub, handlers: dict[str, Handler], merchant_id: str
) -> None:
    now = datetime.now(UTC)
    for number, title in ((101, "Trail runner"), (102, "Road runner"), (103, "Wool socks")):
        webhook = product_webhook("products/create", product_body(number, title, now))
        assert await handlers["webhook.received"](consumed(merchant_id, webhook))
    # An update: newer wins; an older version delivered late changes nothing.
    newer = product_body(101, "Trail runner GTX", now + timedelta(minutes=1), tags="winter")
    await handlers["webhook.received"](
        consumed(merchant_id, product_webhook("products/update", newer))
    )
    stale = product_body(101, "Trail runner (old)", now - timedelta(minutes=1))
    await handlers["webhook.received"](
        consumed(merchant_id, product_webhook("products/update", stale))
    )
    read = merchant_metadata(merchant_id, (READ,))
    got = await stub.GetProduct(pb.GetProductRequest(product_id="101"), metadata=read)
    assert got.product.title == "Trail runner GTX" and list(got.product.tags) == ["winter"]
    assert got.product.variants[0].sku == "S-101"

    runners = await stub.ListProducts(pb.ListProductsRequest(query="RUNNER"), metadata=read)
    assert [p.product_id for p in runners.products] == ["102", "101"]  # by title
    first = await stub.ListProducts(pb.ListProductsRequest(page_size=2), metadata=read)
    assert len(first.products) == 2 and first.next_page_token
    rest = await stub.ListProducts(
        pb.ListProductsRequest(page_size=2, page_token=first.next_page_token), metadata=read
    )
    assert [p.title for p in rest.products] == ["Wool socks"] and not rest.next_page_token
    with pytest.raises(grpc.aio.AioRpcError) as other_query:
        await stub.ListProducts(
            pb.ListProductsRequest(query="socks", page_token=first.next_page_token), metadata=read
        )
    assert other_query.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # "%" is a character, not a wildcard.
    assert not (await stub.ListProducts(pb.ListProductsRequest(query="%"), metadata=read)).products

    await handlers["webhook.received"](
        consumed(merchant_id, product_webhook("products/delete", {"id": 103}))
    )
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await stub.GetProduct(pb.GetProductRequest(product_id="103"), metadata=read)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await stub.GetProduct(pb.GetProductRequest(product_id="gid://x"), metadata=read)
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_product_rfm_from_orders(
    stub: Stub, handlers: dict[str, Handler], sales: SalesStore, merchant_id: str, database_url: str
) -> None:
    read = merchant_metadata(merchant_id, (READ,))
    with pytest.raises(grpc.aio.AioRpcError) as never:
        await stub.GetProductRFM(pb.GetProductRFMRequest(product_id="501"), metadata=read)
    assert never.value.code() == grpc.StatusCode.NOT_FOUND

    # Order 1: 2 x 30.00 of 501 less 6.00, 1 x 15.00 of 502; a line without a product.
    first = order_webhook(
        "orders/create",
        "9001",
        "7001",
        [("501", 2, "30.00", "6.00"), ("502", 1, "15.00", "0"), ("", 1, "5", "0")],
    )
    assert await handlers["webhook.received"](consumed(merchant_id, first))
    rfm = (await stub.GetProductRFM(pb.GetProductRFMRequest(product_id="501"), metadata=read)).rfm
    assert (rfm.frequency, rfm.buyers, rfm.monetary_minor_units, rfm.currency_code) == (
        1,
        1,
        5400,
        "USD",
    )
    assert rfm.recency_days < 0.01 and dict(rfm.buyer_segments) == {"UNSCORED": 1}
    # The same order as orders/paid (a new event): counted once; product_rfm.updated once.
    paid = order_webhook("orders/paid", "9001", "7001", [("501", 2, "30.00", "6.00")])
    await handlers["webhook.received"](consumed(merchant_id, paid))
    # Another buyer, then the buyer's segment: the cached answer is dropped each time.
    second = order_webhook("orders/create", "9002", "7002", [("501", 1, "30.00", "0")])
    await handlers["webhook.received"](consumed(merchant_id, second))
    await handlers["rfm.updated"](
        consumed(
            merchant_id,
            rfm_pb2.RfmUpdated(customer_id="7002", segment=rfm_pb2.RFM_SEGMENT_HIGH_VALUE),
        )
    )
    rfm = (await stub.GetProductRFM(pb.GetProductRFMRequest(product_id="501"), metadata=read)).rfm
    assert (rfm.frequency, rfm.buyers, rfm.monetary_minor_units) == (2, 2, 8400)
    assert dict(rfm.buyer_segments) == {"UNSCORED": 1, "RFM_SEGMENT_HIGH_VALUE": 1}
    # Cancelled: its sales go, RFM moves back.
    cancelled = order_webhook("orders/cancelled", "9002", "7002", [("501", 1, "30.00", "0")])
    await handlers["webhook.received"](consumed(merchant_id, cancelled))
    rfm = (await stub.GetProductRFM(pb.GetProductRFMRequest(product_id="501"), metadata=read)).rfm
    assert (rfm.frequency, rfm.monetary_minor_units) == (1, 5400)
    assert await outbox_rfm(database_url, merchant_id) == [
        ("501", 1, 5400),
        ("502", 1, 1500),
        ("501", 2, 8400),
        ("501", 1, 5400),
    ]

    # Personal data: the customer's purchases and segment, exported, then erased (the sales
    # stay, anonymous).
    exported = await sales.export_customer(merchant_id, "7001")
    assert {p["product_id"] for p in exported["product_purchases"]} == {"501", "502"}
    assert await sales.erase_customer(merchant_id, "7001") >= 2  # two sales unlinked
    assert await sales.erase_customer(merchant_id, "7001") == 0  # a repeat
    assert await sales.export_customer(merchant_id, "7001") == {}
    rfm = (await stub.GetProductRFM(pb.GetProductRFMRequest(product_id="501"), metadata=read)).rfm
    assert (rfm.frequency, rfm.buyers, rfm.monetary_minor_units) == (1, 0, 5400)
    await sales.erase_merchant(merchant_id)
    with pytest.raises(grpc.aio.AioRpcError) as erased:
        await stub.GetProductRFM(pb.GetProductRFMRequest(product_id="502"), metadata=read)
    assert erased.value.code() == grpc.StatusCode.NOT_FOUND


async def test_campaigns_touching_a_product(
    stub: Stub, handlers: dict[str, Handler], merchant_id: str
) -> None:
    now = datetime.now(UTC)
    await handlers["webhook.received"](
        consumed(merchant_id, product_webhook("products/create", product_body(601, "Cap", now)))
    )

    async def announce(payload: Message, at: datetime) -> None:
        event_type = (
            "campaign.created" if isinstance(payload, campaign_events.CampaignCreated) else ""
        )
        assert await handlers[event_type or "campaign.state_changed"](
            consumed(merchant_id, payload, at)
        )

    await announce(
        campaign_events.CampaignCreated(
            campaign_id="c-named", name="Caps", state="active", product_ids=["601"]
        ),
        now,
    )
    await announce(
        campaign_events.CampaignCreated(campaign_id="c-all", name="All", state="active"), now
    )
    await announce(
        campaign_events.CampaignCreated(
            campaign_id="c-other", name="Other", state="active", product_ids=["999"]
        ),
        now,
    )
    await announce(
        campaign_events.CampaignStateChanged(
            campaign_id="c-all", name="All", state="ended", previous_state="active"
        ),
        now + timedelta(seconds=1),
    )
    # An older announcement arriving late changes nothing.
    await announce(
        campaign_events.CampaignStateChanged(
            campaign_id="c-all", name="All", state="paused", previous_state="active"
        ),
        now,
    )
    read = merchant_metadata(merchant_id, (READ,))
    live = await stub.ListProductCampaigns(
        pb.ListProductCampaignsRequest(product_id="601"), metadata=read
    )
    assert [(c.campaign_id, c.all_products) for c in live.campaigns] == [("c-named", False)]
    every = await stub.ListProductCampaigns(
        pb.ListProductCampaignsRequest(product_id="601", include_ended=True), metadata=read
    )
    assert {(c.campaign_id, c.state) for c in every.campaigns} == {
        ("c-named", "active"),
        ("c-all", "ended"),
    }


async def test_sync_without_a_connected_shop(stub: Stub, merchant_id: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.SyncProducts(
            pb.SyncProductsRequest(full=True), metadata=merchant_metadata(merchant_id, (WRITE,))
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.fixture
async def gateway(served: Served, tmp_path: Path) -> AsyncIterator[Gateway]:
    service, _ = served
    upstream = Upstream("products", (SERVICE_NAME,), (("127.0.0.1", service.port),))
    async with running_gateway(gateway_config(upstream), tmp_path, {"products": 1}) as gw:
        yield gw


async def test_rest_through_the_gateway(
    gateway: Gateway, handlers: dict[str, Handler], merchant_id: str
) -> None:
    now = datetime.now(UTC)
    await handlers["webhook.received"](
        consumed(
            merchant_id, product_webhook("products/create", product_body(701, "Blue mug", now))
        )
    )
    await handlers["webhook.received"](
        consumed(
            merchant_id, order_webhook("orders/create", "9701", "7701", [("701", 3, "12.00", "0")])
        )
    )
    headers = merchant_headers(merchant_id, (READ,))
    listed = await http(
        "GET", f"{gateway.url}/v1/api/products?query=mug&page_size=5", headers=headers
    )
    assert listed.status == 200, listed.body
    assert [p["product_id"] for p in listed.json()["products"]] == ["701"]
    rfm = await http("GET", f"{gateway.url}/v1/api/products/rfm?product_id=701", headers=headers)
    assert rfm.status == 200, rfm.body
    assert rfm.json()["rfm"]["monetary_minor_units"] == "3600"
    campaigns = await http(
        "GET", f"{gateway.url}/v1/api/products/campaigns?product_id=701", headers=headers
    )
    assert campaigns.status == 200 and campaigns.json().get("campaigns", []) == []
    one = await http("GET", f"{gateway.url}/v1/api/products/701", headers=headers)
    assert one.status == 200 and one.json()["product"]["title"] == "Blue mug"
    hidden = await http(
        "GET",
        f"{gateway.url}/v1/api/products/rfm?product_id=701",
        headers=merchant_headers(f"other-{merchant_id}", (READ,)),
    )
    assert hidden.status == 404, hidden.body
    assert (await http("GET", f"{gateway.url}/v1/api/products")).status == 401
    forbidden = await http(
        "POST", f"{gateway.url}/v1/api/products/sync", headers=headers, json_body={}
    )
    assert forbidden.status == 403, forbidden.body


# ---- the mesh-wide isolation table (test_tenant_isolation.py) ---------------------------


async def _seed(database_url: str, merchant_b: str) -> dict[str, Any]:
    """B's product, sale and campaign (all arrive by events: no RPC creates them)."""
    product_id = str(uuid.uuid4().int % 10**12)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO products.products (merchant_id, product_id, title, shopify_updated_at,"
            " search) VALUES (%s, %s, 'B secret hat', now(), 'b secret hat')",
            (merchant_b, product_id),
        )
        await conn.execute(
            "INSERT INTO products.product_sales (merchant_id, product_id, order_id, customer_id,"
            " quantity, revenue_minor, currency, ordered_at)"
            " VALUES (%s, %s, 'o-b', 'c-b', 1, 100, 'USD', now())",
            (merchant_b, product_id),
        )
        await conn.execute(
            "INSERT INTO products.campaigns (merchant_id, campaign_id, name, state,"
            " product_ids, changed_at) VALUES (%s, 'campaign-of-b', 'B camp', 'active', %s, now())",
            (merchant_b, [product_id]),
        )
    return {"secrets": [product_id, "campaign-of-b"], "product_id": product_id}


async def _arrange(ch: grpc.aio.Channel, md: Metadata) -> dict[str, Any]:
    return {"secrets": []}


async def _snapshot(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    stub = Stub(ch)
    product = await stub.GetProduct(pb.GetProductRequest(product_id=b["product_id"]), metadata=md)
    rfm = await stub.GetProductRFM(pb.GetProductRFMRequest(product_id=b["product_id"]), metadata=md)
    return product.product, rfm.rfm.frequency


async def _list(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    return await Stub(ch).ListProducts(pb.ListProductsRequest(query="secret"), metadata=md)


async def _get(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    return await Stub(ch).GetProduct(pb.GetProductRequest(product_id=b["product_id"]), metadata=md)


async def _rfm(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    return await Stub(ch).GetProductRFM(
        pb.GetProductRFMRequest(product_id=b["product_id"]), metadata=md
    )


async def _campaigns(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    return await Stub(ch).ListProductCampaigns(
        pb.ListProductCampaignsRequest(product_id=b["product_id"], include_ended=True), metadata=md
    )


async def _sync(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    # A's sync reads A's shop only (here: none connected) and never touches B's catalogue.
    return await Stub(ch).SyncProducts(pb.SyncProductsRequest(full=True), metadata=md)


ISOLATION = Table(
    arrange=_arrange,
    seed=_seed,
    snapshot=_snapshot,
    cases={
        "ListProducts": [Case(_list, may_succeed=True)],
        "GetProduct": [Case(_get)],
        "GetProductRFM": [Case(_rfm)],
        "ListProductCampaigns": [Case(_campaigns, may_succeed=True)],
        "SyncProducts": [
            Case(
                _sync,
                may_succeed=True,
                also_denied=frozenset({grpc.StatusCode.FAILED_PRECONDITION}),
            )
        ],
    },
)
