"""GetPointsBalance from Redis (`points:customer:{merchant_id}:{customer_id}`), against a real
Valkey and PostgreSQL: reads are served from the cache, and no read after a write returned
ever sees an older balance."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
import redis.asyncio as redis

from loyalnest.gen.points.v1 import points_pb2 as pb
from loyalnest.gen.points.v1 import points_pb2_grpc
from loyalnest.services.points.ledger import balance_key
from tests.auth import merchant_metadata

pytestmark = pytest.mark.integration


@pytest.fixture
def stub(points_redis_stub: points_pb2_grpc.PointsServiceStub) -> points_pb2_grpc.PointsServiceStub:
    return points_redis_stub


async def balance(stub: points_pb2_grpc.PointsServiceStub, merchant: str, customer: str) -> int:
    response = await stub.GetPointsBalance(
        pb.GetPointsBalanceRequest(customer_id=customer), metadata=merchant_metadata(merchant)
    )
    return response.balance.balance


async def earn(
    stub: points_pb2_grpc.PointsServiceStub,
    merchant: str,
    customer: str,
    points: int,
    key: str | None = None,
) -> pb.EarnPointsResponse:
    return await stub.EarnPoints(
        pb.EarnPointsRequest(
            customer_id=customer, points=points, idempotency_key=key or uuid.uuid4().hex
        ),
        metadata=merchant_metadata(merchant),
    )


async def cached(valkey: redis.Redis, merchant: str, customer: str) -> pb.PointsBalance | None:
    raw = await valkey.hget(balance_key(merchant, customer), "value")
    return None if raw is None else pb.PointsBalance.FromString(raw)


async def test_reads_are_served_from_the_cache_entry(stub, valkey, merchant_id):
    written = await earn(stub, merchant_id, "c-1", 120)
    entry = await cached(valkey, merchant_id, "c-1")
    assert entry == written.balance
    assert entry.sequence == 1

    # Plant a different value under the key: a read that answers with it came from Redis.
    planted = pb.PointsBalance()
    planted.CopyFrom(entry)
    planted.balance = 999_999
    await valkey.hset(balance_key(merchant_id, "c-1"), "value", planted.SerializeToString())
    assert await balance(stub, merchant_id, "c-1") == 999_999

    # A miss reads PostgreSQL and fills the entry.
    await valkey.delete(balance_key(merchant_id, "c-1"))
    assert await balance(stub, merchant_id, "c-1") == 120
    assert (await cached(valkey, merchant_id, "c-1")) == written.balance


async def test_every_kind_of_write_updates_the_cached_balance(stub, merchant_id):
    md = merchant_metadata(merchant_id)
    await earn(stub, merchant_id, "c-2", 500)
    assert await balance(stub, merchant_id, "c-2") == 500  # cached now

    await stub.RedeemPoints(
        pb.RedeemPointsRequest(customer_id="c-2", points=120, idempotency_key="r1"), metadata=md
    )
    assert await balance(stub, merchant_id, "c-2") == 380
    await stub.AdjustPoints(
        pb.AdjustPointsRequest(customer_id="c-2", points=-80, reason="fix", idempotency_key="a1"),
        metadata=md,
    )
    assert await balance(stub, merchant_id, "c-2") == 300
    await earn(stub, merchant_id, "c-2", 1)
    response = await stub.GetPointsBalance(
        pb.GetPointsBalanceRequest(customer_id="c-2"), metadata=md
    )
    assert (response.balance.balance, response.balance.sequence) == (301, 4)
    assert (response.balance.lifetime_earned, response.balance.lifetime_redeemed) == (501, 120)


async def test_concurrent_reads_and_writes_never_go_back(stub, merchant_id):
    """Readers fill the cache while writers change the ledger: after each write returns, no
    read returns a balance older than that write's."""
    await earn(stub, merchant_id, "c-3", 1)
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            await balance(stub, merchant_id, "c-3")

    readers = [asyncio.create_task(reader()) for _ in range(4)]
    try:
        for _ in range(25):
            written = await earn(stub, merchant_id, "c-3", 1)
            assert await balance(stub, merchant_id, "c-3") >= written.balance.balance
    finally:
        stop.set()
        await asyncio.gather(*readers)
    assert await balance(stub, merchant_id, "c-3") == 26


async def test_a_late_fill_with_an_older_snapshot_is_ignored(stub, valkey, merchant_id):
    first = await earn(stub, merchant_id, "c-4", 10)
    await earn(stub, merchant_id, "c-4", 5)
    # What a reader that read PostgreSQL before the second write would store afterwards:
    stale = first.balance.SerializeToString()
    script = valkey.register_script(
        "local v = redis.call('HGET', KEYS[1], 'version')"
        " if v and tonumber(v) >= tonumber(ARGV[1]) then return 0 end"
        " redis.call('HSET', KEYS[1], 'version', ARGV[1], 'value', ARGV[2]) return 1"
    )
    assert await script(keys=[balance_key(merchant_id, "c-4")], args=[1, stale]) == 0
    assert await balance(stub, merchant_id, "c-4") == 15


async def test_replay_does_not_put_an_old_snapshot_back(stub, valkey, merchant_id):
    await earn(stub, merchant_id, "c-5", 10, key="first")
    await earn(stub, merchant_id, "c-5", 5)
    await valkey.delete(balance_key(merchant_id, "c-5"))

    replay = await earn(stub, merchant_id, "c-5", 10, key="first")

    assert replay.balance.balance == 10  # the first call's result, as documented
    assert await cached(valkey, merchant_id, "c-5") is None
    assert await balance(stub, merchant_id, "c-5") == 15


async def test_merchants_with_the_same_customer_id_have_separate_entries(stub, merchant_id):
    other = f"{merchant_id}-other"
    await earn(stub, merchant_id, "shared-id", 10)
    await earn(stub, other, "shared-id", 70)
    assert await balance(stub, merchant_id, "shared-id") == 10
    assert await balance(stub, other, "shared-id") == 70
    assert balance_key("m:1", "c") != balance_key("m", "1:c")


async def test_unknown_customer_is_not_cached_as_missing(stub, merchant_id):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await balance(stub, merchant_id, "c-6")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    await earn(stub, merchant_id, "c-6", 3)
    assert await balance(stub, merchant_id, "c-6") == 3
