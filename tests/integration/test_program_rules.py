"""Earning rules end to end through the local stack (Envoy, edge, Core, Points, the broker):
the merchant edits the rules through Core's settings API (validated there: a bad rule is a 400
with field violations), Points applies them to signed orders delivered (and redelivered)
through the edge, a custom activity is recorded once per occurrence within its limit, and
PreviewEarning answers for a cart. Every figure is worked out by hand in the comments."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from tests.integration.conftest import eventually
from tests.integration.test_gateway_validate import Response, http
from tests.integration.test_order_flow import Stack, balance, local_stack, order, order_status
from tests.integration.test_program_expiry import points_events_of, settings_reached_points

pytestmark = pytest.mark.integration

# Shopify order times are the rules' clock for windows: a weekend window around it.
PLACED = "2026-11-21T11:00:00Z"
RULES: list[dict[str, Any]] = [
    {
        "rule_id": "spend",
        "name": "1 point per EUR from 20 EUR",
        "enabled": True,
        "type": "EARNING_RULE_TYPE_PLACE_ORDER",
        "points_per_currency_unit": "1",
        "min_spend": "20",
    },
    {
        "rule_id": "weekend",
        "name": "double points weekend",
        "enabled": True,
        "type": "EARNING_RULE_TYPE_ORDER_MULTIPLIER",
        "multiplier": "2",
        "start_time": "2026-11-21T00:00:00Z",
        "end_time": "2026-11-23T00:00:00Z",
    },
    {
        "rule_id": "punch",
        "enabled": True,
        "type": "EARNING_RULE_TYPE_PUNCH_CARD",
        "points": "50",
        "punch_count": 2,
    },
    {
        "rule_id": "review",
        "enabled": True,
        "type": "EARNING_RULE_TYPE_CUSTOM_ACTIVITY",
        "points": "20",
        "activity": "product_review",
        "limit": {"max_awards": 1, "period": "LIMIT_PERIOD_MONTH"},
    },
]


@pytest.fixture
async def program_stack(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with local_stack(database_url, redis_url, tmp_path) as running_stack:
        yield running_stack


async def patch_settings(stack: Stack, settings: dict[str, Any], mask: str, key: str) -> Response:
    return await http(
        "PATCH",
        f"{stack.gateway.url}/v1/api/core/settings",
        headers=stack.headers,
        json_body={"settings": settings, "update_mask": mask, "idempotency_key": key},
    )


async def post(stack: Stack, path: str, body: dict[str, Any]) -> Response:
    return await http("POST", stack.gateway.url + path, headers=stack.headers, json_body=body)


def placed(order_id: int, customer: int, *lines: tuple[int, int, str]) -> dict[str, Any]:
    return order(order_id, customer, *lines) | {"created_at": PLACED, "source_name": "web"}


async def test_rules_edited_in_core_applied_by_points(program_stack: Stack) -> None:
    stack = program_stack
    # Core refuses a bad rule set whole: a duplicate id, a multiplier of 1, no points.
    bad = await patch_settings(
        stack,
        {
            "earning_rules": [
                RULES[0],
                RULES[0],
                RULES[1] | {"rule_id": "x", "multiplier": "1"},
                {"rule_id": "y", "enabled": True, "type": "EARNING_RULE_TYPE_PUNCH_CARD"},
            ]
        },
        "earning_rules",
        "rules-bad",
    )
    assert bad.status == 400, bad.body
    violations = {v["field"] for d in bad.json()["details"] for v in d.get("field_violations", [])}
    assert {
        "settings.earning_rules[1].rule_id",
        "settings.earning_rules[2].multiplier",
        "settings.earning_rules[3].points",
        "settings.earning_rules[3].punch_count",
    } <= violations, violations

    good = await patch_settings(
        stack,
        {"earning_rules": RULES, "pending_period": "0s"},
        "earning_rules,pending_period",
        "rules-1",
    )
    assert good.status == 200, good.body
    stored = good.json()["settings"]["earning_rules"]
    assert [r["rule_id"] for r in stored] == ["spend", "weekend", "punch", "review"]
    await settings_reached_points(stack, int(good.json()["settings"]["version"]))

    # O1 2 x 30.00 = 60 EUR on the weekend: spend 60 x 2 = 120; the punch card's first.
    first = placed(8101, 601, (5, 2, "30.00"))
    event_id = str(uuid.uuid4())
    sent = await asyncio.gather(
        *(stack.deliver("orders/create", first, event_id=event_id) for _ in range(3))
    )
    assert [s.status for s in sent] == [200] * 3
    assert (await stack.deliver("orders/paid", first | {"financial_status": "paid"})).status == 200
    status = await eventually(lambda: order_status(stack, 8101), 30, "order 8101")
    assert [(a["rule_id"], a["points"]) for a in status["awards"]] == [("spend", "120")]
    # O2 12.00 EUR: under spend's 20 minimum; the punch card's second: 50.
    assert (await stack.deliver("orders/create", placed(8102, 601, (6, 1, "12.00")))).status == 200
    status = await eventually(lambda: order_status(stack, 8102), 30, "order 8102")
    assert [(a["rule_id"], a["points"]) for a in status["awards"]] == [("punch", "50")]

    async def credited() -> bool:
        return await balance(stack, 601) == 170

    await eventually(credited, 30, "both orders' credits: 120 + 50")

    # A review, reported by a reviews app: 20 points once per review, 1 a month.
    review = {"customer_id": "601", "activity": "product_review", "idempotency_key": "rv-1"}
    awarded = await post(stack, "/v1/api/points/activities", review)
    assert awarded.status == 200, awarded.body
    [award] = awarded.json()["awards"]
    assert (award["rule_id"], award["status"], award["points"]) == (
        "review",
        "ACTIVITY_AWARD_STATUS_AWARDED",
        "20",
    )
    again = (await post(stack, "/v1/api/points/activities", review)).json()["awards"]
    assert again[0]["status"] == "ACTIVITY_AWARD_STATUS_DUPLICATE"
    assert again[0]["transaction"]["transaction_id"] == award["transaction"]["transaction_id"]
    limited = await post(stack, "/v1/api/points/activities", review | {"idempotency_key": "rv-2"})
    assert limited.json()["awards"][0]["status"] == "ACTIVITY_AWARD_STATUS_LIMIT_REACHED"
    bad_activity = await post(stack, "/v1/api/points/activities", review | {"activity": "Bad!"})
    assert bad_activity.status == 400, bad_activity.body
    assert await balance(stack, 601) == 190

    history = (await stack.get_json("/v1/api/points/transactions/601"))["transactions"]
    assert [(t["points"], t["reason"], t.get("rule_id")) for t in history] == [
        ("20", "activity:product_review", "review"),
        ("50", "order:8102", "punch"),
        ("120", "order:8101", "spend"),
    ]

    # The preview of a cart, for the widget: 3 x 10.00 less 2.00 = 28 EUR online, outside the
    # weekend window (a preview is priced now, December) -> 28 points of "spend".
    preview = await post(
        stack,
        "/v1/api/points/preview",
        {"lines": [{"product_id": "5", "quantity": 3, "price": "10.00", "discount": "2.00"}]},
    )
    assert preview.status == 200, preview.body
    assert (preview.json()["points"], preview.json()["eligible_amount"]) == ("28", "28.00")
    assert [(a["rule_id"], a["points"]) for a in preview.json()["awards"]] == [("spend", "28")]
    refused = await post(
        stack, "/v1/api/points/preview", {"lines": [{"quantity": 0, "price": "x"}]}
    )
    assert refused.status == 400, refused.body
    # On the broker: each credit names its rule.
    events = await asyncio.to_thread(
        points_events_of, stack.bootstrap_servers, stack.merchant_id, expected=3
    )
    earned = [(p.customer_id, p.points, p.rule_id) for t, p in events if t == "points.earned"]
    assert earned == [("601", 120, "spend"), ("601", 50, "punch"), ("601", 20, "review")]


async def test_preview_earning_p99_under_10_ms(database_url: str) -> None:
    """PreviewEarning's budget (widget, checkout): p99 < 10 ms for Points over gRPC, with the
    five-rule program of the order test (the gateway's rate limit, 60 calls a window per
    merchant and RPC, keeps a through-Envoy sample too small for a p99)."""
    from loyalnest.gen.events.v1 import core_pb2
    from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
    from loyalnest.platform.config import ServiceSettings
    from loyalnest.platform.postgres import Database
    from loyalnest.platform.program_settings import default_program
    from loyalnest.services.points.service import DATABASE, SPEC
    from loyalnest.services.points.store.postgres import PostgresLedgerStore
    from tests.auth import merchant_metadata
    from tests.integration.conftest import points_settings, serve_for_test

    program = default_program()
    program.version = 1
    for rule in RULES:
        parsed = core_pb2.EarningRule()
        json_format.ParseDict(rule, parsed)
        program.earning_rules.append(parsed)
    merchant = "m-preview"
    database = Database(ServiceSettings(database_url=database_url), DATABASE)
    await database.open()
    try:
        await database.migrate()
        store = PostgresLedgerStore(database)
        assert await store.save_program_settings(merchant, 1, program.SerializeToString())
    finally:
        await database.close()
    settings = points_settings(database_url)
    async with serve_for_test(SPEC, settings, points_pb2_grpc.PointsServiceStub) as (_, stub):
        md = merchant_metadata(merchant, ("points:read",))
        request = points_pb2.PreviewEarningRequest(
            lines=[
                points_pb2.PreviewLine(product_id=str(n), quantity=1 + n % 3, price=f"{9 + n}.50")
                for n in range(5)
            ]
        )
        # 9.50 + 2 x 10.50 + 3 x 11.50 + 12.50 + 2 x 13.50 = 104.50 -> "spend": 104 (the
        # weekend window is past).
        first = await stub.PreviewEarning(request, metadata=md)
        assert (first.points, first.eligible_amount) == (104, "104.50")
        for _ in range(50):  # warm
            await stub.PreviewEarning(request, metadata=md)
        timings = []
        for _ in range(1000):
            started = time.perf_counter()
            await stub.PreviewEarning(request, metadata=md)
            timings.append(time.perf_counter() - started)
    timings.sort()
    p99_ms = timings[989] * 1000
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    print(
        f"PreviewEarning over gRPC: p50 {timings[500] * 1000:.2f} ms, p99 {p99_ms:.2f} ms"
        f" (load {load:.1f} per core)"
    )
    # The budget holds on a machine with CPU to spare; on one oversubscribed by other work
    # (shared CI, load above the cores) scheduling delay, not Points, sets the tail.
    assert p99_ms < (10 if load < 1 else 50), p99_ms
