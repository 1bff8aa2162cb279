"""A merchant's order becomes points, end to end through the local stack: a real Envoy, the
edge, Core and Points services, a real Kafka-protocol broker, PostgreSQL and Valkey.

Core's settings (PATCH through Envoy) reach Points as program_settings.updated; a signed
orders/create (through Envoy) reaches Points as webhook.received; the points stay pending for
the merchant's pending period, measured on a clock the test moves; then they are credited
(points.earned, which Core counts as an order rewarded); a refund takes back its share.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from loyalnest.gateway import Upstream
from loyalnest.gateway.edge import EdgePolicy, JwtProvider
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.server import RunningService, running
from loyalnest.platform.tenancy import merchant_id_for_shop
from loyalnest.services.core.service import SERVICE_NAME as CORE_SERVICE
from loyalnest.services.core.service import SPEC as CORE
from loyalnest.services.edge.service import SERVICE_NAME as EDGE_SERVICE
from loyalnest.services.edge.service import SPEC as EDGE
from loyalnest.services.edge.service import EdgeSettings
from loyalnest.services.edge.signing import shopify_headers, webhook_path
from loyalnest.services.points.service import SERVICE_NAME as POINTS_SERVICE
from loyalnest.services.points.service import SPEC as POINTS
from loyalnest.services.points.service import build as build_points
from tests.auth import JWKS_PATH, merchant_headers
from tests.integration.broker import BrokerProcess
from tests.integration.conftest import (
    eventually,
    points_settings,
    service_settings_for_tests,
)
from tests.integration.events_worker import FAST_EVENTS
from tests.integration.test_core_service import core_settings
from tests.integration.test_gateway_validate import (
    Gateway,
    Response,
    gateway_config,
    http,
    running_gateway,
)

pytestmark = pytest.mark.integration

SECRET = "order-flow-secret"
SHOP = "order-flow.myshopify.com"
PERMISSIONS = ("points:read", "points:write", "core:read", "core:write")
START = datetime(2026, 11, 20, 19, 5, tzinfo=UTC)


class Clock:
    """The time Points measures pending periods against; the test moves it."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def order(order_id: int, customer_id: int, *lines: tuple[int, int, str]) -> dict[str, Any]:
    """An orders/create payload as Shopify sends it (the fields Points reads, and more)."""
    return {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "currency": "EUR",
        "financial_status": "paid",
        "customer": {"id": customer_id, "email": "ada@example.com"},
        "total_tax": "4.00",
        "shipping_lines": [{"price": "5.00"}],
        "line_items": [
            {
                "id": order_id * 10 + n,
                "product_id": product,
                "quantity": quantity,
                "price": price,
                "discount_allocations": [],
            }
            for n, (product, quantity, price) in enumerate(lines)
        ],
    }


@dataclass
class Stack:
    gateway: Gateway
    clock: Clock
    merchant_id: str
    # The broker's address, for tests that read the events back.
    bootstrap_servers: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return merchant_headers(self.merchant_id, PERMISSIONS)

    async def deliver(
        self, topic: str, payload: dict[str, Any], *, event_id: str | None = None
    ) -> Response:
        body = json.dumps(payload).encode()
        headers = shopify_headers(
            body,
            topic=topic,
            shop_domain=SHOP,
            secret=SECRET,
            event_id=event_id or str(uuid.uuid4()),
        )
        return await http(
            "POST", self.gateway.url + webhook_path(topic), body=body, headers=headers
        )

    async def get(self, path: str) -> Response:
        return await http("GET", self.gateway.url + path, headers=self.headers)

    async def get_json(self, path: str) -> Any:
        response = await self.get(path)
        assert response.status == 200, (path, response.status, response.body)
        return response.json()


