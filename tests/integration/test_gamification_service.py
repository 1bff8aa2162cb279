"""Gamification against a real PostgreSQL and Valkey, Envoy and the broker.

Badge rules (points, orders, referrals, month streaks, RFM segments) award a badge once after
the event that meets them, whatever is redelivered; AwardBadge awards by hand, audited;
leaderboards rank customers after earns, and again after Redis lost them (rebuilt from
leaderboard_rankings), hide opted-out customers while ranking them privately, and are
answered from PostgreSQL without Redis. `ISOLATION` is the service's table in the mesh-wide
isolation test (test_tenant_isolation.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as redis
from google.protobuf.message import Message
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition

from loyalnest.gen.events.v1 import gamification_pb2, points_pb2, referrals_pb2, rfm_pb2
from loyalnest.gen.gamification.v1 import gamification_pb2 as pb
from loyalnest.gen.gamification.v1 import gamification_pb2_grpc
from loyalnest.platform.cache import client_from_url
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.events import topics
from loyalnest.platform.events.envelope import Envelope, OutgoingEvent, new_event
from loyalnest.platform.personal_data import CustomerRef
from loyalnest.platform.postgres import Database
from loyalnest.platform.server import running
from loyalnest.services.gamification import consumers
from loyalnest.services.gamification.events import CONSUMER_GROUP
from loyalnest.services.gamification.leaderboards import Leaderboards
from loyalnest.services.gamification.service import (
    DATABASE,
    SERVICE_NAME,
    SPEC,
    GamificationSettings,
)
from loyalnest.services.gamification.store.boards import BoardKeys, RedisBoards
from loyalnest.services.gamification.store.postgres import GamificationStore
from tests.auth import merchant_headers, merchant_metadata
from tests.consumed_events import delivered
from tests.integration.broker import BrokerProcess
from tests.integration.conftest import eventually, serve_for_test, service_settings_for_tests
from tests.integration.events_worker import FAST_EVENTS
from tests.integration.isolation import Case, Metadata, Table
from tests.integration.test_gateway_validate import Gateway, behind_gateway, http

pytestmark = pytest.mark.integration

READ, WRITE = "gamification:read", "gamification:write"
Stub = gamification_pb2_grpc.GamificationServiceStub


def settings_for(database_url: str, redis_url: str | None, **overrides: Any) -> Any:
    values: dict[str, Any] = {"redis_url": redis_url, "gamification_leaderboard_cache_seconds": 0}
    return service_settings_for_tests(GamificationSettings, database_url, **(values | overrides))


@dataclass
class Harness:
    """The service (gRPC), and its consumer's handlers driven by the test (no broker)."""

    stub: Stub
    handlers: dict[str, Any]
    database: Database
    redis: redis.Redis

    async def deliver(
        self,
        merchant_id: str,
        payload: Message,
        *,
        occurred_at: datetime | None = None,
        again: OutgoingEvent | None = None,
    ) -> OutgoingEvent:
        """`payload` as a new event, or `again` (an event delivered before) once more."""
        event = again or new_event(merchant_id, payload, occurred_at=occurred_at)
        await self.handlers[event.spec.event_type](
            delivered(event, payload, consumer=CONSUMER_GROUP)
        )
        return event


@contextlib.asynccontextmanager
async def harness(database_url: str, redis_url: str | None) -> AsyncIterator[Harness]:
    settings = settings_for(database_url, redis_url)
    async with serve_for_test(SPEC, settings, Stub) as (_, stub):
        database = Database(ServiceSettings(database_url=database_url), DATABASE)
        await database.open()
        store = GamificationStore(database)
        client = client_from_url(redis_url, timeout_seconds=2) if redis_url else None
        boards = RedisBoards(client, page_cache_seconds=0) if client else None
        try:
            yield Harness(
                stub,
                consumers.handlers(database, store, Leaderboards(store, boards)),
                database,
                client,  # type: ignore[arg-type]
            )
        finally:
            if boards:
                await boards.close()
            await database.close()


@pytest.fixture
async def h(database_url: str, redis_url: str) -> AsyncIterator[Harness]:
    async with harness(database_url, redis_url) as running_harness:
        yield running_harness


def earned(customer: str, points: int, lifetime: int, reason: str = "") -> points_pb2.PointsEarned:
    return points_pb2.PointsEarned(
        customer_id=customer,
        transaction_id=str(uuid.uuid4()),
        points=points,
        balance_after=lifetime,
        lifetime_earned_after=lifetime,
        reason=reason or f"order:{uuid.uuid4().int % 10**10}",
    )


