"""Who may redeem a reward where (issue 21): rewards limited to the online store or to POS,
and gift cards limited by the merchant's plan. Through Envoy (REST, as the storefront widget
and a POS app call it) against real PostgreSQL, Valkey, Auth and the Shopify Admin API
stand-in; the plan as Core publishes it to Points (tests/integration/test_points_plan_flow
takes it from Core's ChangePlan through the broker)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from kafka import KafkaProducer

from loyalnest.gen.events.v1 import core_pb2, rfm_pb2
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.events.clients import ensure_topics
from loyalnest.platform.events.envelope import new_event
from loyalnest.platform.events.topics import RFM
from loyalnest.platform.postgres import Database
from loyalnest.platform.program_settings import default_program
from loyalnest.services.points.service import DATABASE, SERVICE_NAME, SPEC
from loyalnest.services.points.store.postgres import PostgresLedgerStore
from tests.auth import merchant_headers
from tests.integration import test_points_rewards as rewards
from tests.integration.broker import BrokerProcess
from tests.integration.conftest import eventually, points_settings, serving
from tests.integration.events_worker import FAST_EVENTS
from tests.integration.test_gateway_validate import Gateway, behind_gateway, http
from tests.integration.test_points_reward_catalogue import detail
from tests.integration.test_points_rewards import SHOP
from tests.integration.test_service_identity import POINTS_CREDENTIAL

pytestmark = pytest.mark.integration

shopify = rewards.shopify
auth = rewards.auth
merchant_id = rewards.merchant_id
__all__ = ["auth", "merchant_id", "shopify"]

FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION.value[0]


@pytest.fixture
async def gateway(
    database_url, redis_url, merchant_id, shopify, auth, tmp_path
) -> AsyncIterator[Gateway]:
    """Points behind Envoy, calling Auth (the shop's token) and the Shopify stand-in; its
    copy of the program read afresh each time (no process cache), so a plan published
    between two calls applies to the second."""
    settings = points_settings(
        database_url,
        redis_url=redis_url,
        shopify_admin_base_url=shopify.base_url,
        call_targets={"auth": auth.address},
        service_credential=POINTS_CREDENTIAL,
        points_program_cache_seconds=0,
    )
    async with (
        serving(SPEC, settings) as points,
        behind_gateway("points", SERVICE_NAME, points, tmp_path) as running,
    ):
        yield running


class Api:
    def __init__(self, gateway: Gateway, merchant_id: str) -> None:
        self.url = f"{gateway.url}/v1/api"
        self.headers = merchant_headers(merchant_id, rewards.PERMISSIONS)

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return await http(method, f"{self.url}{path}", headers=self.headers, json_body=body)

    async def create(self, **reward: Any) -> dict[str, Any]:
        reward.setdefault("name", "reward")
        created = await self.call(
            "POST", "/rewards", {"reward": reward, "idempotency_key": uuid.uuid4().hex}
        )
        assert created.status == 200, created.body
        found: dict[str, Any] = created.json()["reward"]
        return found

    async def earn(self, customer: str, points: int) -> None:
        body = {"customer_id": customer, "points": points, "idempotency_key": uuid.uuid4().hex}
        earned = await self.call("POST", "/points/earn", body)
        assert earned.status == 200, earned.body

    async def redeem(self, reward_id: str, customer: str, **extra: Any) -> Any:
        body = {"customer_id": customer, "idempotency_key": uuid.uuid4().hex, **extra}
        return await self.call("POST", f"/rewards/{reward_id}/redeem", body)

    async def balance(self, customer: str) -> int:
        got = await self.call("GET", f"/points/balance/{customer}")
        assert got.status == 200, got.body
        return int(got.json()["balance"]["balance"])

    async def eligibility(self, customer: str, query: str = "") -> dict[str, list[str]]:
        listed = await self.call("GET", f"/rewards?customer_id={customer}{query}")
        assert listed.status == 200, listed.body
        return {e["reward_id"]: e.get("reasons", []) for e in listed.json()["eligibility"]}


def refusal(response: Any) -> tuple[int, int, str]:
    """(HTTP status, gRPC code, PreconditionFailure type) of a refused call."""
    body = response.json()
    return (
        response.status,
        body["code"],
        detail(body, "PreconditionFailure")["violations"][0]["type"],
    )


async def test_a_reward_is_redeemed_only_on_its_channels(gateway: Gateway, merchant_id, shopify):
    api = Api(gateway, merchant_id)
    customer = "7392000000001"
    pos_only = await api.create(
        kind="REWARD_KIND_FIXED_AMOUNT",
        value="5.00",
        points_cost=100,
        channels=["SALES_CHANNEL_POS"],
    )
    online_only = await api.create(
        kind="REWARD_KIND_FREE_SHIPPING", points_cost=50, channels=["SALES_CHANNEL_ONLINE"]
    )
    anywhere = await api.create(kind="REWARD_KIND_PERCENTAGE", value="10", points_cost=10)
    assert pos_only["channels"] == ["SALES_CHANNEL_POS"]
    assert anywhere.get("channels", []) == []  # none listed: every channel
    await api.earn(customer, 500)

    # The storefront (no channel: online) cannot redeem the POS reward; nothing is debited.
    refused = await api.redeem(pos_only["reward_id"], customer)
    assert refusal(refused) == (400, FAILED_PRECONDITION, "REWARD_CHANNEL_UNAVAILABLE"), (
        refused.body
    )
    assert "offered pos only; this redemption is online" in refused.json()["message"]
    assert await api.balance(customer) == 500
    # A POS device says where it is, and gets its code.
    done = await api.redeem(pos_only["reward_id"], customer, channel="SALES_CHANNEL_POS")
    assert done.status == 200, done.body
    assert done.json()["discount_code"] in shopify.codes_of(SHOP)
    # The online-only reward the other way round; the unrestricted one on both.
    refused = await api.redeem(online_only["reward_id"], customer, channel="SALES_CHANNEL_POS")
    assert refusal(refused)[2] == "REWARD_CHANNEL_UNAVAILABLE"
    explicit = await api.redeem(online_only["reward_id"], customer, channel="SALES_CHANNEL_ONLINE")
    assert explicit.status == 200, explicit.body
    for channel in ("SALES_CHANNEL_ONLINE", "SALES_CHANNEL_POS"):
        both = await api.redeem(anywhere["reward_id"], customer, channel=channel)
        assert both.status == 200, both.body
    assert await api.balance(customer) == 500 - 100 - 50 - 2 * 10

    # Eligibility per channel (unspecified: online).
    unavailable = ["REWARD_INELIGIBILITY_CHANNEL_UNAVAILABLE"]
    online = await api.eligibility(customer)
    assert online == {
        pos_only["reward_id"]: unavailable,
        online_only["reward_id"]: [],
        anywhere["reward_id"]: [],
    }
    assert online == await api.eligibility(customer, "&channel=SALES_CHANNEL_ONLINE")
    pos = await api.eligibility(customer, "&channel=SALES_CHANNEL_POS")
    assert pos == {
        pos_only["reward_id"]: [],
        online_only["reward_id"]: unavailable,
        anywhere["reward_id"]: [],
    }

    # The merchant opens the POS reward online too: the storefront may redeem it now.
    patched = await api.call(
        "PATCH",
        f"/rewards/{pos_only['reward_id']}",
        {
            "reward": {"channels": ["SALES_CHANNEL_POS", "SALES_CHANNEL_ONLINE"]},
            "update_mask": "channels",
        },
    )
    assert patched.status == 200, patched.body
    assert patched.json()["reward"]["channels"] == ["SALES_CHANNEL_POS", "SALES_CHANNEL_ONLINE"]
    again = await api.redeem(pos_only["reward_id"], customer)
    assert again.status == 200, again.body

    # Bad channels are named.
    bad = await api.call(
        "POST",
        "/rewards",
        {
            "reward": {
                "name": "x",
                "kind": "REWARD_KIND_FREE_SHIPPING",
                "points_cost": 1,
                "channels": ["SALES_CHANNEL_POS", "SALES_CHANNEL_UNSPECIFIED", "SALES_CHANNEL_POS"],
            },
            "idempotency_key": "bad-channels",
        },
    )
    assert bad.status == 400, bad.body
    fields = {v["field"] for v in detail(bad.json(), "BadRequest")["field_violations"]}
    assert fields == {"reward.channels[1]", "reward.channels[2]"}
    bad = await api.redeem(anywhere["reward_id"], customer, channel=7)
    assert bad.status == 400, bad.body
    assert [v["field"] for v in detail(bad.json(), "BadRequest")["field_violations"]] == ["channel"]


async def publish_plan(database_url: str, merchant_id: str, plan: core_pb2.PlanLimits) -> None:
    """Points' copy of the program with `plan`, as Core's program_settings.updated leaves it
    (the next version each time)."""
    database = Database(ServiceSettings(database_url=database_url), DATABASE)
    await database.open()
    try:
        await database.migrate()
        store = PostgresLedgerStore(database)
        raw = await store.program_settings(merchant_id)
        version = 1 if raw is None else core_pb2.ProgramSettings.FromString(raw).version + 1
        program = default_program(plan)
        program.version = version
        assert await store.save_program_settings(merchant_id, version, program.SerializeToString())
    finally:
        await database.close()


async def test_gift_cards_follow_the_plan(gateway: Gateway, merchant_id, shopify, database_url):
    api = Api(gateway, merchant_id)
    customer = "7392000000002"
    gift = {"kind": "REWARD_KIND_GIFT_CARD", "value": "5.00", "points_cost": 100}
    await publish_plan(
        database_url, merchant_id, core_pb2.PlanLimits(plan="plus", gift_card_rewards=True)
    )
    card = await api.create(**gift)
    await api.earn(customer, 500)
    issued = await api.redeem(card["reward_id"], customer)
    assert issued.status == 200, issued.body

    # Downgraded to a plan without gift cards: the card already issued stays, no new one.
    await publish_plan(
        database_url, merchant_id, core_pb2.PlanLimits(plan="free", gift_card_rewards=False)
    )
    refused = await api.redeem(card["reward_id"], customer)
    assert refusal(refused) == (400, FAILED_PRECONDITION, "PLAN_FEATURE_REQUIRED"), refused.body
    message = refused.json()["message"]
    assert "'free' plan does not include gift_card_rewards" in message
    assert detail(refused.json(), "PreconditionFailure")["violations"][0]["subject"] == (
        "plan/free/gift_card_rewards"
    )
    assert await api.balance(customer) == 400  # nothing debited
    assert await api.eligibility(customer) == {
        card["reward_id"]: ["REWARD_INELIGIBILITY_PLAN_FEATURE_REQUIRED"]
    }
    created = await api.call(
        "POST", "/rewards", {"reward": {"name": "card", **gift}, "idempotency_key": "card-2"}
    )
    assert refusal(created) == (400, FAILED_PRECONDITION, "PLAN_FEATURE_REQUIRED"), created.body
    # Nor can another reward become a gift card, or the old one be switched back on; other
    # rewards are as before.
    shipping = await api.create(kind="REWARD_KIND_FREE_SHIPPING", points_cost=10)
    changed = await api.call(
        "PATCH",
        f"/rewards/{shipping['reward_id']}",
        {"reward": {"kind": "REWARD_KIND_GIFT_CARD", "value": "5.00"}, "update_mask": "kind,value"},
    )
    assert refusal(changed)[2] == "PLAN_FEATURE_REQUIRED", changed.body
    off = await api.call(
        "PATCH",
        f"/rewards/{card['reward_id']}",
        {"reward": {"active": False}, "update_mask": "active"},
    )
    assert off.status == 200, off.body
    on = await api.call(
        "PATCH",
        f"/rewards/{card['reward_id']}",
        {"reward": {"active": True}, "update_mask": "active"},
    )
    assert refusal(on)[2] == "PLAN_FEATURE_REQUIRED", on.body
    assert (await api.redeem(shipping["reward_id"], customer)).status == 200

    # Upgraded again: gift cards are back.
    await publish_plan(
        database_url, merchant_id, core_pb2.PlanLimits(plan="plus", gift_card_rewards=True)
    )
    created = await api.call(
        "POST", "/rewards", {"reward": {"name": "card", **gift}, "idempotency_key": "card-2"}
    )
    assert created.status == 200, created.body
    assert (await api.redeem(created.json()["reward"]["reward_id"], customer)).status == 200


# ---- RFM segments: Points' copy fed by rfm.updated through the broker --------------------


@pytest.fixture
async def events_gateway(
    database_url, redis_url, merchant_id, shopify, auth, tmp_path
) -> AsyncIterator[tuple[Gateway, str]]:
    """Points with its consumers on (the broker), behind Envoy, calling Auth and Shopify."""
    broker = BrokerProcess()
    await broker.start()
    try:
        settings = points_settings(
            database_url,
            redis_url=redis_url,
            shopify_admin_base_url=shopify.base_url,
            call_targets={"auth": auth.address},
            service_credential=POINTS_CREDENTIAL,
            events_enabled=True,
            kafka_bootstrap_servers=broker.bootstrap_servers,
            **FAST_EVENTS,
        )
        async with (
            serving(SPEC, settings) as points,
            behind_gateway("points", SERVICE_NAME, points, tmp_path) as running,
        ):
            yield running, broker.bootstrap_servers
    finally:
        broker.close()


def publish_rfm(
    bootstrap: str, merchant_id: str, customer_id: str, segment: int, at: datetime
) -> None:
    """rfm.updated as RFM's outbox relay publishes it (enveloped, on RFM's topic)."""
    settings = ServiceSettings(kafka_bootstrap_servers=bootstrap, **FAST_EVENTS)
    ensure_topics(settings, "test-rfm", [RFM.name])
    event = new_event(
        merchant_id,
        rfm_pb2.RfmUpdated(customer_id=customer_id, segment=segment),  # type: ignore[arg-type]
        occurred_at=at,
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(
            RFM.name,
            key=event.key.encode(),
            value=event.value,
            headers=[(k, v.encode()) for k, v in event.headers.items()],
        ).get(timeout=10)
    finally:
        producer.close()


async def test_segment_only_rewards_follow_rfm(events_gateway, merchant_id, shopify):
    gateway, bootstrap = events_gateway
    api = Api(gateway, merchant_id)
    customer = "7392000000003"
    vip = await api.create(
        kind="REWARD_KIND_FIXED_AMOUNT",
        value="5.00",
        points_cost=10,
        eligible_segments=["RFM_SEGMENT_HIGH_VALUE"],
    )
    win_back = await api.create(
        kind="REWARD_KIND_PERCENTAGE",
        value="20",
        points_cost=10,
        eligible_segments=["RFM_SEGMENT_AT_RISK", "RFM_SEGMENT_NEW"],
    )
    assert vip["eligible_segments"] == ["RFM_SEGMENT_HIGH_VALUE"]
    await api.earn(customer, 100)
    required = ["REWARD_INELIGIBILITY_SEGMENT_REQUIRED"]

    # RFM has not scored the customer: neither reward.
    assert await api.eligibility(customer) == {vip["reward_id"]: required,
                                               win_back["reward_id"]: required}  # fmt: skip
    refused = await api.redeem(vip["reward_id"], customer)
    assert refusal(refused) == (400, FAILED_PRECONDITION, "SEGMENT_REQUIRED"), refused.body
    assert "the customer has no RFM segment" in refused.json()["message"]

    # RFM scores the customer high value: the VIP reward opens, the win-back one stays shut.
    now = datetime.now(UTC)
    await asyncio.to_thread(
        publish_rfm, bootstrap, merchant_id, customer, rfm_pb2.RFM_SEGMENT_HIGH_VALUE, now
    )

    async def scored(expected: dict[str, list[str]]) -> bool:
        return await api.eligibility(customer) == expected

    high_value = {vip["reward_id"]: [], win_back["reward_id"]: required}
    await eventually(lambda: scored(high_value), 30, "the high_value segment in Points")
    done = await api.redeem(vip["reward_id"], customer)
    assert done.status == 200, done.body
    assert done.json()["discount_code"] in shopify.codes_of(SHOP)

    # An older score arriving late changes nothing; a newer one (at risk) swaps the rewards.
    await asyncio.to_thread(
        publish_rfm,
        bootstrap,
        merchant_id,
        customer,
        rfm_pb2.RFM_SEGMENT_NEW,
        now - timedelta(days=1),
    )
    await asyncio.to_thread(
        publish_rfm,
        bootstrap,
        merchant_id,
        customer,
        rfm_pb2.RFM_SEGMENT_AT_RISK,
        now + timedelta(seconds=1),
    )
    at_risk = {vip["reward_id"]: required, win_back["reward_id"]: []}
    await eventually(lambda: scored(at_risk), 30, "the at_risk segment in Points")
    refused = await api.redeem(vip["reward_id"], customer)
    assert refusal(refused)[2] == "SEGMENT_REQUIRED"
    assert "the customer has segment 'at_risk'" in refused.json()["message"]
    assert (await api.redeem(win_back["reward_id"], customer)).status == 200

    bad = await api.call(
        "POST",
        "/rewards",
        {
            "reward": {"name": "x", "kind": "REWARD_KIND_FREE_SHIPPING", "points_cost": 1,
                       "eligible_segments": ["RFM_SEGMENT_UNSPECIFIED"]},
            "idempotency_key": "bad-segments",
        },
    )  # fmt: skip
    assert bad.status == 400, bad.body
    fields = {v["field"] for v in detail(bad.json(), "BadRequest")["field_violations"]}
    assert fields == {"reward.eligible_segments[0]"}
