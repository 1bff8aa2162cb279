"""The Core service over a real gRPC channel, real PostgreSQL, a real Valkey and (for the
published events) a real Kafka-protocol broker."""

from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import duration_pb2, field_mask_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status
from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from loyalnest.gateway import Upstream
from loyalnest.gen.core.v1 import core_pb2, core_pb2_grpc
from loyalnest.gen.events.v1 import admin_core_pb2, auth_pb2, envelope_pb2, points_pb2, rfm_pb2
from loyalnest.gen.events.v1 import core_pb2 as core_events
from loyalnest.gen.events.v1 import users_pb2 as user_events
from loyalnest.platform.events.envelope import ConsumedEvent, new_event
from loyalnest.platform.events.inbox import Handler
from loyalnest.platform.events.topics import CORE
from loyalnest.platform.postgres import Database
from loyalnest.platform.server import RunningService, running
from loyalnest.services.core import events
from loyalnest.services.core.service import (
    DATABASE,
    SERVICE_NAME,
    SPEC,
    CoreSettings,
    open_stores,
)
from loyalnest.services.core.store.cache import config_key, usage_key
from tests.auth import merchant_headers, merchant_metadata
from tests.integration.broker import BrokerProcess
from tests.integration.conftest import (
    serve_for_test,
    service_settings_for_tests,
    serving,
    stub_for,
)
from tests.integration.events_worker import FAST_EVENTS
from tests.integration.test_gateway_validate import gateway_config, http, running_gateway

pytestmark = pytest.mark.integration

pb = core_pb2
SERVING = health_pb2.HealthCheckResponse.SERVING
CORE_ALL = ("core:read", "core:write", "core:plan")
ENCRYPTION_KEY = base64.b64encode(os.urandom(32)).decode()
BLIND_INDEX_KEY = base64.b64encode(os.urandom(32)).decode()
# Small limits, so that tests reach them.
PLANS = {
    "free": {"customers_limit": 5, "orders_per_month_limit": 5},
    "plus": {"customers_limit": 0, "orders_per_month_limit": 0},
}
PAYLOADS: dict[str, type[Message]] = {
    "program_settings.updated": core_events.ProgramSettingsUpdated,
    "plan_limit_warning": core_events.PlanLimitWarning,
    "customer.created": core_events.CustomerCreated,
    "customer.updated": core_events.CustomerUpdated,
}


# ---- servers ----------------------------------------------------------------------------


def core_settings(database_url: str, redis_url: str | None, **overrides: Any) -> CoreSettings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "core_plans": PLANS,
        "core_encryption_key": ENCRYPTION_KEY,
        "core_blind_index_key": BLIND_INDEX_KEY,
    }
    return service_settings_for_tests(CoreSettings, database_url, **(values | overrides))


@pytest.fixture
async def core(database_url: str, redis_url: str) -> AsyncIterator[RunningService]:
    async with serving(SPEC, core_settings(database_url, redis_url)) as service:
        yield service


@pytest.fixture
async def stub(core: RunningService) -> AsyncIterator[core_pb2_grpc.CoreServiceStub]:
    async with stub_for(core, core_pb2_grpc.CoreServiceStub) as stub:
        yield stub


@pytest.fixture
async def handlers(
    core: RunningService, database_url: str, redis_url: str
) -> AsyncIterator[dict[str, Handler]]:
    """The service's consumers on its database and Redis, driven directly (the broker path
    is the platform's, tested in test_events.py)."""
    settings = core_settings(database_url, redis_url)
    database = Database(settings, DATABASE)
    stores = open_stores(settings, database)
    await database.open()
    try:
        yield stores.handlers()
    finally:
        for cleanup in stores.cleanup:
            await cleanup()
        await database.close()


@pytest.fixture
async def db(core: RunningService, database_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, options="-c search_path=core"
    ) as conn:
        yield conn


# ---- helpers ----------------------------------------------------------------------------


def md(merchant: str, permissions: tuple[str, ...] = CORE_ALL) -> tuple[tuple[str, str], ...]:
    return merchant_metadata(merchant, permissions)


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


async def update(
    stub: core_pb2_grpc.CoreServiceStub,
    merchant: str,
    settings: core_events.ProgramSettings,
    *paths: str,
    key: str | None = None,
) -> core_events.ProgramSettings:
    response = await stub.UpdateProgramSettings(
        pb.UpdateProgramSettingsRequest(
            settings=settings, update_mask=mask(*paths), idempotency_key=key or uuid.uuid4().hex
        ),
        metadata=md(merchant),
    )
    return response.settings


async def create_customer(
    stub: core_pb2_grpc.CoreServiceStub,
    merchant: str,
    shopify_id: str,
    *,
    email: str = "",
    user_id: str = "",
    key: str | None = None,
) -> pb.Customer:
    response = await stub.CreateCustomer(
        pb.CreateCustomerRequest(
            customer=pb.Customer(
                shopify_customer_id=shopify_id,
                email=email,
                user_id=user_id,
                first_name="Ada",
                last_name="Lovelace",
            ),
            idempotency_key=key or uuid.uuid4().hex,
        ),
        metadata=md(merchant),
    )
    return response.customer


