"""The event-fed liability summary (GetLiabilitySummary, GET /v1/api/points/liability/summary)
through the broker and Envoy: Points publishes its ledger events, consumes them back into the
summary table once each (redelivered: nothing added), and the table agrees with the liability
computed from the ledger on request (GetPointsLiability).

The fixture, written through the ledger store as the RPCs, the expiry job and refunds write
it (each posting enqueues its event in the outbox, which Points' relay publishes):

    c1  +100  +50  redeem -120  +30                 balance  60
    c2  +200  adjust -20  expire -100               balance  80
    c3  +40  +25  reversal -5                       balance  60
    outstanding 200 = earned 445 (100+50+30+200+40+25) - redeemed 120 - expired 100
                      + adjusted -20 + reversed -5; 10 events.
    reward 5.00 off for 500 points -> 0.01 per point: value 2.00.
    then every event redelivered, and +1 for each customer: 203, earned 448, 13 events.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition

from loyalnest.gateway import Upstream
from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.events import topics
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.postgres import Database
from loyalnest.platform.server import RunningService
from loyalnest.services.points.domain import Posting, Reward, RewardKind, TransactionType
from loyalnest.services.points.service import DATABASE as POINTS_DATABASE
from loyalnest.services.points.service import SERVICE_NAME, SPEC
from loyalnest.services.points.store.postgres import PostgresLedgerStore
from tests.auth import merchant_headers, merchant_metadata
from tests.integration.broker import BrokerProcess
from tests.integration.conftest import eventually, points_settings, serving
from tests.integration.events_worker import FAST_EVENTS
from tests.integration.test_gateway_validate import Gateway, gateway_config, http, running_gateway

pytestmark = pytest.mark.integration

HISTORY = [
    ("c1", TransactionType.EARN, 100),
    ("c1", TransactionType.EARN, 50),
    ("c1", TransactionType.REDEEM, -120),
    ("c1", TransactionType.EARN, 30),
    ("c2", TransactionType.EARN, 200),
    ("c2", TransactionType.ADJUST, -20),
    ("c2", TransactionType.EXPIRE, -100),
    ("c3", TransactionType.EARN, 40),
    ("c3", TransactionType.EARN, 25),
    ("c3", TransactionType.REVERSAL, -5),
]


@dataclass
class Fixture:
    points: RunningService
    gateway: Gateway
    broker: BrokerProcess
    merchant_id: str


async def seed(database_url: str, merchant_id: str) -> None:
    database = Database(ServiceSettings(database_url=database_url), POINTS_DATABASE)
    await database.open()
    try:
        store = PostgresLedgerStore(database)
        for i, (customer, kind, points) in enumerate(HISTORY):
            posting = Posting(merchant_id, customer, kind, points, f"fixture {i}")
            await store.post(posting, IdempotencyKey.internal(f"fixture:{i}", customer))
        now = datetime.now(UTC)
        reward = Reward(
            merchant_id, str(uuid.uuid4()), "5 off", RewardKind.FIXED_AMOUNT, "5.00", 500, True,
            now, now,
        )  # fmt: skip
        await store.create_reward(reward, "fixture-reward")
    finally:
        await database.close()


@pytest.fixture
async def fixture(
    database_url: str, redis_url: str, tmp_path: Path, merchant_id: str
) -> AsyncIterator[Fixture]:
    broker = BrokerProcess()
    await broker.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            settings = points_settings(
                database_url,
                redis_url=redis_url,
                events_enabled=True,
                kafka_bootstrap_servers=broker.bootstrap_servers,
                **FAST_EVENTS,
            )
            points = await stack.enter_async_context(serving(SPEC, settings))
            await seed(database_url, merchant_id)  # after Points migrated its schema
            upstream = Upstream("points", (SERVICE_NAME,), (("127.0.0.1", points.port),))
            gateway = await stack.enter_async_context(
                running_gateway(gateway_config(upstream), tmp_path, {"points": 1})
            )
            yield Fixture(points, gateway, broker, merchant_id)
    finally:
        broker.close()


def redeliver(bootstrap: str, merchant_id: str) -> int:
    """Publishes again, to its own partition, every record of the merchant's on Points'
    topic so far: what a consumer sees after a crash before its commit."""
    topic = topics.POINTS
    partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    records: list[Any] = []
    try:
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        while any(consumer.position(p) < ends[p] for p in partitions):
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    mine = [r for r in records if merchant_id.encode() in r.value]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for r in mine:
            producer.send(
                r.topic, key=r.key, value=r.value, headers=r.headers, partition=r.partition
            ).get(timeout=10)
    finally:
        producer.close()
    return len(mine)


async def test_the_summary_follows_the_ledger_events_once_each(fixture: Fixture) -> None:
    fx = fixture
    md = merchant_metadata(fx.merchant_id, ("points:read", "points:write"))
    async with grpc.aio.insecure_channel(fx.points.address) as channel:
        stub = points_pb2_grpc.PointsServiceStub(channel)

        async def summary_with(events: int) -> points_pb2.GetLiabilitySummaryResponse | None:
            answer = await stub.GetLiabilitySummary(
                points_pb2.GetLiabilitySummaryRequest(), metadata=md
            )
            return answer if answer.events >= events else None

        summary = await eventually(lambda: summary_with(len(HISTORY)), 60, "the fixture's events")
        assert summary.events == 10
        assert (summary.outstanding_points, summary.earned_points) == (200, 445)
        assert (summary.redeemed_points, summary.expired_points) == (120, 100)
        assert (summary.adjusted_points, summary.reversed_points) == (-20, -5)
        assert (summary.point_value, summary.outstanding_value) == ("0.01", "2.00")
        on_request = await stub.GetPointsLiability(
            points_pb2.GetPointsLiabilityRequest(), metadata=md
        )
        assert (on_request.outstanding_points, on_request.outstanding_value) == (200, "2.00")

        # Every event again, then one new earn per customer behind them in each partition:
        # once the new ones are in, the redeliveries before them were consumed too.
        redelivered = await asyncio.to_thread(
            redeliver, fx.broker.bootstrap_servers, fx.merchant_id
        )
        assert redelivered == len(HISTORY)
        for customer in ("c1", "c2", "c3"):
            await stub.EarnPoints(
                points_pb2.EarnPointsRequest(
                    customer_id=customer, points=1, idempotency_key=f"after-{customer}"
                ),
                metadata=md,
            )
        summary = await eventually(lambda: summary_with(13), 60, "the three new earns")
        assert (summary.events, summary.outstanding_points, summary.earned_points) == (13, 203, 448)
        on_request = await stub.GetPointsLiability(
            points_pb2.GetPointsLiabilityRequest(), metadata=md
        )
        assert on_request.outstanding_points == summary.outstanding_points

    answered = await http(
        "GET",
        f"{fx.gateway.url}/v1/api/points/liability/summary",
        headers=merchant_headers(fx.merchant_id, ("points:read",)),
    )
    assert answered.status == 200, answered.body
    body = answered.json()
    assert (body["outstanding_points"], body["outstanding_value"]) == ("203", "2.03")
    assert (body["earned_points"], body["adjusted_points"], body["events"]) == ("448", "-20", "13")
    assert "update_time" in body
    other = merchant_headers(f"m-{uuid.uuid4().hex[:8]}", ("points:read",))
    empty = await http("GET", f"{fx.gateway.url}/v1/api/points/liability/summary", headers=other)
    assert empty.json().get("outstanding_points", "0") == "0", empty.body