@contextlib.asynccontextmanager
async def local_stack(
    database_url: str, redis_url: str, workdir: Path, **core_overrides: Any
) -> AsyncIterator[Stack]:
    broker = BrokerProcess()
    await broker.start()
    events = {
        **FAST_EVENTS,
        "events_enabled": True,
        "kafka_bootstrap_servers": broker.bootstrap_servers,
    }
    clock = Clock()
    points_spec = dataclasses.replace(POINTS, build=functools.partial(build_points, clock=clock))
    points = points_settings(
        database_url,
        redis_url=redis_url,
        points_order_settle_interval_seconds=0.1,
        points_program_cache_seconds=0,
        **events,
    )
    edge = service_settings_for_tests(
        EdgeSettings, database_url, redis_url=redis_url, shopify_api_secret=SECRET, **events
    )
    core = core_settings(database_url, redis_url, **events, **core_overrides)
    try:
        async with (
            running(EDGE, edge) as edge_service,
            running(CORE, core) as core_service,
            running(points_spec, points) as points_service,
        ):
            services: dict[str, RunningService] = {
                "edge": edge_service,
                "core": core_service,
                "points": points_service,
            }
            for service in services.values():
                await asyncio.wait_for(service.health.started.wait(), 30)
            grpc_services = {"edge": EDGE_SERVICE, "core": CORE_SERVICE, "points": POINTS_SERVICE}
            upstreams = tuple(
                Upstream(name, (grpc_services[name],), (("127.0.0.1", s.port),))
                for name, s in services.items()
            )
            config = gateway_config(
                upstreams[0],
                upstreams=upstreams,
                policy=EdgePolicy(
                    jwt=JwtProvider(JWKS_PATH, ServiceSettings().jwt_issuer),
                    admin_allowed_cidrs=("127.0.0.1/32",),
                    rate_limit_upstream="edge",
                ),
            )
            async with running_gateway(config, workdir, dict.fromkeys(services, 1)) as gw:
                yield Stack(gw, clock, merchant_id_for_shop(SHOP), broker.bootstrap_servers)
    finally:
        broker.close()


