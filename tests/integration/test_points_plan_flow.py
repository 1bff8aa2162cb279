"""A plan's features from Core to Points (issue 21): the merchant changes plan through Core
(`POST /v1/api/core/plan`), Core publishes the program with the plan
(program_settings.updated, through the broker), and Points allows gift card rewards or
refuses them as that plan says. Through the local stack (Envoy, Edge, Core, Points, the
broker); the redemption side is in test_points_reward_eligibility.py (it needs Shopify)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.auth import merchant_headers
from tests.integration.conftest import eventually
from tests.integration.test_gateway_validate import http
from tests.integration.test_order_flow import Stack, local_stack

pytestmark = pytest.mark.integration

# Both free (no Shopify Billing): a change applies at once.
PLANS = {
    "free": {"customers_limit": 5, "orders_per_month_limit": 5},
    "gifts": {"gift_card_rewards": True},
}
PERMISSIONS = ("points:read", "points:write", "rewards:write", "core:read", "core:plan")
GIFT_CARD = {
    "name": "5 gift card",
    "kind": "REWARD_KIND_GIFT_CARD",
    "value": "5.00",
    "points_cost": 50,
}


@pytest.fixture
async def stack(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with local_stack(database_url, redis_url, tmp_path, core_plans=PLANS) as running:
        yield running


async def call(stack: Stack, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    headers = merchant_headers(stack.merchant_id, PERMISSIONS)
    return await http(method, f"{stack.gateway.url}{path}", headers=headers, json_body=body)


async def change_plan(stack: Stack, plan: str) -> None:
    changed = await call(
        stack, "POST", "/v1/api/core/plan", {"plan": plan, "idempotency_key": uuid.uuid4().hex}
    )
    assert changed.status == 200, changed.body
    assert changed.json()["status"] == "PLAN_CHANGE_STATUS_APPLIED"


async def create_gift_card(stack: Stack, key: str) -> Any:
    body = {"reward": GIFT_CARD, "idempotency_key": key}
    return await call(stack, "POST", "/v1/api/rewards", body)


def plan_refusal(body: dict[str, Any]) -> bool:
    """Whether an error body is FAILED_PRECONDITION PLAN_FEATURE_REQUIRED naming the free
    plan's gift card feature."""
    (failure,) = [d for d in body["details"] if d["@type"].endswith("PreconditionFailure")]
    violation = failure["violations"][0]
    return bool(
        body["code"] == 9  # FAILED_PRECONDITION
        and violation["type"] == "PLAN_FEATURE_REQUIRED"
        and violation["subject"] == "plan/free/gift_card_rewards"
    )


async def test_gift_card_rewards_follow_the_plan_core_publishes(stack: Stack) -> None:
    plans = (await call(stack, "GET", "/v1/api/core/plan")).json()
    features = {p["plan"]: p.get("gift_card_rewards", False) for p in plans["available_plans"]}
    assert features == {"free": False, "gifts": True}

    # Points assumes nothing of a plan it has not heard of: the merchant's own plan must
    # reach it first. On free (gifts, then back: each change is published), no gift cards.
    await change_plan(stack, "gifts")
    await change_plan(stack, "free")

    async def refused_by_plan() -> bool:
        # A new key each time: a retry of a create made before would answer with its card.
        response = await create_gift_card(stack, uuid.uuid4().hex)
        return response.status == 400 and plan_refusal(response.json())

    await eventually(refused_by_plan, 60, "Points to take the free plan")

    await change_plan(stack, "gifts")

    async def created() -> Any:
        response = await create_gift_card(stack, "card-1")
        return response.json()["reward"] if response.status == 200 else None

    card = await eventually(created, 60, "Points to take the gifts plan")

    await change_plan(stack, "free")
    customer = "7393000000001"

    async def downgraded() -> bool:
        # Every page: the wait for the free plan above made a card per try while Points still
        # had the gifts plan, so this one may be past the first page.
        path, found = f"/v1/api/rewards?customer_id={customer}&page_size=100", []
        token = ""
        while True:
            listed = await call(stack, "GET", path + (f"&page_token={token}" if token else ""))
            assert listed.status == 200, listed.body
            page = listed.json()
            found += [e for e in page["eligibility"] if e["reward_id"] == card["reward_id"]]
            token = page.get("next_page_token", "")
            if not token:
                break
        (eligibility,) = found
        return "REWARD_INELIGIBILITY_PLAN_FEATURE_REQUIRED" in eligibility.get("reasons", [])

    await eventually(downgraded, 60, "Points to take the free plan again")
    refused = await create_gift_card(stack, "card-2")
    assert refused.status == 400, refused.body
    assert plan_refusal(refused.json())
    # The retry of the first create still answers with the card made before the downgrade.
    again = await create_gift_card(stack, "card-1")
    assert again.status == 200, again.body
    assert again.json()["reward"]["reward_id"] == card["reward_id"]
