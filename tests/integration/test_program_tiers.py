"""VIP tiers end to end. Through the local stack (Envoy, Core, Points, the broker): tiers set in
Core's settings, points earned through the gateway move the customer up at once (Points'
consumer of its own points.earned), the balance shows the tier and progress, the recalculation
job on a clock moved to the new year takes the tier away, and tier.changed is on the broker
each time. With Auth and the Shopify Admin stand-in: the tier's tag reaches the customer at
Shopify (tagsAdd / tagsRemove). Figures worked out in the comments."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition

from loyalnest.devstack.standins.shopify_admin import ShopifyAdminStandIn
from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.events.v1 import core_pb2
from loyalnest.gen.points.v1 import points_pb2 as pb
from loyalnest.gen.points.v1 import points_pb2_grpc
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.events.topics import POINTS
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.personal_data import CustomerRef
from loyalnest.platform.postgres import Database
from loyalnest.platform.program_settings import default_program
from loyalnest.services.points import tiers as tiers_module
from loyalnest.services.points.domain import Posting, TierInput, TransactionType
from loyalnest.services.points.earning import ProgramCopies
from loyalnest.services.points.events import CONSUMER_GROUP as POINTS_GROUP
from loyalnest.services.points.ledger import Ledger
from loyalnest.services.points.service import DATABASE, SPEC, recalculate_tiers
from loyalnest.services.points.store.postgres import PostgresLedgerStore
from loyalnest.services.points.tiers import VipTiers
from tests.auth import merchant_metadata
from tests.integration.broker import BrokerProcess
from tests.integration.conftest import eventually, points_settings, serve_for_test
from tests.integration.events_worker import FAST_EVENTS
from tests.integration.shopify_standin import API_KEY, API_SECRET
from tests.integration.test_auth_service import install
from tests.integration.test_gateway_validate import http
from tests.integration.test_order_flow import Stack, balance, local_stack, order, order_status
from tests.integration.test_program_expiry import points_events_of, settings_reached_points
from tests.integration.test_program_rules import patch_settings, post
from tests.integration.test_service_identity import POINTS_CREDENTIAL, serving_auth

pytestmark = pytest.mark.integration

TIERS = [
    {"tier_id": "silver", "name": "Silver", "threshold": "100", "shopify_tag": "VIP Silver"},
    {"tier_id": "gold", "name": "Gold", "threshold": "300", "shopify_tag": "VIP Gold"},
]


@pytest.fixture
async def program_stack(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with local_stack(database_url, redis_url, tmp_path) as running_stack:
        yield running_stack


async def earn(stack: Stack, customer: str, points: int, key: str) -> None:
    response = await http(
        "POST",
        f"{stack.gateway.url}/v1/api/points/earn",
        headers=stack.headers,
        json_body={"customer_id": customer, "points": points, "idempotency_key": key},
    )
    assert response.status == 200, response.body


async def vip(stack: Stack, customer: str) -> dict[str, Any]:
    found: dict[str, Any] = (await stack.get_json(f"/v1/api/points/balance/{customer}"))["vip"]
    return found


def points_caught_up(bootstrap: str, database_url: str) -> bool:
    """Whether Points has published every ledger event it wrote and its own consumer has
    applied them all (committed up to each partition's end): nothing late to evaluate at a
    clock the test moves next."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM points.outbox WHERE sent_at IS NULL").fetchone()
    if row is None or row[0]:
        return False
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=POINTS_GROUP, enable_auto_commit=False
    )
    try:
        partitions = [TopicPartition(POINTS.name, p) for p in range(POINTS.partitions)]
        ends = consumer.end_offsets(partitions)
        return all((consumer.committed(tp) or 0) >= ends[tp] for tp in partitions)
    finally:
        consumer.close()


def tier_events(bootstrap: str, merchant_id: str, expected: int) -> list[Any]:
    events = points_events_of(bootstrap, merchant_id, expected=expected, only=("tier.changed",))
    return [p for _, p in events]