def details(error: grpc.aio.AioRpcError, kind: type[Message]) -> list[Any]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "errors must carry google.rpc.Status details"
    found = []
    for detail in status.details:
        message = kind()
        if detail.Unpack(message):
            found.append(message)
    return found


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    return {
        v.field: v.description
        for bad_request in details(error, error_details_pb2.BadRequest)
        for v in bad_request.field_violations
    }


async def rows(conn: psycopg.AsyncConnection, query: str, *params: Any) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(query, params)
    return await cursor.fetchall()


async def outbox_events(conn: psycopg.AsyncConnection, event_type: str) -> list[Any]:
    result = []
    for (envelope,) in await rows(
        conn, "SELECT envelope FROM outbox WHERE event_type = %s ORDER BY id", event_type
    ):
        payload = PAYLOADS[event_type]()
        assert envelope_pb2.Envelope.FromString(bytes(envelope)).payload.Unpack(payload)
        result.append(payload)
    return result


def consumed(
    merchant: str, payload: Message, *, occurred_at: datetime | None = None
) -> ConsumedEvent:
    """An event as the consumer runner hands it to a handler."""
    event = new_event(merchant, payload, occurred_at=occurred_at)
    return ConsumedEvent(
        envelope=event.envelope,
        spec=event.spec,
        payload=payload,
        consumer=events.CONSUMER_GROUP,
        topic=event.spec.topic.name,
        partition=0,
        offset=0,
    )


async def usage_of(
    stub: core_pb2_grpc.CoreServiceStub, merchant: str
) -> dict[str, tuple[int, int]]:
    response = await stub.GetUsage(pb.GetUsageRequest(), metadata=md(merchant))
    return {m.metric: (m.used, m.limit) for m in response.metrics}


# ---- program settings -------------------------------------------------------------------


async def test_defaults_until_saved_then_each_change_is_a_version(stub, db, merchant_id):
    got = (
        await stub.GetProgramSettings(pb.GetProgramSettingsRequest(), metadata=md(merchant_id))
    ).settings
    assert got.version == 0 and got.program_enabled
    assert (got.points_per_currency_unit, got.rounding) == ("1", core_events.POINTS_ROUNDING_DOWN)
    assert got.plan == core_events.PlanLimits(
        plan="free", customers_limit=5, orders_per_month_limit=5, gift_card_rewards=False
    )
    assert await rows(db, "SELECT 1 FROM program_settings") == []  # a read writes nothing

    changed = await update(
        stub,
        merchant_id,
        core_events.ProgramSettings(
            points_per_currency_unit="2.50",
            rounding=core_events.POINTS_ROUNDING_NEAREST,
            multipliers=[
                core_events.EarningMultiplier(
                    collection_id="gid://shopify/Collection/9",
                    product_ids=["p1", "p2"],
                    multiplier="3",
                )
            ],
            pending_period=duration_pb2.Duration(seconds=30 * 86400),
            signup_bonus_points=999,  # not in the mask
        ),
        "points_per_currency_unit",
        "rounding",
        "multipliers",
        "pending_period",
    )
    assert changed.version == 1
    assert changed.points_per_currency_unit == "2.5"
    assert changed.signup_bonus_points == 0
    assert changed.pending_period.seconds == 30 * 86400
    assert [m.collection_id for m in changed.multipliers] == ["gid://shopify/Collection/9"]
    again = (
        await stub.GetProgramSettings(pb.GetProgramSettingsRequest(), metadata=md(merchant_id))
    ).settings
    assert again == changed

    # A change that changes nothing keeps the version and announces nothing.
    same = await update(
        stub,
        merchant_id,
        core_events.ProgramSettings(points_per_currency_unit="2.5"),
        "points_per_currency_unit",
    )
    assert same.version == 1
    bonus = await update(
        stub,
        merchant_id,
        core_events.ProgramSettings(signup_bonus_points=50),
        "signup_bonus_points",
    )
    assert (bonus.version, bonus.signup_bonus_points) == (2, 50)
    published = await outbox_events(db, "program_settings.updated")
    # The whole state, every time, with the version it created.
    assert [p.settings for p in published] == [changed, bonus]