async def create_rule(
    stub: Stub, merchant: str, rule: pb.BadgeRule, key: str | None = None
) -> pb.BadgeRule:
    response = await stub.CreateBadgeRule(
        pb.CreateBadgeRuleRequest(rule=rule, idempotency_key=key or uuid.uuid4().hex),
        metadata=merchant_metadata(merchant, (WRITE,)),
    )
    created: pb.BadgeRule = response.rule
    return created


async def badges(stub: Stub, merchant: str, customer: str) -> pb.GetCustomerBadgesResponse:
    response: pb.GetCustomerBadgesResponse = await stub.GetCustomerBadges(
        pb.GetCustomerBadgesRequest(customer_id=customer),
        metadata=merchant_metadata(merchant, (READ,)),
    )
    return response


async def board(stub: Stub, merchant: str, **fields: Any) -> pb.GetLeaderboardResponse:
    response: pb.GetLeaderboardResponse = await stub.GetLeaderboard(
        pb.GetLeaderboardRequest(**fields), metadata=merchant_metadata(merchant, (READ,))
    )
    return response


async def awarded_events(database: Database) -> list[gamification_pb2.BadgeAwarded]:
    async with database.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT envelope FROM outbox WHERE event_type = 'badge.awarded' ORDER BY id"
        )
        rows = await cursor.fetchall()
    found = []
    for (envelope,) in rows:
        payload = gamification_pb2.BadgeAwarded()
        Envelope.FromString(envelope).payload.Unpack(payload)
        found.append(payload)
    return found