async def test_tier_up_at_once_down_at_the_year_end(
    program_stack: Stack, database_url: str, redis_url: str
) -> None:
    stack = program_stack
    patched = await http(
        "PATCH",
        f"{stack.gateway.url}/v1/api/core/settings",
        headers=stack.headers,
        json_body={
            "settings": {
                "vip_tiers": TIERS,
                "vip_metric": "VIP_METRIC_POINTS_EARNED",
                "vip_term": "VIP_TERM_CALENDAR_YEAR",
            },
            "update_mask": "vip_tiers,vip_metric,vip_term",
            "idempotency_key": "tiers-1",
        },
    )
    assert patched.status == 200, patched.body
    await settings_reached_points(stack, int(patched.json()["settings"]["version"]))
    bad = await http(
        "PATCH",
        f"{stack.gateway.url}/v1/api/core/settings",
        headers=stack.headers,
        json_body={
            "settings": {"vip_tiers": [TIERS[1], TIERS[0]]},  # thresholds must rise
            "update_mask": "vip_tiers",
            "idempotency_key": "tiers-bad",
        },
    )
    assert bad.status == 400, bad.body

    stack.clock.now = datetime.now(UTC)
    await earn(stack, "701", 150, "e-1")  # 150 >= 100: Silver at once

    async def tier_is(expected: str) -> bool:
        return (await vip(stack, "701")).get("tier_id", "") == expected

    await eventually(lambda: tier_is("silver"), 30, "Silver")
    await earn(stack, "701", 200, "e-2")  # 350 >= 300: Gold at once
    await eventually(lambda: tier_is("gold"), 30, "Gold")
    status = await vip(stack, "701")
    year_end = datetime(stack.clock.now.year + 1, 1, 1, tzinfo=UTC)
    assert (status["tier_name"], status["qualifying_points"]) == ("Gold", "350")
    assert status.get("next_tier_id", "") == ""
    assert datetime.fromisoformat(status["term_end_time"].replace("Z", "+00:00")) == year_end

    # The new year: nothing earned in it; the job takes the tier away (once).
    settings = points_settings(database_url, redis_url=redis_url)
    assert await recalculate_tiers(settings, clock=lambda: year_end) == 1
    assert await recalculate_tiers(settings, clock=lambda: year_end) == 0
    stack.clock.now = year_end
    status = await vip(stack, "701")
    assert status.get("tier_id", "") == ""
    assert (status["next_tier_id"], status["points_to_next_tier"]) == ("silver", "100")

    changes = await asyncio.to_thread(tier_events, stack.bootstrap_servers, stack.merchant_id, 3)
    assert [
        (c.previous_tier_id, c.tier_id, list(c.tags_added), list(c.tags_removed)) for c in changes
    ] == [
        ("", "silver", ["VIP Silver"], []),
        ("silver", "gold", ["VIP Gold"], ["VIP Silver"]),
        ("gold", "", [], ["VIP Gold"]),
    ]


# ---- perks, the grace rule, tier-only rules -----------------------------------------------

PERK_TIERS = [
    TIERS[0],
    TIERS[1] | {"earning_multiplier": "1.5", "entry_reward_points": "50"},
]
TIER_RULES: list[dict[str, Any]] = [
    {
        "rule_id": "spend",
        "enabled": True,
        "type": "EARNING_RULE_TYPE_PLACE_ORDER",
        "points_per_currency_unit": "1",
    },
    {
        "rule_id": "gold-bonus",
        "enabled": True,
        "type": "EARNING_RULE_TYPE_PLACE_ORDER",
        "points": "10",
        "eligible_tiers": ["gold"],
    },
]
CART = {"lines": [{"product_id": "5", "quantity": "1", "price": "100.00"}]}


def violated(response: Any) -> set[str]:
    return {v["field"] for d in response.json()["details"] for v in d.get("field_violations", [])}


async def entry_rewards(stack: Stack, customer: str) -> list[dict[str, Any]]:
    history = await stack.get_json(f"/v1/api/points/transactions/{customer}?page_size=100")
    return [t for t in history.get("transactions", []) if t.get("reason") == "tier:gold"]


