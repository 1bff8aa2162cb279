"""The NEWSLETTER_SIGNUP earning rule end to end: saved in Core through Envoy, a signed
customers/create or customers/update through the edge (Envoy), webhook.received on the broker,
Points' consumer crediting the rule once per customer when email marketing consent turns
"subscribed". Real Core, Points, edge, PostgreSQL, Valkey, the broker and Envoy."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import eventually
from tests.integration.test_order_flow import Stack, balance, local_stack, order
from tests.integration.test_program_expiry import settings_reached_points
from tests.integration.test_program_rules import patch_settings

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def customer(
    customer_id: int, state: str | None, *, given: datetime | None, changed: datetime = NOW
) -> dict[str, Any]:
    """A customers/create or customers/update body as Shopify sends it."""
    body: dict[str, Any] = {
        "id": customer_id,
        "email": f"c{customer_id}@example.com",
        "first_name": "Ada",
        "created_at": "2025-01-01T10:00:00Z",
        "updated_at": stamp(changed),
    }
    if state is not None:
        consent: dict[str, Any] = {"state": state, "opt_in_level": "single_opt_in"}
        if given is not None:
            consent["consent_updated_at"] = stamp(given)
        body["email_marketing_consent"] = consent
    return body


@pytest.fixture
async def program_stack(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with local_stack(database_url, redis_url, tmp_path) as running_stack:
        yield running_stack


async def test_a_newsletter_sign_up_earns_once(program_stack: Stack) -> None:
    stack = program_stack
    rule = {"rule_id": "news", "enabled": True, "type": "EARNING_RULE_TYPE_NEWSLETTER_SIGNUP",
            "points": "30"}  # fmt: skip
    bad = await patch_settings(
        stack,
        {"earning_rules": [rule | {"limit": {"max_awards": 1, "period": "LIMIT_PERIOD_EVER"}}]},
        "earning_rules",
        "news-bad",
    )
    assert bad.status == 400, bad.body
    violations = {v["field"] for d in bad.json()["details"] for v in d.get("field_violations", [])}
    assert violations == {"settings.earning_rules[0].limit"}
    good = await patch_settings(
        stack,
        {"earning_rules": [rule], "pending_period": "0s"},
        "earning_rules,pending_period",
        "news-1",
    )
    assert good.status == 200, good.body
    await settings_reached_points(stack, int(good.json()["settings"]["version"]))

    # 701: a new customer subscribed at sign-up (customers/create), delivered four times
    # with one event id and once more with another: 30, once.
    created = customer(701, "subscribed", given=None)
    event_id = str(uuid.uuid4())
    sent = await asyncio.gather(
        *(stack.deliver("customers/create", created, event_id=event_id) for _ in range(4))
    )
    assert [s.status for s in sent] == [200] * 4
    assert (await stack.deliver("customers/create", created)).status == 200
    assert await eventually(lambda: balance(stack, 701), 30, "701's sign-up") == 30

    # 702: created without consent, subscribes later (customers/update, consent given with
    # this change): 30. Unsubscribing and subscribing again earns nothing more (once ever).
    assert (await stack.deliver("customers/create", customer(702, "not_subscribed",
                                                             given=NOW))).status == 200  # fmt: skip
    later = NOW + timedelta(minutes=5)
    subscribed = customer(702, "subscribed", given=later, changed=later)
    assert (await stack.deliver("customers/update", subscribed)).status == 200
    assert await eventually(lambda: balance(stack, 702), 30, "702's sign-up") == 30
    again = NOW + timedelta(days=3)
    for state in ("unsubscribed", "subscribed"):
        body = customer(702, state, given=again, changed=again)
        assert (await stack.deliver("customers/update", body)).status == 200
        again += timedelta(minutes=1)

    # 703: subscribed a year ago, updates an address now: not a sign-up. Its order after the
    # update (the same partition: the customer's events stay in order) earns 12 points, and
    # once that is credited the update has been applied: 12, no newsletter points.
    moved = customer(703, "subscribed", given=NOW - timedelta(days=365))
    assert (await stack.deliver("customers/update", moved)).status == 200
    assert (await stack.deliver("orders/create", order(9703, 703, (7, 1, "12.00")))).status == 200
    assert await eventually(lambda: balance(stack, 703), 30, "703's order") == 12
    # The same probe for 702: its order after the updates, so they were all applied.
    assert (await stack.deliver("orders/create", order(9702, 702, (7, 1, "5.00")))).status == 200

    async def settled() -> bool:
        return await balance(stack, 702) == 35

    await eventually(settled, 30, "702's order after its updates")

    history = (await stack.get_json("/v1/api/points/transactions/701"))["transactions"]
    assert [(t["points"], t["reason"], t["rule_id"]) for t in history] == [
        ("30", "newsletter", "news")
    ]
