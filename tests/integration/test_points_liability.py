"""Points liability (GetPointsLiability) on a hand-computed fixture, through gRPC and through
Envoy (GET /v1/api/points/liability).

The fixture is a ledger history written through the PostgreSQL store (as the RPCs, the order
settlement and the expiry job write it), then dated back by moving each transaction's
`created_at`: lots of a known age. Every figure below is worked out by hand from it.

    c1 (gold)    +100 (400 d ago)  +50 (100 d)  redeem -120 (50 d)  +30 (10 d)
                 FIFO: the redemption takes the 100-lot and 20 of the 50-lot
                 open: 30 of the 100-day lot, 30 of the 10-day lot            = 60
    c2 (no tier) +200 (400 d)  adjust -20 (300 d)  expire -100 (35 d)
                 open: 80 of the 400-day lot                                 = 80
    c3 (silver)  +40 (200 d)  +25 (60 d)                                     = 65
    outstanding 205; by age 0-30: 30 (c1), 31-90: 25 (c3), 91-180: 30 (c1), 181-365: 40 (c3),
    >365: 80 (c2); by tier "": 80, gold: 60, silver: 65.

    rewards: 5.00 off for 500 (0.01/pt), 10 off for 800 (0.0125/pt), 10 % off for 100 and an
    inactive 50 off for 100 (neither prices points) -> 0.0125 per point.
    value 205 x 0.0125 = 2.5625 -> 2.56; buckets 30 -> 0.375 -> 0.38, 25 -> 0.3125 -> 0.31,
    40 -> 0.50, 80 -> 1.00, 60 -> 0.75, 65 -> 0.8125 -> 0.81 (half up, to the cent).

    breakage, horizon 365 d: the lots earned 365+ days ago are c1's 100 and c2's 200 = 300;
    c1's 100 redeemed; c2's 200: 20 taken back, 100 expired, 80 open.
    rate (100 + 80) / (300 - 20) = 0.642857... -> 0.6429;
    expected value 205 x 0.0125 x (1 - 0.6429) = 0.91506... -> 0.92.
    horizon 90 d adds c1's 50-lot (20 redeemed, 30 open) and c3's 40-lot (open): earned 390,
    redeemed 120, expired 100, open 150, taken back 20: 250 / 370 = 0.67567... -> 0.6757.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from loyalnest.gateway import Upstream
from loyalnest.gen.events.v1 import core_pb2 as core_events
from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.postgres import Database
from loyalnest.platform.server import RunningService
from loyalnest.services.points.domain import Posting, Reward, RewardKind, TransactionType
from loyalnest.services.points.service import DATABASE as POINTS_DATABASE
from loyalnest.services.points.service import SERVICE_NAME, SPEC
from loyalnest.services.points.store.postgres import PostgresLedgerStore
from tests.auth import merchant_headers, merchant_metadata
from tests.integration.conftest import points_settings, serving
from tests.integration.test_gateway_validate import Gateway, gateway_config, http, running_gateway

pytestmark = pytest.mark.integration

# (customer, type, points, days ago), in ledger order per customer.
HISTORY = [
    ("c1", TransactionType.EARN, 100, 400),
    ("c1", TransactionType.EARN, 50, 100),
    ("c1", TransactionType.REDEEM, -120, 50),
    ("c1", TransactionType.EARN, 30, 10),
    ("c2", TransactionType.EARN, 200, 400),
    ("c2", TransactionType.ADJUST, -20, 300),
    ("c2", TransactionType.EXPIRE, -100, 35),
    ("c3", TransactionType.EARN, 40, 200),
    ("c3", TransactionType.EARN, 25, 60),
]
TIERS = {"c1": "gold", "c3": "silver"}
# (kind, value, points_cost, active)
REWARDS = [
    (RewardKind.FIXED_AMOUNT, "5.00", 500, True),
    (RewardKind.FIXED_AMOUNT, "10", 800, True),
    (RewardKind.PERCENTAGE, "10", 100, True),
    (RewardKind.FIXED_AMOUNT, "50", 100, False),
]


@dataclass
class Fixture:
    points: RunningService
    gateway: Gateway
    merchant_id: str
    best_reward_id: str


async def seed(database_url: str, merchant_id: str) -> str:
    """Writes HISTORY, TIERS, REWARDS and the program's tier names; the best reward's id."""
    database = Database(ServiceSettings(database_url=database_url), POINTS_DATABASE)
    await database.open()
    try:
        store = PostgresLedgerStore(database)
        program = core_events.ProgramSettings(
            version=1,
            vip_tiers=[
                core_events.VipTier(tier_id="silver", name="Silver", threshold=500),
                core_events.VipTier(tier_id="gold", name="Gold", threshold=2000),
            ],
        )
        await store.save_program_settings(merchant_id, 1, program.SerializeToString())
        for i, (customer, kind, points, days) in enumerate(HISTORY):
            posting = Posting(merchant_id, customer, kind, points, f"fixture {i}")
            result = await store.post(posting, IdempotencyKey.internal(f"fixture:{i}", customer))
            async with database.pool.connection() as conn:
                await conn.execute(
                    "UPDATE points_transactions SET created_at = now() - make_interval(days => %s)"
                    " WHERE transaction_id = %s",
                    (days, result.transaction.transaction_id),
                )
        now = datetime.now(UTC)
        async with database.pool.connection() as conn:
            for customer, tier_id in TIERS.items():
                await conn.execute(
                    "INSERT INTO customer_tiers (merchant_id, customer_id, tier_id, qualifying,"
                    " changed_at) VALUES (%s, %s, %s, 0, %s)",
                    (merchant_id, customer, tier_id, now),
                )
        best = ""
        for i, (kind, value, cost, active) in enumerate(REWARDS):
            reward_id = str(uuid.uuid4())
            row = Reward(merchant_id, reward_id, f"r{i}", kind, value, cost, active, now, now)
            reward = await store.create_reward(row, f"fixture-{i}")
            if value == "10" and kind is RewardKind.FIXED_AMOUNT:
                best = reward.reward_id
        return best
    finally:
        await database.close()


@pytest.fixture
async def fixture(
    database_url: str, redis_url: str, tmp_path: Path, merchant_id: str
) -> AsyncIterator[Fixture]:
    async with contextlib.AsyncExitStack() as stack:
        points = await stack.enter_async_context(
            serving(SPEC, points_settings(database_url, redis_url=redis_url))
        )
        best = await seed(database_url, merchant_id)  # after Points migrated its schema
        upstream = Upstream("points", (SERVICE_NAME,), (("127.0.0.1", points.port),))
        gateway = await stack.enter_async_context(
            running_gateway(gateway_config(upstream), tmp_path, {"points": 1})
        )
        yield Fixture(points, gateway, merchant_id, best)


async def test_liability_over_grpc(fixture: Fixture) -> None:
    md = merchant_metadata(fixture.merchant_id, ("points:read",))
    async with grpc.aio.insecure_channel(fixture.points.address) as channel:
        stub = points_pb2_grpc.PointsServiceStub(channel)
        report = await stub.GetPointsLiability(points_pb2.GetPointsLiabilityRequest(), metadata=md)
        assert report.outstanding_points == 205
        assert (report.point_value, report.rate_reward_id) == ("0.0125", fixture.best_reward_id)
        assert report.outstanding_value == "2.56"
        assert [(b.key, b.points, b.value, b.customers) for b in report.by_age] == [
            ("0-30", 30, "0.38", 1),
            ("31-90", 25, "0.31", 1),
            ("91-180", 30, "0.38", 1),
            ("181-365", 40, "0.50", 1),
            (">365", 80, "1.00", 1),
        ]
        assert [(b.key, b.name, b.points, b.value) for b in report.by_tier] == [
            ("", "", 80, "1.00"),
            ("gold", "Gold", 60, "0.75"),
            ("silver", "Silver", 65, "0.81"),
        ]
        b = report.breakage
        assert (b.horizon_days, b.earned_points, b.redeemed_points) == (365, 300, 100)
        assert (b.expired_points, b.outstanding_points, b.taken_back_points) == (100, 80, 20)
        assert b.rate == "0.6429"
        assert report.expected_value == "0.92"

        shorter = await stub.GetPointsLiability(
            points_pb2.GetPointsLiabilityRequest(breakage_horizon_days=90), metadata=md
        )
        b = shorter.breakage
        assert (b.earned_points, b.redeemed_points, b.expired_points) == (390, 120, 100)
        assert (b.outstanding_points, b.taken_back_points, b.rate) == (150, 20, "0.6757")

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetPointsLiability(
                points_pb2.GetPointsLiabilityRequest(breakage_horizon_days=4000), metadata=md
            )
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "breakage_horizon_days" in (refused.value.details() or "")


async def test_liability_through_envoy(fixture: Fixture) -> None:
    headers = merchant_headers(fixture.merchant_id, ("points:read",))
    url = f"{fixture.gateway.url}/v1/api/points/liability"
    answered = await http("GET", f"{url}?breakage_horizon_days=365", headers=headers)
    assert answered.status == 200, answered.body
    body = answered.json()
    assert (body["outstanding_points"], body["outstanding_value"]) == ("205", "2.56")
    assert [(b["key"], b["points"]) for b in body["by_age"]] == [
        ("0-30", "30"),
        ("31-90", "25"),
        ("91-180", "30"),
        ("181-365", "40"),
        (">365", "80"),
    ]
    assert body["breakage"]["rate"] == "0.6429"
    assert body["expected_value"] == "0.92"

    refused = await http("GET", f"{url}?breakage_horizon_days=-1", headers=headers)
    assert refused.status == 400, refused.body
    assert "breakage_horizon_days" in refused.json()["message"]

    # Without points:read the gateway's caller is refused before any figure is read.
    denied = await http("GET", url, headers=merchant_headers(fixture.merchant_id, ("core:read",)))
    assert denied.status == 403, denied.body
