"""StreamPoints over gRPC against real PostgreSQL and Valkey: the current balance first, then
each change, also when another Points process (sharing Redis) commits it."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from loyalnest.gen.points.v1 import points_pb2 as pb
from loyalnest.gen.points.v1 import points_pb2_grpc
from loyalnest.services.points.service import SPEC
from tests.auth import merchant_metadata
from tests.integration.conftest import points_settings, serve_for_test

pytestmark = pytest.mark.integration


async def earn(stub, merchant, customer, points) -> pb.EarnPointsResponse:
    return await stub.EarnPoints(
        pb.EarnPointsRequest(customer_id=customer, points=points, idempotency_key=uuid.uuid4().hex),
        metadata=merchant_metadata(merchant),
    )


async def test_subscriber_sees_current_balance_then_an_earn_within_a_second(
    points_redis_stub, points_redis_service, database_url, redis_url, merchant_id
):
    await earn(points_redis_stub, merchant_id, "c-1", 10)
    call = points_redis_stub.StreamPoints(
        pb.StreamPointsRequest(customer_id="c-1"), metadata=merchant_metadata(merchant_id)
    )
    first = await asyncio.wait_for(call.read(), 5)
    assert (first.balance.balance, first.balance.sequence) == (10, 1)

    # A second Points process (same database and Redis) commits the change.
    settings = points_settings(database_url, redis_url=redis_url)
    async with serve_for_test(SPEC, settings, points_pb2_grpc.PointsServiceStub) as (
        _,
        other_stub,
    ):
        loop = asyncio.get_running_loop()
        written = await earn(other_stub, merchant_id, "c-1", 5)
        started = loop.time()
        update = await asyncio.wait_for(call.read(), 1.0)
        assert loop.time() - started < 1.0
        assert update.balance == written.balance
        await other_stub.RedeemPoints(
            pb.RedeemPointsRequest(customer_id="c-1", points=3, idempotency_key="r"),
            metadata=merchant_metadata(merchant_id),
        )
        assert (await asyncio.wait_for(call.read(), 1.0)).balance.balance == 12
    call.cancel()


async def test_stream_is_per_merchant_and_needs_a_ledger(points_redis_stub, merchant_id):
    other = f"{merchant_id}-other"
    await earn(points_redis_stub, merchant_id, "shared", 1)
    call = points_redis_stub.StreamPoints(
        pb.StreamPointsRequest(customer_id="shared"), metadata=merchant_metadata(other)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    mine = points_redis_stub.StreamPoints(
        pb.StreamPointsRequest(customer_id="shared"), metadata=merchant_metadata(merchant_id)
    )
    assert (await asyncio.wait_for(mine.read(), 5)).balance.balance == 1
    await earn(points_redis_stub, other, "shared", 50)  # another merchant's customer
    await earn(points_redis_stub, merchant_id, "shared", 2)
    assert (await asyncio.wait_for(mine.read(), 1.0)).balance.balance == 3
    mine.cancel()


async def test_stream_without_redis_is_unavailable(points_stub, merchant_id):
    await earn(points_stub, merchant_id, "c-2", 1)
    call = points_stub.StreamPoints(
        pb.StreamPointsRequest(customer_id="c-2"), metadata=merchant_metadata(merchant_id)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
