"""VIP tiers end to end. Through the local stack (Envoy, Core, Points, the broker): tiers set in
Core's settings, points earned through the gateway move the customer up at once (Points'
consumer of its own points.earned), the balance shows the tier and progress, the recalculation
job on a clock moved to the new year takes the tier away, and tier.changed is on the broker
each time. With Auth and the Shopify Admin stand-in: the tier's tag reaches the customer at
Shopify (tagsAdd / tagsRemove). Figures worked out in the comments."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from loyalnest.devstack.standins.shopify_admin import ShopifyAdminStandIn
from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.events.v1 import core_pb2
from loyalnest.gen.points.v1 import points_pb2 as pb
from loyalnest.gen.points.v1 import points_pb2_grpc
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.postgres import Database
from loyalnest.platform.program_settings import default_program
from loyalnest.services.points.service import DATABASE, SPEC, recalculate_tiers
from loyalnest.services.points.store.postgres import PostgresLedgerStore
from tests.auth import merchant_metadata
from tests.integration.broker import BrokerProcess
from tests.integration.conftest import eventually, points_settings, serve_for_test
from tests.integration.events_worker import FAST_EVENTS
from tests.integration.shopify_standin import API_KEY, API_SECRET
from tests.integration.test_auth_service import install
from tests.integration.test_gateway_validate import http
from tests.integration.test_order_flow import Stack, local_stack
from tests.integration.test_program_expiry import points_events_of, settings_reached_points
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