async def test_perks_grace_and_tier_only_rules(
    program_stack: Stack, database_url: str, redis_url: str
) -> None:
    stack = program_stack
    # The shared check, through Core: a tier-only rule naming no tier, a grace of 400 days,
    # a multiplier below 1.
    bad = await patch_settings(
        stack,
        {
            "vip_tiers": [TIERS[0], TIERS[1] | {"earning_multiplier": "0.5"}],
            "earning_rules": [TIER_RULES[1] | {"eligible_tiers": ["platinum"]}],
            "vip_grace_days": 400,
        },
        "vip_tiers,earning_rules,vip_grace_days",
        "perks-bad",
    )
    assert bad.status == 400, bad.body
    assert {
        "settings.vip_tiers[1].earning_multiplier",
        "settings.vip_grace_days",
    } <= violated(bad), bad.body
    unknown = await patch_settings(
        stack,
        {"earning_rules": [TIER_RULES[1] | {"eligible_tiers": ["platinum"]}]},
        "earning_rules",
        "perks-unknown",
    )
    assert unknown.status == 400, unknown.body
    assert violated(unknown) == {"settings.earning_rules[0].eligible_tiers[0]"}

    good = await patch_settings(
        stack,
        {
            "vip_tiers": PERK_TIERS,
            "vip_metric": "VIP_METRIC_POINTS_EARNED",
            "vip_term": "VIP_TERM_CALENDAR_YEAR",
            "vip_grace_days": 30,
            "earning_rules": TIER_RULES,
            "pending_period": "0s",
        },
        "vip_tiers,vip_metric,vip_term,vip_grace_days,earning_rules,pending_period",
        "perks-1",
    )
    assert good.status == 200, good.body
    assert good.json()["settings"]["vip_grace_days"] == 30
    await settings_reached_points(stack, int(good.json()["settings"]["version"]))
    stack.clock.now = datetime.now(UTC)

    # Not in a tier: the cart of 100.00 earns spend's 100 only, with or without the customer.
    preview = await post(stack, "/v1/api/points/preview", CART | {"customer_id": "711"})
    assert preview.status == 200, preview.body
    assert (preview.json()["points"], preview.json().get("tier_id", "")) == ("100", "")

    # 320 earned: Gold at once, and Gold's entry reward of 50 (not counted towards a tier).
    await earn(stack, "711", 320, "p-1")

    async def tier_is(expected: str) -> bool:
        return (await vip(stack, "711")).get("tier_id", "") == expected

    await eventually(lambda: tier_is("gold"), 30, "Gold")

    async def has_entry_reward() -> bool:
        return len(await entry_rewards(stack, "711")) == 1

    await eventually(has_entry_reward, 30, "Gold's entry reward")
    assert await balance(stack, 711) == 370
    assert (await vip(stack, "711"))["qualifying_points"] == "320"
    (reward,) = await entry_rewards(stack, "711")
    assert (reward["points"], reward["rule_id"]) == ("50", "vip:gold")

    # Gold: spend 100 + gold-bonus 10, x1.5 -> the extra 55 as "vip:gold"; 165 in all.
    preview = await post(stack, "/v1/api/points/preview", CART | {"customer_id": "711"})
    assert (preview.json()["points"], preview.json()["tier_id"]) == ("165", "gold")
    assert [(a["rule_id"], a["points"]) for a in preview.json()["awards"]] == [
        ("spend", "100"),
        ("gold-bonus", "10"),
        ("vip:gold", "55"),
    ]
    anonymous = await post(stack, "/v1/api/points/preview", CART)
    assert anonymous.json()["points"] == "100"

    # The same through an order delivered (twice) by the edge: credited once, with its rules.
    placed = order(8711, 711, (5, 1, "100.00")) | {"source_name": "web"}
    for _ in range(2):
        assert (await stack.deliver("orders/create", placed)).status == 200
    status = await eventually(lambda: order_status(stack, 8711), 30, "order 8711")
    assert [(a["rule_id"], a["points"]) for a in status["awards"]] == [
        ("spend", "100"),
        ("gold-bonus", "10"),
        ("vip:gold", "55"),
    ]

    async def credited() -> bool:
        return await balance(stack, 711) == 535

    await eventually(credited, 30, "the order's 165")
    history = await stack.get_json("/v1/api/points/transactions/711?page_size=100")
    (credit,) = [t for t in history["transactions"] if t.get("reason") == "order:8711"]
    assert (credit["points"], credit["rule_id"]) == ("165", "spend,gold-bonus,vip:gold")

    # The year ends with nothing earned in the new one: Gold is kept through the 30 days'
    # grace, and the job takes it away on the 30th day (once). First every ledger event so
    # far is applied: one Points' consumer read after the clock moved past the grace would
    # take Gold away before the checks below.
    await eventually(
        lambda: asyncio.to_thread(points_caught_up, stack.bootstrap_servers, database_url),
        30,
        "Points to apply its own ledger events",
    )
    settings = points_settings(database_url, redis_url=redis_url)
    year_end = datetime(stack.clock.now.year + 1, 1, 1, tzinfo=UTC)
    assert await recalculate_tiers(settings, clock=lambda: year_end) == 0
    assert await recalculate_tiers(settings, clock=lambda: year_end + timedelta(days=29)) == 0
    stack.clock.now = year_end + timedelta(days=29)
    assert (await vip(stack, "711"))["tier_id"] == "gold"
    grace_end = year_end + timedelta(days=30)
    # The grace over, the job not run yet: the stored Gold gives no perk (no multiplier,
    # no Gold-only rule) though the balance RPC still reports the stored tier.
    stack.clock.now = grace_end
    lapsed = await post(stack, "/v1/api/points/preview", CART | {"customer_id": "711"})
    assert (lapsed.json()["points"], lapsed.json().get("tier_id", "")) == ("100", "")
    assert (await vip(stack, "711"))["tier_id"] == "gold"
    assert await recalculate_tiers(settings, clock=lambda: grace_end) == 1
    assert await recalculate_tiers(settings, clock=lambda: grace_end) == 0
    stack.clock.now = grace_end
    assert (await vip(stack, "711")).get("tier_id", "") == ""

    # Back in this year (the clock moved back: the 320 + 165 count again): Gold again, at
    # once, but no second entry reward: once per (tier, customer).
    stack.clock.now = datetime.now(UTC)
    assert await recalculate_tiers(settings, clock=lambda: stack.clock.now) == 1
    changes = await asyncio.to_thread(tier_events, stack.bootstrap_servers, stack.merchant_id, 3)
    assert [(c.previous_tier_id, c.tier_id) for c in changes] == [
        ("", "gold"),
        ("gold", ""),
        ("", "gold"),
    ]
    # The consumer has the third tier.changed within a second or two (FAST_EVENTS); an entry
    # reward credited again would show within this bound.
    deadline = asyncio.get_running_loop().time() + 8
    while asyncio.get_running_loop().time() < deadline:
        assert len(await entry_rewards(stack, "711")) == 1
        assert await balance(stack, 711) == 535
        await asyncio.sleep(0.5)