async def test_update_is_idempotent_and_checks_the_expected_version(stub, db, merchant_id):
    first = await update(
        stub,
        merchant_id,
        core_events.ProgramSettings(points_expiry_days=365),
        "points_expiry_days",
        key="k1",
    )
    retry = await update(
        stub,
        merchant_id,
        core_events.ProgramSettings(points_expiry_days=365),
        "points_expiry_days",
        key="k1",
    )
    assert retry == first and first.version == 1
    assert len(await outbox_events(db, "program_settings.updated")) == 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await update(
            stub,
            merchant_id,
            core_events.ProgramSettings(points_expiry_days=30),
            "points_expiry_days",
            key="k1",
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "idempotency_key" in field_violations(caught.value)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateProgramSettings(
            pb.UpdateProgramSettingsRequest(
                settings=core_events.ProgramSettings(program_enabled=False),
                update_mask=mask("program_enabled"),
                idempotency_key="k2",
                expected_version=7,
            ),
            metadata=md(merchant_id),
        )
    assert caught.value.code() == grpc.StatusCode.ABORTED


@pytest.mark.parametrize(
    ("settings", "paths", "fields"),
    [
        pytest.param(
            core_events.ProgramSettings(points_per_currency_unit="-1"),
            ["points_per_currency_unit"],
            {"settings.points_per_currency_unit"},
            id="negative-rate",
        ),
        pytest.param(
            core_events.ProgramSettings(
                multipliers=[
                    core_events.EarningMultiplier(
                        collection_id="c", product_ids=["p"], multiplier="0"
                    )
                ]
            ),
            ["multipliers"],
            {"settings.multipliers[0].multiplier"},
            id="zero-multiplier",
        ),
        pytest.param(
            core_events.ProgramSettings(rounding=core_events.POINTS_ROUNDING_UNSPECIFIED),
            ["rounding"],
            {"settings.rounding"},
            id="unknown-rounding",
        ),
        pytest.param(
            core_events.ProgramSettings(), ["plan", "version"], {"update_mask"}, id="plan-not-here"
        ),
        pytest.param(core_events.ProgramSettings(), [], {"update_mask"}, id="no-mask"),
        pytest.param(
            core_events.ProgramSettings(
                referral=core_events.ReferralProgram(
                    referrer_reward_points=-1,
                    friend_discount_type=core_events.REFERRAL_DISCOUNT_TYPE_PERCENTAGE,
                    friend_discount_value="150",
                    milestones=[
                        core_events.ReferralMilestone(referrals=3, bonus_points=10),
                        core_events.ReferralMilestone(referrals=3, bonus_points=0),
                    ],
                    code_expiry_days=-1,
                    daily_invites_per_merchant=-5,
                )
            ),
            ["referral"],
            {
                "settings.referral.referrer_reward_points",
                "settings.referral.friend_discount_value",
                "settings.referral.milestones[1].referrals",
                "settings.referral.milestones[1].bonus_points",
                "settings.referral.code_expiry_days",
                "settings.referral.daily_invites_per_merchant",
            },
            id="bad-referral-program",
        ),
    ],
)
async def test_invalid_updates_list_field_violations(
    stub, db, merchant_id, settings, paths, fields
):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await update(stub, merchant_id, settings, *paths)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == fields
    assert await rows(db, "SELECT 1 FROM program_settings") == []


async def test_the_referral_program_is_saved_whole_and_announced(stub, db, merchant_id):
    program = core_events.ReferralProgram(
        referrer_reward_points=250,
        friend_discount_type=core_events.REFERRAL_DISCOUNT_TYPE_FIXED_AMOUNT,
        friend_discount_value="5.00",
        milestones=[
            core_events.ReferralMilestone(referrals=5, bonus_points=500),
            core_events.ReferralMilestone(referrals=2, bonus_points=100),
        ],
        code_expiry_days=30,
        daily_invites_per_referrer=10,
    )
    saved = await update(
        stub, merchant_id, core_events.ProgramSettings(referral=program), "referral"
    )
    assert saved.referral.friend_discount_value == "5"
    assert [m.referrals for m in saved.referral.milestones] == [2, 5]
    assert saved.referral.referrer_reward_points == 250 and saved.referral.code_expiry_days == 30
    got = await stub.GetProgramSettings(pb.GetProgramSettingsRequest(), metadata=md(merchant_id))
    assert got.settings == saved
    announced = await outbox_events(db, "program_settings.updated")
    assert announced[-1].settings.referral == saved.referral


async def test_the_cache_serves_reads_and_an_update_invalidates_it(stub, db, valkey, merchant_id):
    await update(
        stub,
        merchant_id,
        core_events.ProgramSettings(signup_bonus_points=10),
        "signup_bonus_points",
    )
    read = lambda: stub.GetProgramSettings(pb.GetProgramSettingsRequest(), metadata=md(merchant_id))  # noqa: E731
    await read()
    assert await valkey.get(config_key(merchant_id)) is not None
    # Changed behind the service's back: a read served from the cache does not see it.
    await db.execute(
        "UPDATE program_settings SET settings = jsonb_set(settings, '{signup_bonus_points}', '77')"
    )
    assert (await read()).settings.signup_bonus_points == 10
    await update(
        stub, merchant_id, core_events.ProgramSettings(points_expiry_days=90), "points_expiry_days"
    )
    assert await valkey.get(config_key(merchant_id)) is None
    fresh = (await read()).settings
    assert (fresh.signup_bonus_points, fresh.points_expiry_days, fresh.version) == (77, 90, 2)


async def test_program_settings_updated_reaches_kafka_once_per_change(
    database_url, redis_url, merchant_id
):
    broker = BrokerProcess()
    await broker.start()
    try:
        settings = core_settings(
            database_url,
            redis_url,
            events_enabled=True,
            kafka_bootstrap_servers=broker.bootstrap_servers,
            **FAST_EVENTS,
        )
        async with serve_for_test(SPEC, settings, core_pb2_grpc.CoreServiceStub) as (_, stub):
            first = await update(
                stub,
                merchant_id,
                core_events.ProgramSettings(signup_bonus_points=5),
                "signup_bonus_points",
                key="a",
            )
            await update(
                stub,
                merchant_id,
                core_events.ProgramSettings(signup_bonus_points=5),
                "signup_bonus_points",
                key="a",
            )
            await update(
                stub,
                merchant_id,
                core_events.ProgramSettings(signup_bonus_points=5),
                "signup_bonus_points",
            )
            plus = (
                await stub.ChangePlan(
                    pb.ChangePlanRequest(plan="plus", idempotency_key="p"),
                    metadata=md(merchant_id),
                )
            ).settings
            records = await asyncio.to_thread(_read_core_topic, broker.bootstrap_servers, 2)
        await asyncio.sleep(0)
    finally:
        broker.close()
    assert [r["event_type"] for r in records] == ["program_settings.updated"] * 2
    payloads = []
    for record in records:
        envelope = envelope_pb2.Envelope.FromString(record["value"])
        assert (envelope.merchant_id, record["key"]) == (merchant_id, merchant_id)
        payload = core_events.ProgramSettingsUpdated()
        assert envelope.payload.Unpack(payload)
        payloads.append(payload.settings)
    assert payloads == [first, plus]
    assert [p.version for p in payloads] == [1, 2]
    assert payloads[1].plan.plan == "plus"


def _read_core_topic(
    bootstrap: str, count: int, settle_seconds: float = 3.0, timeout: float = 30
) -> list[dict[str, Any]]:
    """Every record of Core's topic until `count` arrived and nothing more came for a while."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    try:
        deadline = time.monotonic() + timeout
        partitions: set[int] = set()
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(CORE.name) or set()
            time.sleep(0.1)
        assigned = [TopicPartition(CORE.name, p) for p in partitions]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        records: list[Any] = []
        quiet_until = None
        while time.monotonic() < deadline:
            batch = [r for rs in consumer.poll(timeout_ms=300).values() for r in rs]
            records += batch
            if len(records) >= count:
                quiet_until = quiet_until or time.monotonic() + settle_seconds
                if batch:
                    quiet_until = time.monotonic() + settle_seconds
                if time.monotonic() > quiet_until:
                    break
    finally:
        consumer.close()
    return [
        {**{k: v.decode() for k, v in r.headers}, "key": r.key.decode(), "value": r.value}
        for r in records
    ]


# ---- plans ------------------------------------------------------------------------------


async def test_plan_is_read_and_changed_and_unknown_plans_are_refused(stub, db, merchant_id):
    plan = await stub.GetPlan(pb.GetPlanRequest(), metadata=md(merchant_id))
    assert plan.plan.plan == "free"
    assert [p.plan for p in plan.available_plans] == ["free", "plus"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ChangePlan(
            pb.ChangePlanRequest(plan="platinum", idempotency_key="x"), metadata=md(merchant_id)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "free, plus" in field_violations(caught.value)["plan"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ChangePlan(
            pb.ChangePlanRequest(plan="plus", idempotency_key="x"),
            metadata=md(merchant_id, ("core:write",)),
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    changed = await stub.ChangePlan(
        pb.ChangePlanRequest(plan="plus", idempotency_key="x"), metadata=md(merchant_id)
    )
    assert (changed.settings.plan.plan, changed.settings.version) == ("plus", 1)
    assert (await stub.GetPlan(pb.GetPlanRequest(), metadata=md(merchant_id))).plan.plan == "plus"
    # The plan change reaches Points like any other change.
    (published,) = await outbox_events(db, "program_settings.updated")
    assert published.settings == changed.settings


async def test_merchant_created_saves_and_announces_the_first_program(
    handlers, stub, db, merchant_id
):
    installed = consumed(
        merchant_id, auth_pb2.MerchantCreated(shop_domain="s.myshopify.com", plan="plus")
    )
    assert await handlers["merchant.created"](installed)
    await handlers["merchant.created"](installed)  # redelivery
    await handlers["merchant.created"](
        consumed(merchant_id, auth_pb2.MerchantCreated(plan="free"))
    )  # a replay
    got = (
        await stub.GetProgramSettings(pb.GetProgramSettingsRequest(), metadata=md(merchant_id))
    ).settings
    assert (got.version, got.plan.plan) == (1, "plus")
    (published,) = await outbox_events(db, "program_settings.updated")
    assert published.settings == got


# ---- usage and limits -------------------------------------------------------------------


async def test_customer_limit_warns_at_80_and_100_percent_then_refuses(
    stub, db, valkey, merchant_id
):
    created = [await create_customer(stub, merchant_id, f"shop-{i}", key=f"c{i}") for i in range(3)]
    assert await outbox_events(db, "plan_limit_warning") == []
    created.append(await create_customer(stub, merchant_id, "shop-3", key="c3"))
    (warning,) = await outbox_events(db, "plan_limit_warning")
    assert (warning.plan, warning.metric, warning.used, warning.limit) == (
        "free",
        "customers",
        4,
        5,
    )
    created.append(await create_customer(stub, merchant_id, "shop-4", key="c4"))
    # A retry of the fifth (same key) returns it again and warns no more.
    assert (await create_customer(stub, merchant_id, "shop-4", key="c4")) == created[-1]
    warnings = await outbox_events(db, "plan_limit_warning")
    assert [(w.metric, w.used, w.limit) for w in warnings] == [
        ("customers", 4, 5),
        ("customers", 5, 5),
    ]

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create_customer(stub, merchant_id, "shop-5")
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "allows 5 customers" in (caught.value.details() or "")
    (quota,) = details(caught.value, error_details_pb2.QuotaFailure)
    assert quota.violations[0].subject == f"merchant:{merchant_id}/customers"
    assert await usage_of(stub, merchant_id) == {"customers": (5, 5), "orders_per_month": (0, 5)}
    assert len(await rows(db, "SELECT 1 FROM customers")) == 5
    assert len(await outbox_events(db, "customer.created")) == 5

    # Counts survive the loss of Redis: PostgreSQL is the record.
    await valkey.flushall()
    assert await usage_of(stub, merchant_id) == {"customers": (5, 5), "orders_per_month": (0, 5)}
    assert await valkey.hgetall(usage_key(merchant_id))  # and the cache was refilled

    await stub.ChangePlan(
        pb.ChangePlanRequest(plan="plus", idempotency_key="up"), metadata=md(merchant_id)
    )
    await create_customer(stub, merchant_id, "shop-5")
    assert await usage_of(stub, merchant_id) == {"customers": (6, 0), "orders_per_month": (0, 0)}
    assert len(await outbox_events(db, "plan_limit_warning")) == 2


async def test_orders_are_counted_once_from_points_earned(handlers, stub, db, merchant_id):
    earned = handlers["points.earned"]

    def order(reason: str) -> ConsumedEvent:
        return consumed(
            merchant_id, points_pb2.PointsEarned(customer_id="c1", points=10, reason=reason)
        )

    first = order("order:1001")
    assert await earned(first)
    assert not await earned(first)  # redelivery
    assert await earned(order("order:1001"))  # the same order credited again: still one order
    assert await earned(order("referral:abc"))  # not an order
    for n in (1002, 1003):
        await earned(order(f"order:{n}"))
    assert await outbox_events(db, "plan_limit_warning") == []
    await earned(order("order:1004"))
    assert await usage_of(stub, merchant_id) == {"customers": (0, 5), "orders_per_month": (4, 5)}
    await earned(order("order:1005"))
    await earned(order("order:1006"))  # Points enforces the limit; Core still counts
    warnings = await outbox_events(db, "plan_limit_warning")
    assert [(w.metric, w.used) for w in warnings] == [
        ("orders_per_month", 4),
        ("orders_per_month", 5),
    ]
    assert await usage_of(stub, merchant_id) == {"customers": (0, 5), "orders_per_month": (6, 5)}
    month = datetime.now(UTC).strftime("%Y-%m")
    assert await rows(
        db, "SELECT period, used FROM usage_counters WHERE metric = 'orders_per_month'"
    ) == [(month, 6)]


# ---- customers --------------------------------------------------------------------------


async def test_customers_are_created_once_with_encrypted_pii(stub, db, merchant_id):
    email = f"ada.{uuid.uuid4().hex[:6]}@example.com"
    customer = await create_customer(
        stub, merchant_id, "gid://shopify/Customer/1", email=email.upper()
    )
    assert (customer.email, customer.first_name, customer.shopify_customer_id) == (
        email,
        "Ada",
        "gid://shopify/Customer/1",
    )
    got = await stub.GetCustomer(
        pb.GetCustomerRequest(customer_id=customer.customer_id), metadata=md(merchant_id)
    )
    assert got.customer == customer
    for (text,) in await rows(db, "SELECT c::text FROM customers c"):
        assert email.split("@")[0] not in text and "Lovelace" not in text
    for (text,) in await rows(db, "SELECT i::text FROM idempotency_keys i"):
        assert email.split("@")[0] not in text
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create_customer(stub, merchant_id, "gid://shopify/Customer/1")
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    (created,) = await outbox_events(db, "customer.created")
    assert (created.customer_id, created.shopify_customer_id) == (
        customer.customer_id,
        "gid://shopify/Customer/1",
    )


@pytest.mark.parametrize(
    ("request_message", "fields"),
    [
        pytest.param(pb.CreateCustomerRequest(), {"customer", "idempotency_key"}, id="empty"),
        pytest.param(
            pb.CreateCustomerRequest(
                customer=pb.Customer(
                    shopify_customer_id="has space", user_id="42", email="x@@y", first_name="a\nb"
                ),
                idempotency_key="k",
            ),
            {
                "customer.shopify_customer_id",
                "customer.user_id",
                "customer.email",
                "customer.first_name",
            },
            id="everything-wrong",
        ),
    ],
)
async def test_invalid_customers_list_field_violations(stub, merchant_id, request_message, fields):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateCustomer(request_message, metadata=md(merchant_id))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == fields


async def test_import_reports_each_item_and_is_idempotent_per_batch(stub, db, merchant_id):
    await create_customer(stub, merchant_id, "existing")
    batch = pb.ImportCustomersRequest(
        batch_id="batch-1",
        customers=[
            pb.Customer(shopify_customer_id="new-1", email="n1@example.com"),
            pb.Customer(shopify_customer_id="existing"),
            pb.Customer(shopify_customer_id="bad", email="not-an-email"),
            pb.Customer(shopify_customer_id="new-2"),
            pb.Customer(shopify_customer_id="new-3"),
            pb.Customer(shopify_customer_id="new-4"),
            pb.Customer(shopify_customer_id="new-5"),  # the sixth customer: over the limit
        ],
    )
    result = await stub.ImportCustomers(batch, metadata=md(merchant_id))
    assert result.status == "completed"
    assert [(r.index, r.outcome) for r in result.results] == [
        (0, pb.IMPORT_OUTCOME_CREATED),
        (1, pb.IMPORT_OUTCOME_ALREADY_EXISTS),
        (2, pb.IMPORT_OUTCOME_INVALID),
        (3, pb.IMPORT_OUTCOME_CREATED),
        (4, pb.IMPORT_OUTCOME_CREATED),
        (5, pb.IMPORT_OUTCOME_CREATED),
        (6, pb.IMPORT_OUTCOME_LIMIT_REACHED),
    ]
    assert "email" in result.results[2].error
    assert result.results[1].customer_id
    retry = await stub.ImportCustomers(batch, metadata=md(merchant_id))
    assert retry == result
    assert len(await rows(db, "SELECT 1 FROM customers")) == 5
    ((status, log),) = await rows(
        db, "SELECT status, log_details FROM customer_import_logs WHERE batch_id = 'batch-1'"
    )
    assert status == "completed" and len(log["items"]) == 7
    assert await usage_of(stub, merchant_id) == {"customers": (5, 5), "orders_per_month": (0, 5)}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ImportCustomers(
            pb.ImportCustomersRequest(
                batch_id="batch-1", customers=[pb.Customer(shopify_customer_id="other")]
            ),
            metadata=md(merchant_id),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ImportCustomers(
            pb.ImportCustomersRequest(batch_id="b2"), metadata=md(merchant_id)
        )
    assert set(field_violations(caught.value)) == {"customers"}


async def test_an_idempotency_key_named_like_an_import_batch_does_not_take_its_place(
    stub, db, merchant_id
):
    """Batch ids are keys of their own namespace (issue 14, finding 3): a client's
    idempotency_key "import:b-9" on another RPC once claimed the key of batch "b-9"."""
    await create_customer(stub, merchant_id, "first", key="import:b-9")
    batch = pb.ImportCustomersRequest(
        batch_id="b-9", customers=[pb.Customer(shopify_customer_id="second")]
    )
    result = await stub.ImportCustomers(batch, metadata=md(merchant_id))
    assert [r.outcome for r in result.results] == [pb.IMPORT_OUTCOME_CREATED]
    assert len(await rows(db, "SELECT 1 FROM customers")) == 2
    # The migration of keys stored before namespaces moves the batch's key, not the client's.
    await db.execute(
        "UPDATE idempotency_keys SET namespace = 'request', idempotency_key = 'import:x-' ||"
        " idempotency_key WHERE namespace = 'import'"
    )
    await db.execute("UPDATE customer_import_logs SET batch_id = 'x-' || batch_id")
    migration = DATABASE.migration_dirs[-1] / "core_0003_import_key_namespace.sql"
    await db.execute(migration.read_text().encode())
    assert set(await rows(db, "SELECT namespace, idempotency_key FROM idempotency_keys")) == {
        ("request", "import:b-9"),
        ("import", "x-b-9"),
    }


async def test_accounts_link_customers_and_rfm_scores_are_kept(handlers, stub, db, merchant_id):
    user_id = str(uuid.uuid4())
    customer = await create_customer(stub, merchant_id, "linked", user_id=user_id)
    assert not customer.account_linked
    await handlers["user.created"](
        consumed(
            merchant_id,
            user_events.UserCreated(user_id=user_id, kind=user_events.USER_KIND_CUSTOMER),
        )
    )
    await handlers["rfm.updated"](
        consumed(
            merchant_id,
            rfm_pb2.RfmUpdated(
                customer_id=customer.customer_id,
                score=rfm_pb2.RfmScore(
                    recency=0.5, frequency=3, monetary_minor_units=4200, currency_code="EUR"
                ),
                segment=rfm_pb2.RFM_SEGMENT_HIGH_VALUE,
            ),
        )
    )
    got = (
        await stub.GetCustomer(
            pb.GetCustomerRequest(customer_id=customer.customer_id), metadata=md(merchant_id)
        )
    ).customer
    assert got.account_linked
    assert (got.rfm_score.frequency, got.rfm_segment) == (3, rfm_pb2.RFM_SEGMENT_HIGH_VALUE)
    (linked,) = await outbox_events(db, "customer.updated")
    assert (linked.customer_id, list(linked.update_mask.paths)) == (
        customer.customer_id,
        ["account_linked"],
    )
    assert await rows(db, "SELECT kind FROM user_accounts WHERE user_id = %s", user_id) == [
        ("customer",)
    ]


async def test_rfm_scores_naming_the_shopify_customer_reach_core_s_customer(
    handlers, stub, merchant_id
):
    # The RFM service scores orders, which name Shopify's customer id.
    customer = await create_customer(stub, merchant_id, "7390012230042")
    await handlers["rfm.updated"](
        consumed(
            merchant_id,
            rfm_pb2.RfmUpdated(
                customer_id="7390012230042",
                score=rfm_pb2.RfmScore(frequency=2),
                segment=rfm_pb2.RFM_SEGMENT_AT_RISK,
            ),
        )
    )
    got = (
        await stub.GetCustomer(
            pb.GetCustomerRequest(customer_id=customer.customer_id), metadata=md(merchant_id)
        )
    ).customer
    assert (got.rfm_score.frequency, got.rfm_segment) == (2, rfm_pb2.RFM_SEGMENT_AT_RISK)


async def test_an_erased_customer_takes_the_erasures_id_unless_a_row_has_it(
    core, stub, db, database_url, redis_url, merchant_id
):
    """EraseCustomer replaces the Shopify id by the id every service gives the customer in
    this erasure (CustomerRef.anonymous_id); where a row has that id already (a redacted
    event consumed meanwhile), by one naming the row instead: never a unique violation."""
    from loyalnest.platform.personal_data import CustomerRef

    settings = core_settings(database_url, redis_url)
    database = Database(settings, DATABASE)
    stores = open_stores(settings, database)
    await database.open()
    try:
        first = await create_customer(stub, merchant_id, "7390012230071", email="a@example.com")
        second = await create_customer(stub, merchant_id, "7390012230072")
        request = CustomerRef("7390012230071")
        assert await stores.customers.erase_customer(merchant_id, request) == 1
        assert await stores.customers.erase_customer(merchant_id, request) == 0  # a retry
        taken = CustomerRef("7390012230072")
        await create_customer(stub, merchant_id, taken.anonymous_id("7390012230072"))
        assert await stores.customers.erase_customer(merchant_id, taken) == 1
        ids = dict(
            await rows(
                db,
                "SELECT customer_id::text, shopify_customer_id FROM customers"
                " WHERE customer_id = ANY(%s::uuid[])",
                [first.customer_id, second.customer_id],
            )
        )
        assert ids == {
            first.customer_id: request.anonymous_id("7390012230071"),
            second.customer_id: f"erased:{second.customer_id}",
        }
    finally:
        for cleanup in stores.cleanup:
            await cleanup()
        await database.close()


async def test_gdpr_redaction_erases_the_customers_personal_data(handlers, stub, db, merchant_id):
    customer = await create_customer(stub, merchant_id, "forget-me", email="forget@example.com")
    other = await create_customer(stub, merchant_id, "keep-me", email="keep@example.com")
    await handlers["rfm.updated"](
        consumed(
            merchant_id,
            rfm_pb2.RfmUpdated(
                customer_id=customer.customer_id, score=rfm_pb2.RfmScore(frequency=1)
            ),
        )
    )
    redact = consumed(
        merchant_id,
        admin_core_pb2.GdprRequestCreated(
            request_id="gdpr-1",
            customer_id=customer.customer_id,
            type=admin_core_pb2.GDPR_REQUEST_TYPE_REDACT,
        ),
    )
    assert await handlers["gdpr_request.created"](redact)
    assert not await handlers["gdpr_request.created"](redact)
    stored = await rows(
        db,
        "SELECT email_ciphertext, email_index, first_name_ciphertext, last_name_ciphertext,"
        " redacted_at IS NOT NULL FROM customers WHERE customer_id = %s",
        customer.customer_id,
    )
    assert stored == [(None, None, None, None, True)]
    assert (
        await rows(db, "SELECT 1 FROM customer_rfm WHERE customer_id = %s", customer.customer_id)
        == []
    )
    assert await rows(db, "SELECT request_id, outcome FROM gdpr_redactions") == [
        ("gdpr-1", "redacted")
    ]
    got = (
        await stub.GetCustomer(
            pb.GetCustomerRequest(customer_id=customer.customer_id), metadata=md(merchant_id)
        )
    ).customer
    assert (got.email, got.first_name, got.redact_time.seconds > 0) == ("", "", True)
    kept = (
        await stub.GetCustomer(
            pb.GetCustomerRequest(customer_id=other.customer_id), metadata=md(merchant_id)
        )
    ).customer
    assert kept.email == "keep@example.com"
    (announced,) = await outbox_events(db, "customer.updated")
    assert sorted(announced.update_mask.paths) == ["email", "first_name", "last_name"]
    # By the Shopify id too (Shopify's customers/redact names its own), and for another merchant
    # the same id finds nothing.
    await handlers["gdpr_request.created"](
        consumed(
            "someone-else",
            admin_core_pb2.GdprRequestCreated(
                request_id="gdpr-2",
                customer_id="keep-me",
                type=admin_core_pb2.GDPR_REQUEST_TYPE_REDACT,
            ),
        )
    )
    assert (
        await stub.GetCustomer(
            pb.GetCustomerRequest(customer_id=other.customer_id), metadata=md(merchant_id)
        )
    ).customer.email == "keep@example.com"
    await handlers["gdpr_request.created"](
        consumed(
            merchant_id,
            admin_core_pb2.GdprRequestCreated(
                request_id="gdpr-3",
                customer_id="keep-me",
                type=admin_core_pb2.GDPR_REQUEST_TYPE_REDACT,
            ),
        )
    )
    assert (
        await stub.GetCustomer(
            pb.GetCustomerRequest(customer_id=other.customer_id), metadata=md(merchant_id)
        )
    ).customer.email == ""


async def test_each_rpc_needs_its_permission(stub, merchant_id):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetUsage(pb.GetUsageRequest(), metadata=md(merchant_id, ("points:read",)))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetProgramSettings(pb.GetProgramSettingsRequest())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


# ---- REST through the gateway -----------------------------------------------------------


async def test_rest_through_envoy(database_url, redis_url, tmp_path, merchant_id):
    settings = core_settings(
        database_url, redis_url, core_plans={"free": {"customers_limit": 1}, "plus": {}}
    )
    async with running(SPEC, settings) as service:
        upstream = Upstream("core", (SERVICE_NAME,), (("127.0.0.1", service.port),))
        config = gateway_config(upstream, upstreams=(upstream,))
        async with running_gateway(config, tmp_path, {"core": 1}) as gateway:
            headers = merchant_headers(merchant_id, CORE_ALL)
            patched = await http(
                "PATCH",
                f"{gateway.url}/v1/api/core/settings",
                headers=headers,
                json_body={
                    "settings": {
                        "points_per_currency_unit": "1.25",
                        "rounding": "POINTS_ROUNDING_UP",
                    },
                    "update_mask": "points_per_currency_unit,rounding",
                    "idempotency_key": "rest-1",
                },
            )
            assert patched.status == 200, patched.body
            got = await http("GET", f"{gateway.url}/v1/api/core/settings", headers=headers)
            settings_json = got.json()["settings"]
            assert (settings_json["version"], settings_json["rounding"]) == (
                "1",
                "POINTS_ROUNDING_UP",
            )
            bad = await http(
                "PATCH",
                f"{gateway.url}/v1/api/core/settings",
                headers=headers,
                json_body={
                    "settings": {"points_per_currency_unit": "-3"},
                    "update_mask": "points_per_currency_unit",
                    "idempotency_key": "rest-2",
                },
            )
            assert bad.status == 400, bad.body
            assert "settings.points_per_currency_unit" in bad.body.decode()
            customer = {"customer": {"shopify_customer_id": "r1"}, "idempotency_key": "r1"}
            created = await http(
                "POST", f"{gateway.url}/v1/api/core/customers", headers=headers, json_body=customer
            )
            assert created.status == 200, created.body
            refused = await http(
                "POST",
                f"{gateway.url}/v1/api/core/customers",
                headers=headers,
                json_body={"customer": {"shopify_customer_id": "r2"}, "idempotency_key": "r2"},
            )
            assert refused.status == 429, refused.body
            assert "QuotaFailure" in refused.body.decode()
            usage = await http("GET", f"{gateway.url}/v1/api/core/usage", headers=headers)
            assert {m["metric"]: m["used"] for m in usage.json()["metrics"]} == {
                "customers": "1",
                "orders_per_month": "0",
            }
