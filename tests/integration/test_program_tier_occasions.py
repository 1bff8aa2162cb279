"""Tier-only occasion rules end to end (issue 21): ANNIVERSARY and NEWSLETTER_SIGNUP rules with
`eligible_tiers`, saved in Core through Envoy (no longer refused), award only customers in one
of the tiers when the award is made: the newsletter credit when Shopify's customers/update
arrives (through the edge and the broker), the occasions job on its day a year on (the moved
clock: `credit_occasions(day)`), and again on a rerun that day after an upgrade. Real Core,
Points, edge, PostgreSQL, Valkey, the broker and Envoy. (BIRTHDAY rules go through the very
same award as ANNIVERSARY, occasions.Occasions._celebrate; their Users side is
test_program_occasions.py's.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from loyalnest.gen.events.v1.rfm_pb2 import RFM_SEGMENT_AT_RISK, RFM_SEGMENT_HIGH_VALUE
from loyalnest.services.points.service import credit_occasions
from tests.integration.conftest import eventually, points_settings
from tests.integration.test_gateway_validate import http
from tests.integration.test_order_flow import Stack, balance, local_stack, order
from tests.integration.test_points_reward_eligibility import publish_rfm
from tests.integration.test_program_expiry import settings_reached_points
from tests.integration.test_program_newsletter import NOW, customer
from tests.integration.test_program_occasions import history, next_year
from tests.integration.test_program_rules import patch_settings

pytestmark = pytest.mark.integration

TIERS = [
    {"tier_id": "silver", "name": "Silver", "threshold": "100"},
    {"tier_id": "gold", "name": "Gold", "threshold": "300"},
]
RULES = [
    {"rule_id": "anniv-gold", "enabled": True, "type": "EARNING_RULE_TYPE_ANNIVERSARY",
     "points": "25", "eligible_tiers": ["gold"]},
    {"rule_id": "anniv", "enabled": True, "type": "EARNING_RULE_TYPE_ANNIVERSARY", "points": "5"},
    {"rule_id": "news-vip", "enabled": True, "type": "EARNING_RULE_TYPE_NEWSLETTER_SIGNUP",
     "points": "30", "eligible_tiers": ["silver", "gold"]},
]  # fmt: skip
GOLD, SILVER, NONE = "8901", "8902", "8903"


@pytest.fixture
async def program_stack(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with local_stack(database_url, redis_url, tmp_path) as running_stack:
        yield running_stack


async def earn(stack: Stack, customer_id: str, points: int, key: str) -> None:
    response = await http(
        "POST",
        f"{stack.gateway.url}/v1/api/points/earn",
        headers=stack.headers,
        json_body={"customer_id": customer_id, "points": points, "idempotency_key": key},
    )
    assert response.status == 200, response.body


async def tier_reached(stack: Stack, customer_id: str, tier_id: str) -> None:
    async def there() -> bool:
        found: dict[str, Any] = await stack.get_json(f"/v1/api/points/balance/{customer_id}")
        return bool(found.get("vip", {}).get("tier_id", "") == tier_id)

    await eventually(there, 30, f"{customer_id} in tier {tier_id!r}")


async def rule_credits(stack: Stack, customer_id: str) -> list[str]:
    return sorted(rule for _, rule, _ in await history(stack, customer_id) if rule)


async def test_tier_only_occasions_award_by_the_tier_at_the_award(
    program_stack: Stack, database_url: str, redis_url: str
) -> None:
    stack = program_stack
    saved = await patch_settings(
        stack,
        {
            "vip_tiers": TIERS,
            "vip_metric": "VIP_METRIC_POINTS_EARNED",
            "vip_term": "VIP_TERM_LIFETIME",
            "earning_rules": RULES,
            "pending_period": "0s",
        },
        "vip_tiers,vip_metric,vip_term,earning_rules,pending_period",
        "tier-occasions-1",
    )
    assert saved.status == 200, saved.body  # a 400 before: tier-only occasions were refused
    rules = saved.json()["settings"]["earning_rules"]
    assert [r.get("eligible_tiers", []) for r in rules] == [["gold"], [], ["silver", "gold"]]
    await settings_reached_points(stack, int(saved.json()["settings"]["version"]))

    await earn(stack, GOLD, 350, "gold-1")
    await earn(stack, SILVER, 150, "silver-1")
    await earn(stack, NONE, 10, "none-1")
    await tier_reached(stack, GOLD, "gold")
    await tier_reached(stack, SILVER, "silver")

    # Newsletter sign-ups: the Silver customer earns the VIP rule's 30, the one in no tier
    # nothing. An order after each update (the customer's events stay in order) shows the
    # update was applied: 5.00 earns 5 at the program's base rate.
    for customer_id in (SILVER, NONE):
        body = customer(int(customer_id), "subscribed", given=NOW)
        assert (await stack.deliver("customers/update", body)).status == 200
        placed = order(int(customer_id) + 10_000, int(customer_id), (7, 1, "5.00"))
        assert (await stack.deliver("orders/create", placed)).status == 200
    expected = {SILVER: 150 + 30 + 5, NONE: 10 + 5}
    for customer_id, points in expected.items():

        async def settled(customer_id: str = customer_id, points: int = points) -> bool:
            return await balance(stack, int(customer_id)) == points

        await eventually(settled, 30, f"{customer_id}'s sign-up and order")
    assert await rule_credits(stack, SILVER) == ["news-vip", "order"]
    assert await rule_credits(stack, NONE) == ["order"]

    # A year on (the job's day): every member's first anniversary. "anniv" for all three,
    # "anniv-gold" for the Gold customer only: the other two are counted not eligible.
    day = next_year(datetime.now(UTC).date())
    settings = points_settings(database_url, redis_url=redis_url)
    first = await credit_occasions(settings, day)
    assert (first.awarded, first.points, first.not_eligible) == (4, 25 + 3 * 5, 2)
    assert await rule_credits(stack, GOLD) == ["anniv", "anniv-gold"]
    assert await rule_credits(stack, SILVER) == ["anniv", "news-vip", "order"]

    # The Silver customer reaches Gold that day; the job's rerun (an hourly run, a retry)
    # awards what the tier now allows, and nothing twice.
    await earn(stack, SILVER, 200, "silver-2")
    await tier_reached(stack, SILVER, "gold")
    again = await credit_occasions(settings, day)
    assert (again.awarded, again.points, again.replayed, again.not_eligible) == (1, 25, 4, 1)
    assert await rule_credits(stack, SILVER) == ["anniv", "anniv-gold", "news-vip", "order"]
    assert await rule_credits(stack, NONE) == ["anniv", "order"]


SEGMENT_RULES = [
    {"rule_id": "spend", "enabled": True, "type": "EARNING_RULE_TYPE_PLACE_ORDER",
     "points_per_currency_unit": "1"},
    {"rule_id": "vip-bonus", "enabled": True, "type": "EARNING_RULE_TYPE_PLACE_ORDER",
     "points": "50", "eligible_segments": ["RFM_SEGMENT_HIGH_VALUE"]},
    {"rule_id": "anniv-risk", "enabled": True, "type": "EARNING_RULE_TYPE_ANNIVERSARY",
     "points": "40", "eligible_segments": ["RFM_SEGMENT_AT_RISK"]},
]  # fmt: skip


async def test_segment_only_rules_follow_rfm(
    program_stack: Stack, database_url: str, redis_url: str
) -> None:
    """Earning rules for RFM segments: Points' copy of each customer's segment comes from
    rfm.updated on the broker (published as RFM's relay does); an order earns the
    high-value bonus only for a customer RFM scored high value, the anniversary rule for
    at-risk customers only."""
    stack = program_stack
    bad = await patch_settings(
        stack,
        {"earning_rules": [SEGMENT_RULES[1] | {"eligible_segments": ["RFM_SEGMENT_UNSPECIFIED"]}]},
        "earning_rules",
        "segments-bad",
    )
    assert bad.status == 400, bad.body
    assert {v["field"] for d in bad.json()["details"] for v in d.get("field_violations", [])} == {
        "settings.earning_rules[0].eligible_segments[0]"
    }
    saved = await patch_settings(
        stack,
        {"earning_rules": SEGMENT_RULES, "pending_period": "0s"},
        "earning_rules,pending_period",
        "segments-1",
    )
    assert saved.status == 200, saved.body
    await settings_reached_points(stack, int(saved.json()["settings"]["version"]))

    vip, risk = "8911", "8912"
    now = datetime.now(UTC)
    await asyncio.to_thread(
        publish_rfm, stack.bootstrap_servers, stack.merchant_id, vip, RFM_SEGMENT_HIGH_VALUE, now
    )
    await asyncio.to_thread(
        publish_rfm, stack.bootstrap_servers, stack.merchant_id, risk, RFM_SEGMENT_AT_RISK, now
    )

    async def bonus_previewed() -> bool:
        preview = await http(
            "POST",
            f"{stack.gateway.url}/v1/api/points/preview",
            headers=stack.headers,
            json_body={"customer_id": vip, "lines": [{"quantity": "1", "price": "10.00"}]},
        )
        assert preview.status == 200, preview.body
        return bool(preview.json()["points"] == "60")  # 10 + the bonus

    await eventually(bonus_previewed, 30, "the high_value segment in Points")
    for customer_id in (vip, risk):
        placed = order(int(customer_id) + 10_000, int(customer_id), (7, 1, "10.00"))
        assert (await stack.deliver("orders/create", placed)).status == 200
    for customer_id, points in {vip: 60, risk: 10}.items():

        async def credited(customer_id: str = customer_id, points: int = points) -> bool:
            return await balance(stack, int(customer_id)) == points

        await eventually(credited, 30, f"{customer_id}'s order")
    assert await rule_credits(stack, vip) == ["spend,vip-bonus"]
    assert await rule_credits(stack, risk) == ["spend"]

    report = await credit_occasions(
        points_settings(database_url, redis_url=redis_url), next_year(now.date())
    )
    assert (report.awarded, report.points, report.not_eligible) == (1, 40, 1)
    assert await rule_credits(stack, risk) == ["anniv-risk", "spend"]