@pytest.fixture
async def stack(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with local_stack(database_url, redis_url, tmp_path) as running_stack:
        yield running_stack


async def order_status(stack: Stack, order_id: int) -> dict[str, Any] | None:
    response = await stack.get(f"/v1/api/points/orders/{order_id}")
    if response.status == 404:
        return None
    assert response.status == 200, response.body
    found: dict[str, Any] = response.json()["order"]
    return found


async def balance(stack: Stack, customer_id: int) -> int | None:
    response = await stack.get(f"/v1/api/points/balance/{customer_id}")
    if response.status == 404:
        return None
    assert response.status == 200, response.body
    return int(response.json()["balance"].get("balance", 0))


async def test_signed_order_becomes_pending_then_spendable_points_and_a_refund_takes_back(
    stack: Stack,
) -> None:
    # The merchant's program: 2 points per EUR, 7 days pending (the return window).
    patched = await http(
        "PATCH",
        f"{stack.gateway.url}/v1/api/core/settings",
        headers=stack.headers,
        json_body={
            "settings": {"points_per_currency_unit": "2", "pending_period": "604800s"},
            "update_mask": "points_per_currency_unit,pending_period",
            "idempotency_key": "flow-settings",
        },
    )
    assert patched.status == 200, patched.body
    version = int(patched.json()["settings"]["version"])

    # Until Points holds that version, orders would earn at Core's default rate. A free order
    # of another customer shows which version Points applies; it earns nothing, so it is
    # never credited nor counted by Core.
    async def points_has_settings() -> bool:
        probe = 1000 + int(uuid.uuid4().int % 10**6)
        await stack.deliver("orders/create", order(probe, 1, (1, 1, "0.00")))
        status = await eventually(lambda: order_status(stack, probe), 30, "the probe order")
        return bool(int(status.get("settings_version", "0")) >= version)

    await eventually(points_has_settings, 60, "Points to apply Core's settings")

    # 2 x 30.00 + 1 x 45.50 = 105.50 EUR (tax and shipping earn nothing) -> 211 points.
    placed = order(7001, 42, (501, 2, "30.00"), (502, 1, "45.50"))
    event_id = str(uuid.uuid4())
    deliveries = await asyncio.gather(
        *(stack.deliver("orders/create", placed, event_id=event_id) for _ in range(5))
    )
    assert [d.status for d in deliveries] == [200] * 5
    # orders/paid is another event for the same order: it must not credit again.
    assert (await stack.deliver("orders/paid", placed)).status == 200

    pending = await eventually(lambda: order_status(stack, 7001), 30, "the order to be recorded")
    assert pending["status"] == "ORDER_EARNING_STATUS_PENDING"
    assert (pending["customer_id"], pending["points"]) == ("42", "211")
    assert pending["approve_time"] == "2026-11-27T19:05:00Z"
    assert await balance(stack, 42) is None  # pending points are not spendable

    stack.clock.now = START + timedelta(days=7)
    assert await eventually(lambda: balance(stack, 42), 15, "the credit") == 211
    approved = await order_status(stack, 7001)
    assert approved is not None
    assert (approved["status"], approved["approved_points"]) == (
        "ORDER_EARNING_STATUS_APPROVED",
        "211",
    )
    history = await stack.get_json("/v1/api/points/transactions/42")
    assert [(t["points"], t["reason"]) for t in history["transactions"]] == [("211", "order:7001")]

    # Core counts the order as rewarded from Points' points.earned.
    async def orders_counted() -> bool:
        usage = await stack.get_json("/v1/api/core/usage")
        return {m["metric"]: m.get("used", "0") for m in usage["metrics"]}.get(
            "orders_per_month"
        ) == "1"

    await eventually(orders_counted, 30, "Core to count the rewarded order")

    # Refund of one beanie (30.00 of 105.50): 60 points back, once however often delivered.
    refund = {
        "id": 88001,
        "order_id": 7001,
        "refund_line_items": [{"line_item_id": 70010, "quantity": 1, "subtotal": "30.00"}],
    }
    refund_event = str(uuid.uuid4())
    for _ in range(3):
        assert (await stack.deliver("refunds/create", refund, event_id=refund_event)).status == 200
    assert (await stack.deliver("refunds/create", refund)).status == 200  # a new event id
    assert await eventually(lambda: _equals(balance(stack, 42), 151), 15, "the refund's reversal")
    history = await stack.get_json("/v1/api/points/transactions/42")
    assert [(t["points"], t["reason"]) for t in history["transactions"]] == [
        ("-60", "order:7001:refunded"),
        ("211", "order:7001"),
    ]


async def _equals(value: Awaitable[Any], expected: Any) -> bool:
    return bool(await value == expected)


async def test_order_cancelled_while_pending_never_credits(stack: Stack) -> None:
    placed = order(7002, 43, (501, 1, "20.00"))
    assert (await stack.deliver("orders/create", placed)).status == 200
    await eventually(lambda: order_status(stack, 7002), 30, "the order to be recorded")
    cancelled = placed | {"cancelled_at": "2026-11-21T10:15:00Z", "cancel_reason": "customer"}
    assert (await stack.deliver("orders/cancelled", cancelled)).status == 200

    async def taken_back() -> bool:
        status = await order_status(stack, 7002)
        return status is not None and status.get("taken_back_points") == "20"

    await eventually(taken_back, 30, "the cancellation to be recorded")
    stack.clock.now = START + timedelta(days=30)
    approved = await eventually(lambda: _approved(stack, 7002), 15, "the order to be settled")
    assert approved.get("approved_points", "0") == "0"
    assert await balance(stack, 43) is None  # nothing was ever credited


async def test_paid_order_replayed_as_a_cancellation_reverses_nothing(stack: Stack) -> None:
    # Issue 14: a captured orders/paid body (validly signed: the HMAC covers the body only)
    # sent to the cancellation route with a fresh event id must not take the points back.
    placed = order(7004, 44, (501, 1, "20.00"))
    assert (await stack.deliver("orders/paid", placed)).status == 200
    await eventually(lambda: order_status(stack, 7004), 30, "the order to be recorded")
    replay = await stack.deliver("orders/cancelled", placed)
    # The same customer's next order travels the same partition: once it is recorded, anything
    # the replay could have published would have been applied before it.
    assert (await stack.deliver("orders/create", order(7005, 44, (501, 1, "1.00")))).status == 200
    await eventually(lambda: order_status(stack, 7005), 30, "the next order")
    status = await order_status(stack, 7004)
    assert status is not None and status.get("taken_back_points", "0") == "0", status
    assert status["points"] == "20"
    assert replay.status == 400, replay.body


async def _approved(stack: Stack, order_id: int) -> dict[str, Any] | None:
    status = await order_status(stack, order_id)
    return status if status and status["status"] == "ORDER_EARNING_STATUS_APPROVED" else None


async def test_unreadable_order_id_is_a_clear_error(stack: Stack) -> None:
    response = await stack.get("/v1/api/points/orders/not%20an%20id")
    assert response.status == 400, response.body
    assert "order_id" in response.body.decode()
    missing = await stack.get("/v1/api/points/orders/123456789")
    assert missing.status == 404, missing.body
