"""The Products service against a real PostgreSQL.

Health, reflection, its RPCs over gRPC and as REST through a real Envoy, and one merchant
never seeing another's items. `ISOLATION` is its table in the mesh-wide isolation test
(test_tenant_isolation.py).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from loyalnest.gateway import Upstream
from loyalnest.gen.products.v1 import products_pb2 as pb
from loyalnest.gen.products.v1 import products_pb2_grpc
from loyalnest.platform.server import RunningService
from loyalnest.services.products.service import SERVICE_NAME, SPEC, ProductsSettings
from tests.auth import merchant_headers, merchant_metadata
from tests.integration.conftest import serve_for_test, service_settings_for_tests, wait_for_health
from tests.integration.isolation import Case, Metadata, Table
from tests.integration.test_gateway_validate import Gateway, gateway_config, http, running_gateway

pytestmark = pytest.mark.integration

READ, WRITE = "products:read", "products:write"
Stub = products_pb2_grpc.ProductsServiceStub
Served = tuple[RunningService, Stub]


@pytest.fixture
async def served(database_url: str) -> AsyncIterator[Served]:
    """The service, once SERVING, and a stub to it."""
    settings = service_settings_for_tests(ProductsSettings, database_url)
    async with serve_for_test(SPEC, settings, Stub) as running_service:
        yield running_service


@pytest.fixture
def stub(served: Served) -> Stub:
    return served[1]


async def create(stub: Stub, merchant: str, name: str, key: str | None = None) -> pb.Item:
    response = await stub.CreateItem(
        pb.CreateItemRequest(item=pb.Item(name=name), idempotency_key=key or uuid.uuid4().hex),
        metadata=merchant_metadata(merchant, (WRITE,)),
    )
    item: pb.Item = response.item
    return item


async def test_serves_health_and_reflection(served: Served) -> None:
    service, _ = served
    await wait_for_health(
        service.address, health_pb2.HealthCheckResponse.SERVING, service=SERVICE_NAME
    )
    async with grpc.aio.insecure_channel(service.address) as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        names = [
            entry.name
            async for response in reflection.ServerReflectionInfo(iter([request]))
            for entry in response.list_services_response.service
        ]
    assert SERVICE_NAME in names


async def test_creates_and_reads_items(stub: Stub, merchant_id: str) -> None:
    item = await create(stub, merchant_id, "first", key="k-1")
    assert item.name == "first" and item.item_id and item.create_time.seconds > 0
    # A retry with the same key is the first call's item; the key with other fields is refused.
    assert await create(stub, merchant_id, "first", key="k-1") == item
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await create(stub, merchant_id, "other", key="k-1")
    assert reused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    read = merchant_metadata(merchant_id, (READ,))
    got = await stub.GetItem(pb.GetItemRequest(item_id=item.item_id), metadata=read)
    assert got.item == item
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetItem(pb.GetItemRequest(item_id=str(uuid.uuid4())), metadata=read)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await create(stub, merchant_id, " ")
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stub.CreateItem(
            pb.CreateItemRequest(item=pb.Item(name="x"), idempotency_key="k-2"), metadata=read
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_merchant_never_sees_another_merchants_items(stub: Stub) -> None:
    merchant_a, merchant_b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    item = await create(stub, merchant_a, "a's", key="same-key")
    with pytest.raises(grpc.aio.AioRpcError) as hidden:
        await stub.GetItem(
            pb.GetItemRequest(item_id=item.item_id),
            metadata=merchant_metadata(merchant_b, (READ,)),
        )
    assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
    # Idempotency keys are per merchant: B's call with A's key makes B an item of its own.
    assert (await create(stub, merchant_b, "a's", key="same-key")).item_id != item.item_id


@pytest.fixture
async def gateway(served: Served, tmp_path: Path) -> AsyncIterator[Gateway]:
    service, _ = served
    upstream = Upstream("products", (SERVICE_NAME,), (("127.0.0.1", service.port),))
    async with running_gateway(gateway_config(upstream), tmp_path, {"products": 1}) as gw:
        yield gw


async def test_rest_through_the_gateway(gateway: Gateway, merchant_id: str) -> None:
    headers = merchant_headers(merchant_id, (READ, WRITE))
    created = await http(
        "POST",
        f"{gateway.url}/v1/api/products/items",
        headers=headers,
        json_body={"item": {"name": "over REST"}, "idempotency_key": "rest-1"},
    )
    assert created.status == 200, created.body
    item = created.json()["item"]
    assert item["name"] == "over REST"
    got = await http(
        "GET", f"{gateway.url}/v1/api/products/items/{item['item_id']}", headers=headers
    )
    assert got.status == 200, got.body
    assert got.json()["item"] == item
    other = merchant_headers(f"other-{merchant_id}", (READ,))
    hidden = await http(
        "GET", f"{gateway.url}/v1/api/products/items/{item['item_id']}", headers=other
    )
    assert hidden.status == 404, hidden.body
    anonymous = await http("GET", f"{gateway.url}/v1/api/products/items/{item['item_id']}")
    assert anonymous.status == 401, anonymous.body
    forbidden = await http(
        "POST",
        f"{gateway.url}/v1/api/products/items",
        headers=merchant_headers(merchant_id, (READ,)),
        json_body={"item": {"name": "x"}, "idempotency_key": "rest-2"},
    )
    assert forbidden.status == 403, forbidden.body


# ---- the mesh-wide isolation table (test_tenant_isolation.py) ---------------------------


async def _arrange(ch: grpc.aio.Channel, md: Metadata) -> dict[str, Any]:
    create = pb.CreateItemRequest(item=pb.Item(name="b's item"), idempotency_key="key-b-item")
    item = (await Stub(ch).CreateItem(create, metadata=md)).item
    return {"secrets": [item.item_id], "item": item, "create": create}


async def _snapshot(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    return await Stub(ch).GetItem(pb.GetItemRequest(item_id=b["item"].item_id), metadata=md)


async def _get_b_item(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    return await Stub(ch).GetItem(pb.GetItemRequest(item_id=b["item"].item_id), metadata=md)


async def _replay_b_create(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    # B's exact request, key included: A gets an item of its own, never B's.
    return await Stub(ch).CreateItem(b["create"], metadata=md)


ISOLATION = Table(
    arrange=_arrange,
    snapshot=_snapshot,
    cases={
        "GetItem": [Case(_get_b_item)],
        "CreateItem": [Case(_replay_b_create, may_succeed=True)],
    },
)
