"""Rule simulation (SimulateEarningRules) on a hand-computed fixture, through gRPC and Envoy
(POST /v1/api/points/simulate).

The orders are written as the webhook consumer records them (PostgreSQL store, record_order),
under a program with no rules of its own (1 point per unit, rounding down: rule "order"):

    o1  c1  40.00 online, 5 days ago             earned order:40
    o2  c1  25.50 online (51.00 weighted by a 2x collection), 4 days ago   order:51
    o3  c2  15.00 POS, 3 days ago                earned order:15
    o4  c1  10.00 online, 2 days ago             earned order:10
    o5  c2 100.00 online, 40 days ago            outside a 30-day replay
    o6  c3  50.00, 1 day ago, NOT_EARNING (over the plan's limit): not replayed

Draft: "spend" 2 points per unit from 20.00; "pos" 30 points per POS order; "punch" every 3rd
order +50.
    spend: o1 40 x 2 = 80, o2 51 x 2 = 102 (weighted), o3 and o4 under 20  -> 182 (2 orders)
    pos:   o3                                                            ->  30 (1 order)
    punch: c1's o1, o2, o4: the 3rd is o4; c2 has one order              ->  50 (1 order)
    simulated 262 against the 116 the four orders earned: +146 points.
Point value: a 10.00-off reward for 1000 points = 0.01 -> value delta 1.46. Breakage: c9 earned
100 400 days ago and redeemed 50 of it: (0 expired + 50 open) / 100 = 0.5 -> expected 0.73.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from loyalnest.gateway import Upstream
from loyalnest.gen.events.v1 import core_pb2 as core_events
from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.postgres import Database
from loyalnest.platform.server import RunningService
from loyalnest.services.points.domain import Posting, Reward, RewardKind, TransactionType
from loyalnest.services.points.orders import OrderEarning, OrderStatus
from loyalnest.services.points.service import DATABASE as POINTS_DATABASE
from loyalnest.services.points.service import SERVICE_NAME, SPEC
from loyalnest.services.points.store.postgres import PostgresLedgerStore
from tests.auth import merchant_headers, merchant_metadata
from tests.integration.conftest import points_settings, serving
from tests.integration.test_gateway_validate import Gateway, gateway_config, http, running_gateway

pytestmark = pytest.mark.integration

# (order, customer, eligible, weighted, pos, days ago, awards, status)
ORDERS = [
    ("o1", "c1", "40.00", "40.00", False, 5, "order:40", OrderStatus.APPROVED),
    ("o2", "c1", "25.50", "51.00", False, 4, "order:51", OrderStatus.APPROVED),
    ("o3", "c2", "15.00", "15.00", True, 3, "order:15", OrderStatus.APPROVED),
    ("o4", "c1", "10.00", "10.00", False, 2, "order:10", OrderStatus.PENDING),
    ("o5", "c2", "100.00", "100.00", False, 40, "order:100", OrderStatus.APPROVED),
    ("o6", "c3", "50.00", "50.00", False, 1, "", OrderStatus.NOT_EARNING),
]
DRAFT = [
    core_events.EarningRule(
        rule_id="spend",
        enabled=True,
        type=core_events.EARNING_RULE_TYPE_PLACE_ORDER,
        points_per_currency_unit="2",
        min_spend="20",
    ),
    core_events.EarningRule(
        rule_id="pos",
        enabled=True,
        type=core_events.EARNING_RULE_TYPE_PLACE_ORDER,
        points=30,
        channels=[core_events.SALES_CHANNEL_POS],
    ),
    core_events.EarningRule(
        rule_id="punch",
        enabled=True,
        type=core_events.EARNING_RULE_TYPE_PUNCH_CARD,
        points=50,
        punch_count=3,
    ),
]


@dataclass
class Fixture:
    points: RunningService
    gateway: Gateway
    merchant_id: str


async def seed(database_url: str, merchant_id: str) -> None:
    database = Database(ServiceSettings(database_url=database_url), POINTS_DATABASE)
    await database.open()
    try:
        store = PostgresLedgerStore(database)
        program = core_events.ProgramSettings(
            version=1, program_enabled=True, points_per_currency_unit="1"
        )
        await store.save_program_settings(merchant_id, 1, program.SerializeToString())
        now = datetime.now(UTC)
        for order_id, customer, eligible, weighted, pos, days, awards, status in ORDERS:
            at = now - timedelta(days=days)
            points = sum(int(a.rpartition(":")[2]) for a in awards.split(",") if a)
            await store.record_order(
                OrderEarning(
                    merchant_id=merchant_id,
                    order_id=order_id,
                    customer_id=customer,
                    points=points,
                    eligible_amount=Decimal(eligible),
                    currency="USD",
                    status=status,
                    approve_at=at,
                    created_at=at,
                    settings_version=1,
                    note="over_plan_limit" if status is OrderStatus.NOT_EARNING else "",
                    approved_points=points,
                    awards=awards,
                    weighted_amount=Decimal(weighted),
                    pos=pos,
                )
            )
        reward = Reward(
            merchant_id, str(uuid.uuid4()), "10 off", RewardKind.FIXED_AMOUNT, "10.00", 1000,
            True, now, now,
        )  # fmt: skip
        await store.create_reward(reward, "fixture")
        # Breakage 0.5: 100 earned 400 days ago, 50 of it redeemed, 50 still open.
        for i, (kind, points, days) in enumerate(
            [(TransactionType.EARN, 100, 400), (TransactionType.REDEEM, -50, 300)]
        ):
            posted = await store.post(
                Posting(merchant_id, "c9", kind, points, f"fixture {i}"),
                IdempotencyKey.internal(f"fixture:{i}", "c9"),
            )
            async with database.pool.connection() as conn:
                await conn.execute(
                    "UPDATE points_transactions SET created_at = now() - make_interval(days => %s)"
                    " WHERE transaction_id = %s",
                    (days, posted.transaction.transaction_id),
                )
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
        await seed(database_url, merchant_id)  # after Points migrated its schema
        upstream = Upstream("points", (SERVICE_NAME,), (("127.0.0.1", points.port),))
        gateway = await stack.enter_async_context(
            running_gateway(gateway_config(upstream), tmp_path, {"points": 1})
        )
        yield Fixture(points, gateway, merchant_id)


async def test_simulation_over_grpc(fixture: Fixture) -> None:
    md = merchant_metadata(fixture.merchant_id, ("points:read",))
    async with grpc.aio.insecure_channel(fixture.points.address) as channel:
        stub = points_pb2_grpc.PointsServiceStub(channel)
        report = await stub.SimulateEarningRules(
            points_pb2.SimulateEarningRulesRequest(days=30, rules=DRAFT), metadata=md
        )
        assert report.orders == 4
        assert [
            (r.rule_id, r.actual_points, r.simulated_points, r.simulated_orders)
            for r in report.rules
        ] == [
            ("order", 116, 0, 0),
            ("pos", 0, 30, 1),
            ("punch", 0, 50, 1),
            ("spend", 0, 182, 2),
        ]
        assert (report.actual_points, report.simulated_points, report.points_delta) == (
            116,
            262,
            146,
        )
        assert (report.point_value, report.value_delta, report.expected_value_delta) == (
            "0.01",
            "1.46",
            "0.73",
        )

        # 60 days reach o5 too: the draft's spend gives it 200 (earned 100).
        wider = await stub.SimulateEarningRules(
            points_pb2.SimulateEarningRulesRequest(days=60, rules=DRAFT), metadata=md
        )
        assert (wider.orders, wider.actual_points, wider.simulated_points) == (5, 216, 462)

        # Core's own validation: a punch card without its count, and a bad window.
        broken = core_events.EarningRule(
            rule_id="punch", enabled=True, type=core_events.EARNING_RULE_TYPE_PUNCH_CARD, points=5
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.SimulateEarningRules(
                points_pb2.SimulateEarningRulesRequest(days=0, rules=[broken]), metadata=md
            )
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        status = rpc_status.from_call(refused.value)
        assert status is not None
        fields = {
            v.field for detail in status.details for v in _bad_request(detail).field_violations
        }
        assert "days" in fields
        assert any(f.startswith("rules[0].punch_count") for f in fields), fields


def _bad_request(detail: any_pb2.Any) -> error_details_pb2.BadRequest:
    bad = error_details_pb2.BadRequest()
    if detail.Is(bad.DESCRIPTOR):
        detail.Unpack(bad)
    return bad


async def test_simulation_through_envoy(fixture: Fixture) -> None:
    headers = merchant_headers(fixture.merchant_id, ("points:read",))
    answered = await http(
        "POST",
        f"{fixture.gateway.url}/v1/api/points/simulate",
        headers=headers,
        json_body={
            "days": 30,
            "rules": [
                {
                    "rule_id": "spend",
                    "enabled": True,
                    "type": "EARNING_RULE_TYPE_PLACE_ORDER",
                    "points_per_currency_unit": "2",
                    "min_spend": "20",
                },
                {
                    "rule_id": "pos",
                    "enabled": True,
                    "type": "EARNING_RULE_TYPE_PLACE_ORDER",
                    "points": "30",
                    "channels": ["SALES_CHANNEL_POS"],
                },
                {
                    "rule_id": "punch",
                    "enabled": True,
                    "type": "EARNING_RULE_TYPE_PUNCH_CARD",
                    "points": "50",
                    "punch_count": 3,
                },
            ],
        },
    )
    assert answered.status == 200, answered.body
    body = answered.json()
    assert (body["orders"], body["points_delta"], body["value_delta"]) == ("4", "146", "1.46")
    assert body["expected_value_delta"] == "0.73"

    refused = await http(
        "POST",
        f"{fixture.gateway.url}/v1/api/points/simulate",
        headers=headers,
        json_body={"days": 400},
    )
    assert refused.status == 400, refused.body