# ---- the tags at Shopify ------------------------------------------------------------------

SHOP = "tiers-test.myshopify.com"


@pytest.fixture
def shopify() -> Iterator[ShopifyAdminStandIn]:
    standin = ShopifyAdminStandIn(api_key=API_KEY, api_secret=API_SECRET)
    standin.start()
    yield standin
    standin.stop()


async def test_the_tier_tag_reaches_the_customer_at_shopify(
    database_url: str, redis_url: str, shopify: ShopifyAdminStandIn
) -> None:
    broker = BrokerProcess()
    await broker.start()
    try:
        async with serving_auth(database_url, redis_url, shopify) as auth:
            async with grpc.aio.insecure_channel(auth.address) as channel:
                installed = await install(auth_pb2_grpc.AuthServiceStub(channel), shopify, SHOP)
            merchant_id = installed.merchant.merchant_id
            await _save_tiers(database_url, merchant_id)
            gid = "gid://shopify/Customer/8801"
            shopify.customers.add((SHOP, gid))
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
            async with serve_for_test(SPEC, settings, points_pb2_grpc.PointsServiceStub) as (
                _,
                stub,
            ):
                md = merchant_metadata(merchant_id, ("points:read", "points:write"))
                await stub.EarnPoints(
                    pb.EarnPointsRequest(customer_id="8801", points=120, idempotency_key="t-1"),
                    metadata=md,
                )

                async def tagged(expected: set[str]) -> bool:
                    return shopify.tags_of(SHOP, gid) == expected

                await eventually(lambda: tagged({"VIP Silver"}), 60, "the Silver tag")
                await stub.EarnPoints(
                    pb.EarnPointsRequest(customer_id="8801", points=200, idempotency_key="t-2"),
                    metadata=md,
                )
                await eventually(lambda: tagged({"VIP Gold"}), 60, "Gold's tag instead")
    finally:
        broker.close()


async def _save_tiers(database_url: str, merchant_id: str) -> None:
    """Points' copy of the program with tiers (Core is not part of this test)."""
    program = default_program()
    program.version = 1
    program.vip_metric = core_pb2.VIP_METRIC_POINTS_EARNED
    program.vip_term = core_pb2.VIP_TERM_LIFETIME
    for tier in TIERS:
        program.vip_tiers.add(
            tier_id=tier["tier_id"],
            name=tier["name"],
            threshold=int(tier["threshold"]),
            shopify_tag=tier["shopify_tag"],
        )
    database = Database(ServiceSettings(database_url=database_url), DATABASE)
    await database.open()
    try:
        await database.migrate()
        store = PostgresLedgerStore(database)
        assert await store.save_program_settings(merchant_id, 1, program.SerializeToString())
    finally:
        await database.close()


