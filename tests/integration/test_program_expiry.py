"""The program's signup bonus and points expiry, end to end through the local stack: Core's
settings (PATCH through Envoy) reach Points over the broker; a signed customers/create credits
the bonus once; an order earns; a redemption consumes the oldest lot; the balance shows what
expires soon on a moved clock; the expiry job expires the oldest lot as an `expire`
transaction and publishes points.expired and points.expiring, read back from the broker.

Every figure is computed by hand in the comments; lots are dated by the database's clock, the
moved clock is set from the transactions' times read through the gateway.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from loyalnest.gen.events.v1 import envelope_pb2
from loyalnest.gen.events.v1 import points_pb2 as points_events
from loyalnest.platform.events.topics import POINTS
from loyalnest.services.points.service import expire_points
from tests.integration.conftest import eventually, points_settings
from tests.integration.test_gateway_validate import http
from tests.integration.test_order_flow import (
    Stack,
    balance,
    local_stack,
    order,
    order_status,
)

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)


@pytest.fixture
async def program_stack(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with local_stack(database_url, redis_url, tmp_path) as running_stack:
        yield running_stack


def customer(customer_id: int) -> dict[str, Any]:
    """A customers/create payload as Shopify sends it."""
    return {
        "id": customer_id,
        "email": f"c{customer_id}@example.com",
        "first_name": "Ada",
        "created_at": "2026-12-01T10:00:00-05:00",
        "updated_at": "2026-12-01T10:00:00-05:00",
    }


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def settings_reached_points(stack: Stack, version: int) -> None:
    """Waits until Points applies Core's settings `version`: a free order of a probe customer
    shows the version it was recorded under (it earns nothing, so it changes no figure)."""

    async def applied() -> bool:
        probe = 100_000 + int(uuid.uuid4().int % 10**6)
        await stack.deliver("orders/create", order(probe, 1, (1, 1, "0.00")))
        status = await eventually(lambda: order_status(stack, probe), 30, "the probe order")
        return bool(int(status.get("settings_version", "0")) >= version)

    await eventually(applied, 60, "Points to apply Core's settings")


def points_events_of(
    bootstrap: str, merchant_id: str, *, expected: int, only: tuple[str, ...] = ()
) -> list[tuple[str, Any]]:
    """(event type, payload) of the merchant's points events (those in `only`, if given), as
    the broker holds them."""
    types = {
        "points.earned": points_events.PointsEarned,
        "points.redeemed": points_events.PointsRedeemed,
        "points.expired": points_events.PointsExpired,
        "points.expiring": points_events.PointsExpiring,
        "tier.changed": points_events.TierChanged,
    }
    if only:
        types = {k: v for k, v in types.items() if k in only}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    found: list[tuple[str, Any]] = []
    try:
        partitions = [TopicPartition(POINTS.name, p) for p in range(POINTS.partitions)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        until = time.monotonic() + 60
        linger: float | None = None
        while time.monotonic() < (linger or until):
            for batch in consumer.poll(timeout_ms=200).values():
                for record in batch:
                    envelope = envelope_pb2.Envelope.FromString(record.value)
                    if envelope.merchant_id != merchant_id or envelope.event_type not in types:
                        continue
                    payload = types[envelope.event_type]()
                    assert envelope.payload.Unpack(payload)
                    found.append((envelope.event_type, payload))
            if linger is None and len(found) >= expected:
                linger = time.monotonic() + 2.0  # duplicates would show
    finally:
        consumer.close()
    return found


async def test_signup_bonus_once_then_expiry_fifo_with_notice(
    program_stack: Stack, database_url: str, redis_url: str
) -> None:
    stack = program_stack
    patched = await http(
        "PATCH",
        f"{stack.gateway.url}/v1/api/core/settings",
        headers=stack.headers,
        json_body={
            "settings": {
                "signup_bonus_points": "25",
                "points_expiry_days": 30,
                "points_expiry_mode": "POINTS_EXPIRY_MODE_AFTER_EARNED",
                "points_expiry_notice_days": 7,
                "pending_period": "0s",
            },
            "update_mask": "signup_bonus_points,points_expiry_days,points_expiry_mode,"
            "points_expiry_notice_days,pending_period",
            "idempotency_key": "program-expiry",
        },
    )
    assert patched.status == 200, patched.body
    await settings_reached_points(stack, int(patched.json()["settings"]["version"]))

    # customers/create: 25 points once, however often delivered (same or new event id).
    event_id = str(uuid.uuid4())
    deliveries = await asyncio.gather(
        *(stack.deliver("customers/create", customer(501), event_id=event_id) for _ in range(4))
    )
    assert [d.status for d in deliveries] == [200] * 4
    assert (await stack.deliver("customers/create", customer(501))).status == 200
    assert await eventually(lambda: balance(stack, 501), 30, "the signup bonus") == 25

    # An order of 2 x 30.00 EUR: 60 points at once (no pending period). 25 + 60 = 85.
    assert (await stack.deliver("orders/create", order(9001, 501, (7, 2, "30.00")))).status == 200

    async def credited() -> bool:
        return await balance(stack, 501) == 85

    await eventually(credited, 30, "the order's credit")
    # A redemption of 10 consumes the oldest lot first: signup 25 -> 15, order stays 60.
    redeemed = await http(
        "POST",
        f"{stack.gateway.url}/v1/api/points/redeem",
        headers=stack.headers,
        json_body={"customer_id": "501", "points": 10, "idempotency_key": "redeem-501"},
    )
    assert redeemed.status == 200, redeemed.body
    history = (await stack.get_json("/v1/api/points/transactions/501"))["transactions"]
    assert [(t["points"], t["reason"]) for t in history] == [
        ("-10", ""),
        ("60", "order:9001"),
        ("25", "signup"),
    ]
    signup_at, order_at = _time(history[2]["create_time"]), _time(history[1]["create_time"])

    # 23 days after the bonus: its 15 points expire within the 7 days' notice.
    stack.clock.now = signup_at + 23 * DAY
    shown = await stack.get_json("/v1/api/points/balance/501")
    assert shown["expiring"]["points"] == "15"
    assert _time(shown["expiring"]["expire_time"]) == signup_at + 30 * DAY

    # The job 30 days after the bonus: the 15 left of it expire; the order's 60 remain.
    settings = points_settings(database_url, redis_url=redis_url)
    report = await expire_points(settings, clock=lambda: signup_at + 30 * DAY)
    assert (report.expired_points, report.expired_customers) == (15, 1)
    assert (await expire_points(settings, clock=lambda: signup_at + 30 * DAY)).expired_points == 0
    stack.clock.now = signup_at + 30 * DAY
    shown = await stack.get_json("/v1/api/points/balance/501")
    assert (shown["balance"]["balance"], shown["balance"]["lifetime_earned"]) == ("60", "85")
    assert shown["expiring"]["points"] == "60"
    assert _time(shown["expiring"]["expire_time"]) == order_at + 30 * DAY
    history = (await stack.get_json("/v1/api/points/transactions/501"))["transactions"]
    assert (history[0]["type"], history[0]["points"], history[0]["reason"]) == (
        "TRANSACTION_TYPE_EXPIRE",
        "-15",
        "expired: 30 days after earned",
    )

    # On the broker: one points.expired (15) and one points.expiring (the order's 60).
    events = await asyncio.to_thread(
        points_events_of, settings_bootstrap(stack), stack.merchant_id, expected=5
    )
    expired = [p for t, p in events if t == "points.expired"]
    expiring = [p for t, p in events if t == "points.expiring"]
    assert [(p.customer_id, p.points, p.balance_after) for p in expired] == [("501", 15, 60)]
    assert [(p.customer_id, p.points) for p in expiring] == [("501", 60)]
    assert expiring[0].expire_time.ToDatetime().replace(tzinfo=order_at.tzinfo) == (
        order_at + 30 * DAY
    )
    assert [p.reason for t, p in events if t == "points.earned"] == ["signup", "order:9001"]


def settings_bootstrap(stack: Stack) -> str:
    assert stack.bootstrap_servers
    return stack.bootstrap_servers


def test_expire_command_runs_against_the_configured_store(
    database_url: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "LOYALNEST_DATABASE_URL": database_url,
        "LOYALNEST_POINTS_LEDGER_STORE": "postgres",
    }
    migrate = subprocess.run(
        [sys.executable, "-m", "loyalnest.cli", "migrate", "points"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr
    done = subprocess.run(
        [sys.executable, "-m", "loyalnest.cli", "points", "expire"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "points expiry:" in done.stdout and "left for the next run" in done.stdout