async def test_rules_are_validated_idempotent_and_listed(h: Harness, merchant_id: str) -> None:
    rule = pb.BadgeRule(name="Regular", kind=pb.RULE_KIND_ORDERS, threshold=3)
    created = await create_rule(h.stub, merchant_id, rule, key="r-1")
    assert created.rule_id and created.threshold == 3
    assert (await create_rule(h.stub, merchant_id, rule, key="r-1")).rule_id == created.rule_id
    for bad, field in (
        (pb.BadgeRule(name="x", kind=pb.RULE_KIND_POINTS, threshold=0), "rule.threshold"),
        (pb.BadgeRule(name="x", kind=pb.RULE_KIND_RFM_SEGMENT, segment="vip"), "rule.segment"),
        (pb.BadgeRule(name=" ", kind=pb.RULE_KIND_MANUAL), "rule.name"),
        (pb.BadgeRule(name="x"), "rule.kind"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await create_rule(h.stub, merchant_id, bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in (refused.value.details() or "")
    listed = await h.stub.ListBadgeRules(
        pb.ListBadgeRulesRequest(), metadata=merchant_metadata(merchant_id, (READ,))
    )
    assert [r.rule_id for r in listed.rules] == [created.rule_id]


async def test_a_badge_is_awarded_once_after_the_threshold_order(
    h: Harness, merchant_id: str
) -> None:
    second = await create_rule(
        h.stub,
        merchant_id,
        pb.BadgeRule(name="Second order", kind=pb.RULE_KIND_ORDERS, threshold=2),
    )
    hundred = await create_rule(
        h.stub,
        merchant_id,
        pb.BadgeRule(name="100 points", kind=pb.RULE_KIND_POINTS, threshold=100),
    )
    await h.deliver(merchant_id, earned("c-1", 60, 60))
    progress = {
        p.rule_id: (p.current, p.target)
        for p in (await badges(h.stub, merchant_id, "c-1")).progress
    }
    assert progress == {second.rule_id: (1, 2), hundred.rule_id: (60, 100)}
    threshold = earned("c-1", 50, 110)
    event = await h.deliver(merchant_id, threshold)
    # The same event again (a redelivery), and a later order: nothing awarded twice.
    await h.deliver(merchant_id, threshold, again=event)
    await h.deliver(merchant_id, earned("c-1", 10, 120))
    got = await badges(h.stub, merchant_id, "c-1")
    assert sorted(b.name for b in got.badges) == ["100 points", "Second order"]
    assert all(b.awarded_by == "rule" for b in got.badges) and list(got.progress) == []
    awarded = await awarded_events(h.database)
    assert sorted(e.badge_type for e in awarded) == sorted(
        [f"orders:{second.rule_id}", f"points:{hundred.rule_id}"]
    )
    assert {e.customer_id for e in awarded} == {"c-1"}


async def test_streak_referral_and_segment_rules(h: Harness, merchant_id: str) -> None:
    streak = await create_rule(
        h.stub,
        merchant_id,
        pb.BadgeRule(name="3 months", kind=pb.RULE_KIND_STREAK_MONTHS, threshold=3),
    )
    await create_rule(
        h.stub,
        merchant_id,
        pb.BadgeRule(name="Ambassador", kind=pb.RULE_KIND_REFERRALS, threshold=1),
    )
    await create_rule(
        h.stub,
        merchant_id,
        pb.BadgeRule(name="VIP", kind=pb.RULE_KIND_RFM_SEGMENT, segment="high_value"),
    )
    for month in (1, 2, 4, 5):  # a gap in March: the run restarts
        when = datetime(2026, month, 15, tzinfo=UTC)
        await h.deliver(merchant_id, earned("c-2", 10, 10 * month), occurred_at=when)
    got = await badges(h.stub, merchant_id, "c-2")
    assert [b.name for b in got.badges] == []
    assert {p.rule_id: p.current for p in got.progress}[streak.rule_id] == 2
    june = datetime(2026, 6, 2, tzinfo=UTC)
    await h.deliver(merchant_id, earned("c-2", 10, 60), occurred_at=june)
    await h.deliver(
        merchant_id,
        referrals_pb2.ReferralCompleted(referral_id="r", referrer_id="c-2", referee_id="c-9"),
    )
    await h.deliver(
        merchant_id,
        rfm_pb2.RfmUpdated(customer_id="c-2", segment=rfm_pb2.RFM_SEGMENT_HIGH_VALUE),
    )
    names = sorted(b.name for b in (await badges(h.stub, merchant_id, "c-2")).badges)
    assert names == ["3 months", "Ambassador", "VIP"]


async def test_award_badge_by_hand_is_audited_and_once(h: Harness, merchant_id: str) -> None:
    rule = await create_rule(
        h.stub, merchant_id, pb.BadgeRule(name="Founder", kind=pb.RULE_KIND_MANUAL)
    )
    write = merchant_metadata(merchant_id, (WRITE,))
    request = pb.AwardBadgeRequest(customer_id="c-3", rule_id=rule.rule_id, idempotency_key="a-1")
    badge = (await h.stub.AwardBadge(request, metadata=write)).badge
    assert badge.awarded_by == "manual" and badge.name == "Founder"
    again = pb.AwardBadgeRequest(customer_id="c-3", rule_id=rule.rule_id, idempotency_key="a-2")
    assert (await h.stub.AwardBadge(again, metadata=write)).badge.badge_id == badge.badge_id
    assert len(await awarded_events(h.database)) == 1
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await h.stub.AwardBadge(
            pb.AwardBadgeRequest(
                customer_id="c-3", rule_id=str(uuid.uuid4()), idempotency_key="a-3"
            ),
            metadata=write,
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    async with h.database.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT actor, user_id FROM audit_logs WHERE entity_type = 'customer_badges'"
        )
        rows = await cursor.fetchall()
    assert len(rows) == 1 and rows[0][1] == "c-3" and rows[0][0]  # who awarded it


async def in_redis(h: Harness, merchant_id: str, period_key: str) -> None:
    """Waits for a board's background rebuild to finish."""
    keys = BoardKeys(merchant_id, period_key)

    async def built() -> bool:
        return bool(await h.redis.exists(keys.built)) and not await h.redis.exists(keys.lock)

    await eventually(built, 15, f"board {period_key} rebuilt in Redis")


async def test_leaderboard_ranks_after_earns_after_a_flush_and_hides_opted_out(
    h: Harness, merchant_id: str
) -> None:
    for customer, lifetime in (("c-a", 300), ("c-b", 500), ("c-c", 100), ("c-d", 400)):
        await h.deliver(merchant_id, earned(customer, lifetime, lifetime))
    first = await board(h.stub, merchant_id, page_size=2, customer_id="c-c")
    assert [(e.rank, e.customer_id, e.score) for e in first.entries] == [
        (1, "c-b", 500),
        (2, "c-d", 400),
    ]
    assert (first.own.rank, first.own.score) == (4, 100) and first.period_key == "all"
    second = await board(h.stub, merchant_id, page_size=2, page_token=first.next_page_token)
    assert [e.customer_id for e in second.entries] == ["c-a", "c-c"]
    month = await board(h.stub, merchant_id, period=pb.PERIOD_MONTH)
    assert month.period_key == datetime.now(UTC).strftime("%Y-%m") and len(month.entries) == 4

    await in_redis(h, merchant_id, "all")
    await in_redis(h, merchant_id, month.period_key)
    await h.redis.flushall()
    assert await h.redis.dbsize() == 0
    # Answered from PostgreSQL at once, while the board is rebuilt in Redis in the background.
    rebuilt = await board(h.stub, merchant_id, page_size=10, customer_id="c-a")
    assert [e.customer_id for e in rebuilt.entries] == ["c-b", "c-d", "c-a", "c-c"]
    assert rebuilt.own.rank == 3
    await in_redis(h, merchant_id, "all")
    from_redis = await board(h.stub, merchant_id, page_size=10, customer_id="c-a")
    assert from_redis == rebuilt

    # An earn after the flush moves c-c to the top.
    await h.deliver(merchant_id, earned("c-c", 450, 550))
    top = await board(h.stub, merchant_id, page_size=1)
    assert top.entries[0].customer_id == "c-c"

    write = merchant_metadata(merchant_id, (WRITE,))
    await h.stub.SetLeaderboardOptOut(
        pb.SetLeaderboardOptOutRequest(customer_id="c-c", opted_out=True, idempotency_key="o-1"),
        metadata=write,
    )
    hidden = await board(h.stub, merchant_id, customer_id="c-c")
    assert [e.customer_id for e in hidden.entries] == ["c-b", "c-d", "c-a"]
    assert (hidden.own.rank, hidden.own.score) == (1, 550)  # still ranked, privately
    await h.redis.flushall()
    assert [e.customer_id for e in (await board(h.stub, merchant_id)).entries] == [
        "c-b",
        "c-d",
        "c-a",
    ]

    other = await board(h.stub, f"other-{merchant_id}", customer_id="c-b")
    assert list(other.entries) == [] and not other.HasField("own")
    with pytest.raises(grpc.aio.AioRpcError) as forged:
        await board(h.stub, merchant_id, page_token="forged")
    assert forged.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_rebuild_whose_keys_redis_lost_marks_no_empty_board_built(
    h: Harness, merchant_id: str
) -> None:
    boards = RedisBoards(h.redis, page_cache_seconds=0)
    keys = BoardKeys(merchant_id, "all")

    async def chunks() -> AsyncIterator[list[tuple[str, int, bool]]]:
        yield [("c-a", 300, True), ("c-b", 500, True)]
        # Redis loses everything once the last chunk is loaded, before the swap.
        await h.redis.flushall()

    assert await boards.rebuild(keys, chunks()) is False
    # Unbuilt: the next read answers from PostgreSQL and starts again.
    assert not await h.redis.exists(keys.built)
    assert await boards.rebuild(keys, _chunks_of([("c-a", 300, True)])) is True
    assert await boards.page(keys, 0, 10) == [("c-a", 300)]


async def _chunks_of(
    rows: list[tuple[str, int, bool]],
) -> AsyncIterator[list[tuple[str, int, bool]]]:
    yield rows


async def test_without_redis_the_leaderboard_comes_from_postgres(
    database_url: str, merchant_id: str
) -> None:
    async with harness(database_url, None) as no_redis:
        for customer, lifetime in (("c-a", 30), ("c-b", 50)):
            await no_redis.deliver(merchant_id, earned(customer, lifetime, lifetime))
        got = await board(no_redis.stub, merchant_id, customer_id="c-a")
        assert [(e.rank, e.customer_id) for e in got.entries] == [(1, "c-b"), (2, "c-a")]
        assert got.own.rank == 2


async def audit_rows_about(database: Database, customer_id: str) -> int:
    async with database.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM audit_logs WHERE user_id = %s OR details::text LIKE %s",
            (customer_id, f'%"{customer_id}"%'),
        )
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def test_export_and_erase(h: Harness, merchant_id: str) -> None:
    await create_rule(
        h.stub, merchant_id, pb.BadgeRule(name="First", kind=pb.RULE_KIND_ORDERS, threshold=1)
    )
    other = f"other-{merchant_id}"
    for merchant, customer, points in (
        (merchant_id, "c-1", 10),
        (merchant_id, "c-2", 20),
        (other, "c-1", 30),
    ):
        await h.deliver(merchant, earned(customer, points, points))
    store = GamificationStore(h.database)
    personal = Leaderboards(store, RedisBoards(h.redis, page_cache_seconds=0))
    exported = (await personal.export_customer(merchant_id, CustomerRef("c-1"))).data
    assert [b["name"] for b in exported["badges"]] == ["First"]
    assert exported["progress"]["orders"] == 1 and len(exported["leaderboard_rankings"]) == 3
    ranked = BoardKeys(merchant_id, "all").ranked
    assert await h.redis.zscore(ranked, "c-1") == 10

    assert await audit_rows_about(h.database, "c-1") > 0
    assert await personal.erase_customer(merchant_id, CustomerRef("c-1")) > 0
    assert await audit_rows_about(h.database, "c-1") == 0  # the deletes' rows too
    assert await personal.erase_customer(merchant_id, CustomerRef("c-1")) == 0
    assert (await personal.export_customer(merchant_id, CustomerRef("c-1"))).data == {
        "badges": [],
        "progress": None,
        "leaderboard_rankings": [],
    }
    assert await h.redis.zscore(ranked, "c-1") is None  # gone from Redis too
    assert await h.redis.zscore(BoardKeys(other, "all").ranked, "c-1") == 30
    assert [e.customer_id for e in (await board(h.stub, merchant_id)).entries] == ["c-2"]
    # That read started a rebuild in the service's process; the erasure runs in this one.
    await in_redis(h, merchant_id, "all")

    await personal.erase_merchant(merchant_id)
    exported_c2 = (await personal.export_customer(merchant_id, CustomerRef("c-2"))).data
    assert exported_c2["leaderboard_rankings"] == []
    assert await h.redis.keys(f"leaderboard:{{{merchant_id}}}:*") == []
    assert list((await board(h.stub, merchant_id)).entries) == []
    assert [e.customer_id for e in (await board(h.stub, other)).entries] == ["c-1"]


# ---- end to end: Envoy and the broker --------------------------------------------------------


def _publish(bootstrap: str, events: list[OutgoingEvent]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for event in events:
            headers = [(k, v.encode()) for k, v in event.headers.items()]
            producer.send(
                event.spec.topic.name, key=event.key.encode(), value=event.value, headers=headers
            ).get(timeout=10)
    finally:
        producer.close()


def _awarded_on_topic(bootstrap: str, wait: float) -> list[str]:
    """Every badge.awarded on Gamification's topic within `wait` seconds: badge types."""
    topic = topics.GAMIFICATION
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    found: list[str] = []
    try:
        partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        until = time.monotonic() + wait
        while time.monotonic() < until:
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    payload = gamification_pb2.BadgeAwarded()
                    Envelope.FromString(record.value).payload.Unpack(payload)
                    found.append(payload.badge_type)
    finally:
        consumer.close()
    return found


@contextlib.asynccontextmanager
async def pipeline(
    database_url: str, redis_url: str, workdir: Path
) -> AsyncIterator[tuple[Gateway, BrokerProcess]]:
    broker = BrokerProcess()
    await broker.start()
    try:
        settings = settings_for(
            database_url,
            redis_url,
            events_enabled=True,
            kafka_bootstrap_servers=broker.bootstrap_servers,
            **FAST_EVENTS,
        )
        async with running(SPEC, settings) as service:
            await asyncio.wait_for(service.health.started.wait(), 30)
            async with behind_gateway("gamification", SERVICE_NAME, service, workdir) as gateway:
                yield gateway, broker
    finally:
        broker.close()


async def test_through_envoy_and_the_broker_a_badge_once_and_ranks_after_a_flush(
    database_url: str, redis_url: str, tmp_path: Path, merchant_id: str
) -> None:
    async with pipeline(database_url, redis_url, tmp_path) as (gateway, broker):
        headers = merchant_headers(merchant_id, (READ, WRITE))
        base = f"{gateway.url}/v1/api/gamification"
        created = await http(
            "POST",
            f"{base}/badge-rules",
            headers=headers,
            json_body={
                "rule": {"name": "Third order", "kind": "RULE_KIND_ORDERS", "threshold": "3"},
                "idempotency_key": "rule-3",
            },
        )
        assert created.status == 200, created.body
        rule_id = created.json()["rule"]["rule_id"]
        bad = await http(
            "POST",
            f"{base}/badge-rules",
            headers=headers,
            json_body={"rule": {"name": "x", "kind": "RULE_KIND_POINTS"}, "idempotency_key": "b"},
        )
        assert bad.status == 400 and "rule.threshold" in bad.body.decode()

        orders = [new_event(merchant_id, earned("7390012230001", 100, 100 * n)) for n in (1, 2, 3)]
        others = [new_event(merchant_id, earned("7390012230002", 250, 250))]
        # The threshold order twice (a redelivery), then all of them again.
        await asyncio.to_thread(
            _publish, broker.bootstrap_servers, [*orders, orders[2], *others, *orders]
        )

        async def badge_shown() -> Any:
            response = await http(
                "GET", f"{base}/badges?customer_id=7390012230001", headers=headers
            )
            assert response.status == 200, response.body
            return response.json().get("badges")

        shown = await eventually(badge_shown, 60, "the badge")
        assert [(b["name"], b["rule_id"]) for b in shown] == [("Third order", rule_id)]

        async def ranked() -> Any:
            response = await http(
                "GET", f"{base}/leaderboard?customer_id=7390012230002", headers=headers
            )
            entries = response.json().get("entries", [])
            return response.json() if len(entries) == 2 and entries[0]["score"] == "300" else None

        listing = await eventually(ranked, 30, "both customers ranked")
        assert [e["customer_id"] for e in listing["entries"]] == ["7390012230001", "7390012230002"]
        assert listing["own"]["rank"] == "2"

        flush = redis.Redis.from_url(redis_url)
        try:
            await flush.flushall()
        finally:
            await flush.aclose()
        after = await http("GET", f"{base}/leaderboard?customer_id=7390012230002", headers=headers)
        assert after.json()["entries"] == listing["entries"] and after.json()["own"]["rank"] == "2"

        awarded = await asyncio.to_thread(_awarded_on_topic, broker.bootstrap_servers, 3.0)
        assert awarded == [f"orders:{rule_id}"]
        assert (await http("GET", f"{base}/leaderboard")).status == 401


# ---- the mesh-wide isolation table (test_tenant_isolation.py) ---------------------------


async def _arrange(ch: grpc.aio.Channel, md: Metadata) -> dict[str, Any]:
    stub = Stub(ch)
    create = pb.CreateBadgeRuleRequest(
        rule=pb.BadgeRule(name="b's badge", kind=pb.RULE_KIND_MANUAL), idempotency_key="key-b-rule"
    )
    rule = (await stub.CreateBadgeRule(create, metadata=md)).rule
    award = pb.AwardBadgeRequest(
        customer_id="cust-b", rule_id=rule.rule_id, idempotency_key="key-b-award"
    )
    badge = (await stub.AwardBadge(award, metadata=md)).badge
    opt_out = pb.SetLeaderboardOptOutRequest(
        customer_id="cust-b", opted_out=True, idempotency_key="key-b-opt"
    )
    await stub.SetLeaderboardOptOut(opt_out, metadata=md)
    return {
        "secrets": [rule.rule_id, badge.badge_id, "b's badge"],
        "rule": rule,
        "create": create,
        "award": award,
        "opt_out": opt_out,
    }


async def _snapshot(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    stub = Stub(ch)
    return (
        await stub.ListBadgeRules(pb.ListBadgeRulesRequest(), metadata=md),
        await stub.GetCustomerBadges(
            pb.GetCustomerBadgesRequest(customer_id="cust-b"), metadata=md
        ),
    )


def _call(method: str, build: Any) -> Any:
    async def attack(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
        return await getattr(Stub(ch), method)(build(b), metadata=md)

    return attack


ISOLATION = Table(
    arrange=_arrange,
    snapshot=_snapshot,
    cases={
        # B's exact request, key included: A gets a rule of its own.
        "CreateBadgeRule": [
            Case(_call("CreateBadgeRule", lambda b: b["create"]), may_succeed=True)
        ],
        "ListBadgeRules": [
            Case(_call("ListBadgeRules", lambda b: pb.ListBadgeRulesRequest()), may_succeed=True)
        ],
        # B's rule does not exist for A.
        "AwardBadge": [Case(_call("AwardBadge", lambda b: b["award"]))],
        "GetCustomerBadges": [
            Case(
                _call(
                    "GetCustomerBadges", lambda b: pb.GetCustomerBadgesRequest(customer_id="cust-b")
                ),
                may_succeed=True,
            )
        ],
        "GetLeaderboard": [
            Case(
                _call("GetLeaderboard", lambda b: pb.GetLeaderboardRequest(customer_id="cust-b")),
                may_succeed=True,
            )
        ],
        # A's opt-out of "cust-b" is A's customer of that id, never B's.
        "SetLeaderboardOptOut": [
            Case(_call("SetLeaderboardOptOut", lambda b: b["opt_out"]), may_succeed=True)
        ],
    },
)