# ---- the job resumes after a crash ---------------------------------------------------------


class CrashingStore(PostgresLedgerStore):
    """The PostgreSQL store whose `crash_at`-th tier_inputs read fails, as a job killed
    mid-run (the process gone, its stored progress left)."""

    crash_at = 0
    reads: list[str]

    async def tier_inputs(
        self, merchant_id: str, after: str, limit: int, since: datetime | None
    ) -> list[TierInput]:
        self.reads.append(after)
        if len(self.reads) == self.crash_at:
            raise ConnectionError("killed mid-run")
        return await super().tier_inputs(merchant_id, after, limit, since)


async def test_the_tier_job_resumes_where_it_stopped(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tiers_module, "JOB_PAGE", 2)
    merchant_id = f"m-{uuid.uuid4().hex[:12]}"
    await _save_tiers(database_url, merchant_id)
    database = Database(ServiceSettings(database_url=database_url), DATABASE)
    await database.open()
    try:
        store = CrashingStore(database)
        store.reads = []
        ledger = Ledger(store, None)
        customers = [f"c{n}" for n in range(5)]
        for customer in customers:  # 150 each: Silver (100), not Gold (300)
            posting = Posting(merchant_id, customer, TransactionType.EARN, 150, "bench")
            await ledger.post(posting, IdempotencyKey.internal(f"seed:{customer}", customer))
        jobs = VipTiers(ledger, ProgramCopies(ledger, cache_seconds=0))

        # Pages of 2: c0-c1, c2-c3 (the crash), c4.
        store.crash_at = 2
        with pytest.raises(ConnectionError):
            await jobs.run()
        assert await store.tier_job_cursor(merchant_id) == "c1"
        # Resumed after c1: c0 and c1 are not read again; c2..c4 change once.
        store.reads, store.crash_at = [], 0
        assert await jobs.run() == 3
        assert store.reads == ["c1", "c3"]
        assert await store.tier_job_cursor(merchant_id) is None
        # A new run starts from the beginning and changes nothing.
        store.reads = []
        assert await jobs.run() == 0
        assert store.reads == ["", "c1", "c3"]
        for customer in customers:
            state = await store.customer_tier(merchant_id, customer)
            assert state is not None and (state.tier_id, state.version) == ("silver", 1)
        async with database.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM outbox WHERE event_type = 'tier.changed'"
                " AND partition_key LIKE %s",
                (f"{merchant_id}%",),
            )
            row = await cursor.fetchone()
        assert row is not None and row[0] == 5  # one tier.changed per customer
    finally:
        await database.close()


async def test_a_resumed_tier_job_after_an_erasure_skips_nobody_and_redoes_nobody(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run crashes with the cursor on c1; c1 is erased (their ledger moves to an anonymous
    id); the resumed run starts after c0 (the cursor rewritten), so c2..c4 change once, c0 is
    not read again, and c1's id is in no cursor."""
    monkeypatch.setattr(tiers_module, "JOB_PAGE", 2)
    merchant_id = f"m-{uuid.uuid4().hex[:12]}"
    await _save_tiers(database_url, merchant_id)
    database = Database(ServiceSettings(database_url=database_url), DATABASE)
    await database.open()
    try:
        store = CrashingStore(database)
        store.reads = []
        ledger = Ledger(store, None)
        for customer in [f"c{n}" for n in range(5)]:  # 150 each: Silver
            posting = Posting(merchant_id, customer, TransactionType.EARN, 150, "bench")
            await ledger.post(posting, IdempotencyKey.internal(f"seed:{customer}", customer))
        jobs = VipTiers(ledger, ProgramCopies(ledger, cache_seconds=0))
        store.crash_at = 2
        with pytest.raises(ConnectionError):
            await jobs.run()
        assert await store.tier_job_cursor(merchant_id) == "c1"

        await store.erase_customer(merchant_id, CustomerRef("c1"))
        assert await store.tier_job_cursor(merchant_id) == "c0"

        store.reads, store.crash_at = [], 0
        assert await jobs.run() == 3  # c2, c3, c4; the anonymous ledger is Silver already
        assert store.reads[:2] == ["c0", "c3"]
        assert "c1" not in store.reads
        assert await store.tier_job_cursor(merchant_id) is None
        for customer in ("c0", "c2", "c3", "c4"):
            state = await store.customer_tier(merchant_id, customer)
            assert state is not None and (state.tier_id, state.version) == ("silver", 1)
    finally:
        await database.close()
