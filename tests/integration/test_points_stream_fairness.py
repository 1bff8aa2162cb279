"""StreamPoints is fair (issue 14, finding 6): one merchant holding thousands of idle
streams cannot take the service from the others. In-process gRPC clients against a real
Points server with real PostgreSQL and Valkey.

Each stream once held a Redis pub/sub connection of its own (an unbounded pool): now a
process holds one for all its streams, a merchant at most `points_stream_max_per_merchant`
streams per process and the process `points_stream_max_per_process`, beyond which calls get
RESOURCE_EXHAUSTED with RetryInfo and `retry-after`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import redis.asyncio as redis
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from loyalnest.gen.points.v1 import points_pb2 as pb
from loyalnest.gen.points.v1 import points_pb2_grpc
from loyalnest.services.points.service import SPEC
from tests.auth import merchant_metadata
from tests.integration.conftest import eventually, points_settings, serving

pytestmark = pytest.mark.integration

HOG_STREAMS = 2000
CHANNELS = 8  # HTTP/2 connections the hog's streams are spread over (250 each)
CUSTOMERS = 20
BATCH = 100  # streams opened at once (see `stubs`)


async def earn(stub: points_pb2_grpc.PointsServiceStub, merchant: str, customer: str) -> None:
    await stub.EarnPoints(
        pb.EarnPointsRequest(customer_id=customer, points=1, idempotency_key=uuid.uuid4().hex),
        metadata=merchant_metadata(merchant),
    )


def open_stream(
    stub: points_pb2_grpc.PointsServiceStub, merchant: str, customer: str
) -> grpc.aio.UnaryStreamCall[pb.StreamPointsRequest, pb.StreamPointsResponse]:
    return stub.StreamPoints(
        pb.StreamPointsRequest(customer_id=customer), metadata=merchant_metadata(merchant)
    )


async def refused(
    call: grpc.aio.UnaryStreamCall[pb.StreamPointsRequest, pb.StreamPointsResponse],
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(call.read(), 10)
    error = caught.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    infos = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert len(infos) == 1
    trailing = dict((await call.trailing_metadata()) or ())
    assert int(trailing["retry-after"]) > 0
    return error


async def pubsub_connections(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        clients = await client.client_list()
    finally:
        await client.aclose()
    return sum(1 for c in clients if int(c.get("sub", 0)) + int(c.get("psub", 0)) > 0)


@contextlib.asynccontextmanager
async def stubs(service, count: int) -> AsyncIterator[list[points_pb2_grpc.PointsServiceStub]]:
    """Stubs on `count` connections: channels with equal arguments would share one (gRPC's
    global subchannel pool). Thousands of streams opened at once on one or a few
    connections got some CANCELLED by grpc-core on this machine (not by the service): the
    test opens them BATCH at a time over CHANNELS connections, as Envoy's pool would."""
    async with contextlib.AsyncExitStack() as stack:
        channels = [
            await stack.enter_async_context(
                grpc.aio.insecure_channel(
                    service.address, options=[("grpc.use_local_subchannel_pool", 1)]
                )
            )
            for _ in range(count)
        ]
        yield [points_pb2_grpc.PointsServiceStub(channel) for channel in channels]


async def test_two_thousand_idle_streams_of_one_merchant_leave_the_others_served(
    database_url, redis_url
):
    hog, other = f"hog-{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    settings = points_settings(
        database_url,
        redis_url=redis_url,
        points_stream_max_per_merchant=HOG_STREAMS,
        points_stream_max_per_process=HOG_STREAMS + 50,
    )
    async with serving(SPEC, settings) as service, stubs(service, CHANNELS + 1) as all_stubs:
        hog_stubs, other_stub = all_stubs[:CHANNELS], all_stubs[CHANNELS]
        for i in range(CUSTOMERS):
            await earn(other_stub, hog, f"c-{i}")
        await earn(other_stub, other, "c-0")

        async def only_the_token_checks_subscription() -> bool:
            return await pubsub_connections(redis_url) == 1

        # The token check's revocation mirror subscribes from the first call on.
        await eventually(only_the_token_checks_subscription, 5, "the revocation mirror")

        calls: list[grpc.aio.UnaryStreamCall[pb.StreamPointsRequest, pb.StreamPointsResponse]]
        calls = []
        try:
            for start in range(0, HOG_STREAMS, BATCH):
                batch = [
                    open_stream(hog_stubs[i % CHANNELS], hog, f"c-{i % CUSTOMERS}")
                    for i in range(start, start + BATCH)
                ]
                calls += batch
                firsts = await asyncio.gather(*(asyncio.wait_for(c.read(), 60) for c in batch))
                assert all(f.balance.balance == 1 for f in firsts)
            # All open and idle: one more Redis pub/sub connection serves all of them.
            assert await pubsub_connections(redis_url) == 2

            # The merchant's next stream is refused, with when to retry.
            await refused(open_stream(hog_stubs[0], hog, "c-0"))

            # Another merchant's calls and streams go on, and promptly.
            loop = asyncio.get_running_loop()
            started = loop.time()
            mine = open_stream(other_stub, other, "c-0")
            assert (await asyncio.wait_for(mine.read(), 5)).balance.balance == 1
            await earn(other_stub, other, "c-0")
            assert (await asyncio.wait_for(mine.read(), 2)).balance.balance == 2
            balance = await other_stub.GetPointsBalance(
                pb.GetPointsBalanceRequest(customer_id="c-0"), metadata=merchant_metadata(other)
            )
            assert balance.balance.balance == 2
            assert loop.time() - started < 5
            mine.cancel()

            # The hog's own streams still follow their changes.
            await earn(other_stub, hog, "c-3")
            update = await asyncio.wait_for(calls[3].read(), 5)
            assert update.balance.balance == 2
        finally:
            for call in calls:
                call.cancel()

        # Closed streams give their slots back.
        async def reopened() -> int:
            again = open_stream(hog_stubs[0], hog, "c-0")
            first = await asyncio.wait_for(again.read(), 5)
            again.cancel()
            return first.balance.balance

        for _ in range(50):
            with contextlib.suppress(grpc.aio.AioRpcError):
                assert await reopened() == 1
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the slots of cancelled streams were not given back")


async def test_the_process_wide_cap_refuses_with_a_clear_error(database_url, redis_url):
    first, second = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    settings = points_settings(
        database_url,
        redis_url=redis_url,
        points_stream_max_per_merchant=3,
        points_stream_max_per_process=5,
    )
    async with serving(SPEC, settings) as service, stubs(service, 1) as (stub,):
        await earn(stub, first, "c")
        await earn(stub, second, "c")
        calls = [open_stream(stub, first, "c") for _ in range(3)]
        calls += [open_stream(stub, second, "c") for _ in range(2)]
        try:
            for call in calls:
                await asyncio.wait_for(call.read(), 5)
            per_merchant = await refused(open_stream(stub, first, "c"))
            assert "this merchant has 3 StreamPoints calls open" in (per_merchant.details() or "")
            whole = await refused(open_stream(stub, second, "c"))
            assert "maximum of 5 StreamPoints calls" in (whole.details() or "")
        finally:
            for call in calls:
                call.cancel()
