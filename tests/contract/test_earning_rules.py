"""The earning rules engine on every LedgerStore: orders through `OrderEarnings` under a rule
set of every order type (rate with a minimum, a date-window multiplier, a POS-only fixed bonus
limited per day, a punch card, a goal), redeliveries, custom activities with their limit, and
the history showing the rule behind each credit. Figures are worked out in the comments."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.platform.program_settings import default_program
from loyalnest.services.points.domain import ActivityStatus, TransactionType
from loyalnest.services.points.earning import Activities, OrderEarnings, ProgramCopies
from loyalnest.services.points.ledger import Ledger
from loyalnest.services.points.rules import parse_awards
from loyalnest.services.points.store.base import LedgerStore

NOW = datetime(2026, 11, 14, 12, 0, tzinfo=UTC)
WINDOW = (datetime(2026, 11, 14, tzinfo=UTC), datetime(2026, 11, 16, tzinfo=UTC))  # a weekend


def rules_program(version: int = 1) -> core_pb2.ProgramSettings:
    settings = default_program()
    settings.version = version
    settings.pending_period.FromTimedelta(timedelta(0))  # credited at once
    window: dict[str, Any] = {"start_time": WINDOW[0], "end_time": WINDOW[1]}
    R = core_pb2.EarningRule  # noqa: N806
    settings.earning_rules.extend(
        [
            R(
                rule_id="spend",
                enabled=True,
                type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER,
                points_per_currency_unit="1",
                min_spend="20",
            ),
            R(
                rule_id="weekend",
                enabled=True,
                type=core_pb2.EARNING_RULE_TYPE_ORDER_MULTIPLIER,
                multiplier="2",
                **window,
            ),
            R(
                rule_id="pos-bonus",
                enabled=True,
                type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER,
                points=15,
                channels=[core_pb2.SALES_CHANNEL_POS],
                limit=core_pb2.EarningLimit(max_awards=1, period=core_pb2.LIMIT_PERIOD_DAY),
            ),
            R(
                rule_id="punch",
                enabled=True,
                type=core_pb2.EARNING_RULE_TYPE_PUNCH_CARD,
                points=50,
                punch_count=3,
            ),
            R(
                rule_id="goal",
                enabled=True,
                type=core_pb2.EARNING_RULE_TYPE_GOAL_SPEND,
                points=25,
                min_spend="100",
                goal_period={"seconds": 30 * 86400},
            ),
            R(
                rule_id="off",
                enabled=False,
                type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER,
                points=1000,
            ),
            R(
                rule_id="review",
                enabled=True,
                type=core_pb2.EARNING_RULE_TYPE_CUSTOM_ACTIVITY,
                points=20,
                activity="product_review",
                limit=core_pb2.EarningLimit(max_awards=2, period=core_pb2.LIMIT_PERIOD_MONTH),
            ),
        ]
    )
    return settings


def order(order_id: int, amount: str, *, pos: bool, placed: datetime) -> dict[str, Any]:
    return {
        "id": order_id,
        "currency": "EUR",
        "customer": {"id": 7},
        "source_name": "pos" if pos else "web",
        "created_at": placed.isoformat(),
        "line_items": [{"id": 1, "product_id": 11, "quantity": 1, "price": amount}],
    }


@pytest.fixture
async def setup(store: LedgerStore) -> tuple[OrderEarnings, Activities, str]:
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    ledger = Ledger(store, None)
    programs = ProgramCopies(ledger, cache_seconds=0)
    assert await programs.save(merchant_id, rules_program())
    orders = OrderEarnings(ledger, programs, clock=lambda: NOW)
    return orders, Activities(ledger, orders, clock=lambda: NOW), merchant_id


async def awards(store: LedgerStore, merchant_id: str, order_id: int) -> list[tuple[str, int]]:
    settlement = await store.order_settlement(merchant_id, str(order_id))
    assert settlement is not None
    return parse_awards(settlement.earning.awards)


async def test_every_order_rule_type(
    store: LedgerStore, setup: tuple[OrderEarnings, Activities, str]
) -> None:
    orders, _, merchant_id = setup
    in_window, after = WINDOW[0] + timedelta(hours=10), WINDOW[1] + timedelta(hours=1)
    # O1 online 30.00 in the weekend: spend 30 x 1 x 2 = 60; 1st punch; goal at 30.
    assert await orders.record(merchant_id, order(1, "30.00", pos=False, placed=in_window))
    assert await awards(store, merchant_id, 1) == [("spend", 60)]
    # O2 POS 10.00 after it: under spend's minimum; POS bonus 15; 2nd punch; goal at 40.
    assert await orders.record(merchant_id, order(2, "10.00", pos=True, placed=after))
    assert await awards(store, merchant_id, 2) == [("pos-bonus", 15)]
    # O3 online 70.00: spend 70; 3rd punch: 50; goal 30 + 10 + 70 = 110 >= 100: 25.
    o3 = order(3, "70.00", pos=False, placed=after)
    assert await orders.record(merchant_id, o3)
    assert await awards(store, merchant_id, 3) == [("spend", 70), ("punch", 50), ("goal", 25)]
    assert not await orders.record(merchant_id, o3)  # redelivered: nothing again
    # O4 POS 25.00 the same day: spend 25; the POS bonus's 1 a day is used; the punch card
    # starts again (1st); the goal was met within its 30 days.
    assert await orders.record(merchant_id, order(4, "25.00", pos=True, placed=after))
    assert await awards(store, merchant_id, 4) == [("spend", 25)]

    balance = await store.get_balance(merchant_id, "7")
    assert balance.balance == 60 + 15 + 145 + 25
    history = await store.list_transactions(merchant_id, "7", limit=10, before_sequence=None)
    assert [(t.reason, t.points, t.rule_id) for t in history] == [
        ("order:4", 25, "spend"),
        ("order:3", 145, "spend,punch,goal"),
        ("order:2", 15, "pos-bonus"),
        ("order:1", 60, "spend"),
    ]


async def test_no_place_order_rule_keeps_the_base_rate(store: LedgerStore) -> None:
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    ledger = Ledger(store, None)
    programs = ProgramCopies(ledger, cache_seconds=0)
    settings = default_program()
    settings.version = 1
    settings.points_per_currency_unit = "1.5"
    settings.pending_period.FromTimedelta(timedelta(0))
    assert await programs.save(merchant_id, settings)
    orders = OrderEarnings(ledger, programs, clock=lambda: NOW)
    # 33.00 x 1.5 = 49.5, rounded down: 49 under the rule id "order".
    assert await orders.record(merchant_id, order(9, "33.00", pos=False, placed=NOW))
    assert await awards(store, merchant_id, 9) == [("order", 49)]
    [credit] = await store.list_transactions(merchant_id, "7", limit=1, before_sequence=None)
    assert (credit.type, credit.points, credit.rule_id) == (TransactionType.EARN, 49, "order")


async def test_custom_activity_once_per_occurrence_within_its_limit(
    store: LedgerStore, setup: tuple[OrderEarnings, Activities, str]
) -> None:
    _, activities, merchant_id = setup
    first = await activities.record(merchant_id, "8", "product_review", "review-1")
    assert [(r.rule_id, r.status, r.points) for r in first] == [
        ("review", ActivityStatus.AWARDED, 20)
    ]
    again = await activities.record(merchant_id, "8", "product_review", "review-1")
    assert [(r.status, r.points) for r in again] == [(ActivityStatus.DUPLICATE, 20)]
    assert again[0].transaction == first[0].transaction
    second = await activities.record(merchant_id, "8", "product_review", "review-2")
    assert [r.status for r in second] == [ActivityStatus.AWARDED]
    third = await activities.record(merchant_id, "8", "product_review", "review-3")
    assert [(r.status, r.points) for r in third] == [(ActivityStatus.LIMIT_REACHED, 0)]
    assert await activities.record(merchant_id, "8", "newsletter", "n-1") == []  # no rule
    balance = await store.get_balance(merchant_id, "8")
    assert balance.balance == 40
    history = await store.list_transactions(merchant_id, "8", limit=5, before_sequence=None)
    assert {(t.reason, t.rule_id) for t in history} == {("activity:product_review", "review")}
