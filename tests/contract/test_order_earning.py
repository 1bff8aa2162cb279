"""Earning from orders on every LedgerStore: the order records and the whole flow
(`OrderEarnings` with a controllable clock) from a recorded order to the ledger."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from loyalnest.gen.events.v1 import core_pb2, gateway_pb2
from loyalnest.gen.events.v1 import points_pb2 as events_pb2
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import BatchHandler
from loyalnest.platform.idempotency import IdempotencyKey, IdempotencyKeyReused
from loyalnest.platform.program_settings import default_program
from loyalnest.services.points import consumers
from loyalnest.services.points.domain import LedgerNotFound, Posting, TransactionType
from loyalnest.services.points.earning import (
    OrderEarnings,
    ProgramCopies,
    month_start,
    order_credit,
)
from loyalnest.services.points.ledger import Ledger
from loyalnest.services.points.orders import OrderAdjustment, OrderEarning, OrderStatus
from loyalnest.services.points.store.base import LedgerStore, OrderCredit
from loyalnest.services.points.store.postgres import PostgresLedgerStore
from tests.consumed_events import consumed

from .test_ledger_events import outbox

START = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def order(order_id: str, customer: str | None, *lines: tuple[str, int, str]) -> dict[str, Any]:
    return {
        "id": int(order_id),
        "currency": "EUR",
        "customer": None if customer is None else {"id": int(customer)},
        "line_items": [
            {"id": i, "product_id": int(product), "quantity": quantity, "price": price}
            for i, (product, quantity, price) in enumerate(lines)
        ],
    }


def refund(refund_id: str, order_id: str, subtotal: str) -> dict[str, Any]:
    return {
        "id": int(refund_id),
        "order_id": int(order_id),
        "refund_line_items": [{"quantity": 1, "subtotal": subtotal}],
    }


def program(
    *, days: int = 14, version: int = 1, orders_limit: int = 0, enabled: bool = True
) -> core_pb2.ProgramSettings:
    settings = default_program(
        core_pb2.PlanLimits(plan="free", orders_per_month_limit=orders_limit)
    )
    settings.version = version
    settings.program_enabled = enabled
    settings.pending_period.FromTimedelta(timedelta(days=days))
    return settings


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def earnings(store: LedgerStore, clock: Clock) -> OrderEarnings:
    ledger = Ledger(store, None)
    return OrderEarnings(ledger, ProgramCopies(ledger, cache_seconds=0), clock=clock)


def new_ids() -> tuple[str, str]:
    return str(uuid.uuid4().int % 10**12), str(uuid.uuid4().int % 10**12)


async def balance(store: LedgerStore, merchant_id: str, customer: str) -> int | None:
    try:
        return (await store.get_balance(merchant_id, customer)).balance
    except LedgerNotFound:
        return None


async def save(store: LedgerStore, merchant_id: str, settings: core_pb2.ProgramSettings) -> bool:
    return await store.save_program_settings(
        merchant_id, settings.version, settings.SerializeToString()
    )


# ---- the store's records --------------------------------------------------------------


async def test_program_copy_keeps_the_newest_version(store: LedgerStore, merchant_id: str) -> None:
    assert await store.program_settings(merchant_id) is None
    assert await save(store, merchant_id, program(version=2, days=3))
    assert not await save(store, merchant_id, program(version=1, days=9))
    assert not await save(store, merchant_id, program(version=2, days=9))
    raw = await store.program_settings(merchant_id)
    assert raw is not None
    assert core_pb2.ProgramSettings.FromString(raw).pending_period.ToTimedelta().days == 3
    assert await save(store, merchant_id, program(version=3, days=1))


def earning(merchant_id: str, order_id: str, points: int = 100) -> OrderEarning:
    return OrderEarning(
        merchant_id=merchant_id,
        order_id=order_id,
        customer_id="42",
        points=points,
        eligible_amount=Decimal("100.50"),
        currency="EUR",
        status=OrderStatus.PENDING,
        approve_at=START + timedelta(days=14),
        created_at=START,
        settings_version=1,
    )


async def test_an_order_is_recorded_once(store: LedgerStore, merchant_id: str) -> None:
    first = earning(merchant_id, "1001")
    assert await store.record_order(first) == (first, True)
    again = earning(merchant_id, "1001", points=999)
    assert await store.record_order(again) == (first, False)
    assert await store.count_orders(merchant_id, START) == 1
    assert await store.count_orders(merchant_id, START + timedelta(seconds=1)) == 0


async def test_orders_are_per_merchant(store: LedgerStore, merchant_id: str) -> None:
    other = f"other-{uuid.uuid4().hex[:8]}"
    await store.record_order(earning(merchant_id, "1010"))
    assert await store.order_settlement(other, "1010") is None
    cancel = OrderAdjustment("cancelled", 1, "cancelled")
    assert await store.add_order_adjustment(other, "1010", cancel) is None
    mine, inserted = await store.record_order(earning(other, "1010", points=5))
    assert inserted and mine.points == 5
    theirs = await store.order_settlement(merchant_id, "1010")
    assert theirs is not None and theirs.earning.points == 100


async def test_adjustments_are_capped_and_recorded_once(
    store: LedgerStore, merchant_id: str
) -> None:
    await store.record_order(earning(merchant_id, "1002", points=100))
    half = await store.add_order_adjustment(
        merchant_id, "1002", OrderAdjustment("refund:1", 60, "refunded")
    )
    assert half == OrderAdjustment("refund:1", 60, "refunded")
    repeated = await store.add_order_adjustment(
        merchant_id, "1002", OrderAdjustment("refund:1", 10, "refunded")
    )
    assert repeated == half
    rest = await store.add_order_adjustment(
        merchant_id, "1002", OrderAdjustment("cancelled", 100, "cancelled")
    )
    assert rest == OrderAdjustment("cancelled", 40, "cancelled")
    unknown = await store.add_order_adjustment(
        merchant_id, "9999", OrderAdjustment("cancelled", 1, "cancelled")
    )
    assert unknown is None


async def test_concurrent_adjustments_never_take_more_than_the_order(
    store: LedgerStore, merchant_id: str
) -> None:
    await store.record_order(earning(merchant_id, "1003", points=100))
    taken = await asyncio.gather(
        *(
            store.add_order_adjustment(
                merchant_id, "1003", OrderAdjustment(f"refund:{i}", 30, "refunded")
            )
            for i in range(8)
        )
    )
    assert sum(a.points for a in taken if a is not None) == 100


async def test_approval_fixes_the_credit_and_applies_earlier_adjustments(
    store: LedgerStore, merchant_id: str
) -> None:
    await store.record_order(earning(merchant_id, "1004", points=100))
    await store.add_order_adjustment(
        merchant_id, "1004", OrderAdjustment("refund:1", 25, "refunded")
    )
    assert await store.orders_to_settle(START, 10) == []
    due = await store.orders_to_settle(START + timedelta(days=14), 10)
    assert [s.earning.order_id for s in due if s.earning.merchant_id == merchant_id] == ["1004"]
    approving = await store.begin_order_approval(merchant_id, "1004")
    assert approving is not None
    assert approving.earning.status is OrderStatus.APPROVING
    assert approving.earning.approved_points == 75
    assert approving.unapplied == []
    assert approving.taken_back == 25
    assert await store.approve_order(merchant_id, "1004", None) is None
    await store.add_order_adjustment(merchant_id, "1004", OrderAdjustment("cancelled", 99, "x"))
    settlement = await store.order_settlement(merchant_id, "1004")
    assert settlement is not None
    assert settlement.earning.status is OrderStatus.APPROVED
    assert settlement.unapplied == [OrderAdjustment("cancelled", 75, "x")]
    await store.mark_adjustment_applied(merchant_id, "1004", "cancelled")
    settled = await store.order_settlement(merchant_id, "1004")
    assert settled is not None and settled.unapplied == []


# ---- the flow ---------------------------------------------------------------------------


async def test_an_order_earns_after_its_pending_period(
    store: LedgerStore, merchant_id: str, earnings: OrderEarnings, clock: Clock
) -> None:
    order_id, customer = new_ids()
    await save(store, merchant_id, program(days=14))
    assert await earnings.record(merchant_id, order(order_id, customer, ("7", 2, "10.50")))
    assert await balance(store, merchant_id, customer) is None  # pending: not spendable
    clock.advance(timedelta(days=13))
    await earnings.settle_due()
    assert await balance(store, merchant_id, customer) is None
    clock.advance(timedelta(days=1))
    await earnings.settle_due()
    assert await balance(store, merchant_id, customer) == 21
    await earnings.settle_due()  # nothing left to do
    history = await store.list_transactions(merchant_id, customer, limit=10, before_sequence=None)
    assert [(t.points, t.reason) for t in history] == [(21, f"order:{order_id}")]


async def test_every_delivery_and_topic_of_one_order_credits_once(
    store: LedgerStore, merchant_id: str, earnings: OrderEarnings, clock: Clock
) -> None:
    order_id, customer = new_ids()
    await save(store, merchant_id, program(days=0))
    payload = order(order_id, customer, ("7", 1, "30"))
    results = await asyncio.gather(*(earnings.record(merchant_id, payload) for _ in range(5)))
    assert results.count(True) == 1
    await earnings.settle_due()
    assert await balance(store, merchant_id, customer) == 30


async def test_refund_while_pending_reduces_the_credit(
    store: LedgerStore, merchant_id: str, earnings: OrderEarnings, clock: Clock
) -> None:
    order_id, customer = new_ids()
    await save(store, merchant_id, program(days=14))
    await earnings.record(merchant_id, order(order_id, customer, ("1", 1, "60"), ("2", 1, "40")))
    await earnings.take_back(merchant_id, order_id, refund("501", order_id, "40"))
    await earnings.take_back(merchant_id, order_id, refund("501", order_id, "40"))  # redelivery
    clock.advance(timedelta(days=14))
    await earnings.settle_due()
    assert await balance(store, merchant_id, customer) == 60


async def test_refund_and_cancellation_after_approval_reverse(
    store: LedgerStore, merchant_id: str, earnings: OrderEarnings, clock: Clock
) -> None:
    order_id, customer = new_ids()
    await save(store, merchant_id, program(days=0))
    await earnings.record(merchant_id, order(order_id, customer, ("1", 4, "25")))
    assert await balance(store, merchant_id, customer) == 100
    await earnings.take_back(merchant_id, order_id, refund("601", order_id, "25"))
    await earnings.take_back(merchant_id, order_id, refund("601", order_id, "25"))
    assert await balance(store, merchant_id, customer) == 75
    await earnings.take_back(merchant_id, order_id, None)  # orders/cancelled
    assert await balance(store, merchant_id, customer) == 0
    history = await store.list_transactions(merchant_id, customer, limit=10, before_sequence=None)
    assert [(t.points, t.reason) for t in history] == [
        (-75, f"order:{order_id}:cancelled"),
        (-25, f"order:{order_id}:refunded"),
        (100, f"order:{order_id}"),
    ]
    left = await store.orders_to_settle(clock.now, 1000)
    assert all(s.earning.order_id != order_id for s in left)


async def test_a_reversal_takes_back_only_what_is_left(
    store: LedgerStore, merchant_id: str, earnings: OrderEarnings
) -> None:
    order_id, customer = new_ids()
    await save(store, merchant_id, program(days=0))
    await earnings.record(merchant_id, order(order_id, customer, ("1", 1, "50")))
    spend = Posting(merchant_id, customer, TransactionType.REDEEM, -40, "reward")
    await store.post(spend, IdempotencyKey(key=str(uuid.uuid4()), fingerprint="f"))
    await earnings.take_back(merchant_id, order_id, None)
    assert await balance(store, merchant_id, customer) == 0
    settlement = await store.order_settlement(merchant_id, order_id)
    assert settlement is not None and settlement.unapplied == []


async def test_guest_orders_and_disabled_programs_earn_nothing(
    store: LedgerStore, merchant_id: str, earnings: OrderEarnings
) -> None:
    order_id, customer = new_ids()
    await save(store, merchant_id, program(days=0, enabled=False))
    await earnings.record(merchant_id, order(order_id, None, ("1", 1, "50")))
    assert await store.order_settlement(merchant_id, order_id) is None
    await earnings.record(merchant_id, order(order_id, customer, ("1", 1, "50")))
    settlement = await store.order_settlement(merchant_id, order_id)
    assert settlement is not None
    assert settlement.earning.status is OrderStatus.NOT_EARNING
    assert settlement.earning.note == "program_disabled"
    assert await balance(store, merchant_id, customer) is None


async def test_orders_over_the_monthly_plan_limit_earn_nothing(
    store: LedgerStore, merchant_id: str, earnings: OrderEarnings, clock: Clock
) -> None:
    await save(store, merchant_id, program(days=0, orders_limit=2))
    customer = new_ids()[1]
    outcomes = []
    for n in range(3):
        order_id = str(700 + n)
        await earnings.record(merchant_id, order(order_id, customer, ("1", 1, "10")))
        settlement = await store.order_settlement(merchant_id, order_id)
        assert settlement is not None
        outcomes.append((settlement.earning.status, settlement.earning.note))
    assert outcomes[2] == (OrderStatus.NOT_EARNING, "over_plan_limit")
    assert await balance(store, merchant_id, customer) == 20
    clock.now = month_start(clock.now) + timedelta(days=40)  # next month: the limit resets
    await earnings.record(merchant_id, order("703", customer, ("1", 1, "10")))
    assert await balance(store, merchant_id, customer) == 30


# ---- approval folded into the credit's transaction (issue 15) -------------------------


def credit_of(earning: OrderEarning, points: int | None = None) -> OrderCredit:
    """The order's credit as OrderEarnings posts it (`points`: another amount, same key)."""
    credit = order_credit(earning)
    assert credit is not None
    _, key = credit
    if points is None:
        return credit
    other = Posting(earning.merchant_id, earning.customer_id, TransactionType.EARN, points, "x")
    return other, IdempotencyKey.internal(key.key, earning.customer_id, points)


def approved(merchant_id: str, order_id: str, points: int = 100) -> OrderEarning:
    return dataclasses.replace(
        earning(merchant_id, order_id, points),
        customer_id=new_ids()[1],
        status=OrderStatus.APPROVED,
        approve_at=START,
        approved_points=points,
    )


async def status_of(store: LedgerStore, merchant_id: str, order_id: str) -> OrderStatus | None:
    settlement = await store.order_settlement(merchant_id, order_id)
    return None if settlement is None else settlement.earning.status


async def test_an_order_approved_on_arrival_is_recorded_with_its_credit_once(
    store: LedgerStore, merchant_id: str
) -> None:
    first = approved(merchant_id, "2001")
    stored, inserted, result = await store.record_approved_order(first, credit_of(first))
    assert (stored, inserted) == (first, True)
    assert result is not None and not result.replayed
    assert result.balance.balance == 100
    again = dataclasses.replace(first, points=7, approved_points=7)
    assert await store.record_approved_order(again, credit_of(again)) == (first, False, None)
    assert await balance(store, merchant_id, first.customer_id) == 100
    assert await status_of(store, merchant_id, "2001") is OrderStatus.APPROVED
    left = await store.orders_to_settle(START + timedelta(days=1), 1000)
    assert all(s.earning.order_id != "2001" for s in left if s.earning.merchant_id == merchant_id)
    # An order earning nothing is recorded APPROVED without a posting.
    nothing = approved(merchant_id, "2002", points=0)
    assert await store.record_approved_order(nothing, None) == (nothing, True, None)
    assert await balance(store, merchant_id, nothing.customer_id) is None


async def test_concurrent_deliveries_of_an_order_approved_on_arrival_credit_it_once(
    store: LedgerStore, merchant_id: str
) -> None:
    order = approved(merchant_id, "2004")
    answers = await asyncio.gather(
        *(store.record_approved_order(order, credit_of(order)) for _ in range(5))
    )
    assert sorted(inserted for _, inserted, _ in answers) == [False] * 4 + [True]
    credited = [result for _, inserted, result in answers if inserted]
    assert credited[0] is not None and credited[0].balance.balance == 100
    assert await balance(store, merchant_id, order.customer_id) == 100
    history = await store.list_transactions(
        merchant_id, order.customer_id, limit=10, before_sequence=None
    )
    assert [(t.points, t.sequence, t.balance_after) for t in history] == [(100, 1, 100)]
    assert await status_of(store, merchant_id, "2004") is OrderStatus.APPROVED


async def test_a_failed_credit_records_no_approved_order(
    store: LedgerStore, merchant_id: str, request: pytest.FixtureRequest
) -> None:
    """The credit fails (its key was used for another amount): no order APPROVED without
    its credit. With transactions nothing is written; without them (a standalone MongoDB)
    the order was recorded APPROVING first, for the settlement loop."""
    order = approved(merchant_id, "2003")
    await store.post(*credit_of(order, points=5))
    with pytest.raises(IdempotencyKeyReused):
        await store.record_approved_order(order, credit_of(order))
    without_transactions = "no-transactions" in request.node.callspec.id
    expected = OrderStatus.APPROVING if without_transactions else None
    assert await status_of(store, merchant_id, "2003") is expected
    assert await balance(store, merchant_id, order.customer_id) == 5


async def test_an_interrupted_approval_is_finished_by_the_settlement_loop(
    store: LedgerStore, merchant_id: str, earnings: OrderEarnings, clock: Clock
) -> None:
    await save(store, merchant_id, program(days=14))
    # Interrupted after begin_order_approval (APPROVING, nothing credited).
    order_id, customer = new_ids()
    await earnings.record(merchant_id, order(order_id, customer, ("1", 1, "40")))
    clock.advance(timedelta(days=14))
    assert await store.begin_order_approval(merchant_id, order_id) is not None
    # Interrupted after the credit, before the status (a release before this change, or
    # MongoDB without transactions): the key replays, the order is approved, no second credit.
    late_id, late_customer = new_ids()
    await earnings.record(merchant_id, order(late_id, late_customer, ("1", 1, "30")))
    settlement = await store.begin_order_approval(merchant_id, late_id)
    assert settlement is not None
    await store.post(*credit_of(settlement.earning))
    assert await balance(store, merchant_id, late_customer) == 30
    await earnings.settle_due()
    assert await balance(store, merchant_id, customer) == 40
    assert await balance(store, merchant_id, late_customer) == 30
    assert await status_of(store, merchant_id, order_id) is OrderStatus.APPROVED
    assert await status_of(store, merchant_id, late_id) is OrderStatus.APPROVED
    for who in (customer, late_customer):
        history = await store.list_transactions(merchant_id, who, limit=10, before_sequence=None)
        assert len(history) == 1


async def test_an_order_whose_credit_key_was_used_is_left_to_the_settlement_loop(
    store: LedgerStore, merchant_id: str, earnings: OrderEarnings, clock: Clock
) -> None:
    await save(store, merchant_id, program(days=0))
    order_id, customer = new_ids()
    reused = IdempotencyKey.internal(f"order:{order_id}", customer, 999)
    await store.post(Posting(merchant_id, customer, TransactionType.EARN, 999, "x"), reused)
    # Recorded (True; False without transactions, where the order went in before the credit).
    await earnings.record(merchant_id, order(order_id, customer, ("1", 1, "50")))
    assert await status_of(store, merchant_id, order_id) is OrderStatus.APPROVING
    assert await balance(store, merchant_id, customer) == 999  # never credited twice
    assert not await earnings.record(merchant_id, order(order_id, customer, ("1", 1, "50")))
    # It cannot settle, and does not hold back the orders behind it (oldest first).
    await save(store, merchant_id, program(days=1, version=2))
    later_id, later_customer = new_ids()
    await earnings.record(merchant_id, order(later_id, later_customer, ("1", 1, "20")))
    clock.advance(timedelta(days=1))
    await earnings.settle_due()
    assert await balance(store, merchant_id, later_customer) == 20
    assert await status_of(store, merchant_id, order_id) is OrderStatus.APPROVING
    assert await balance(store, merchant_id, customer) == 999


# ---- a partition's batch of orders (OrderEarnings.record_many; set-wise on PostgreSQL) ------


async def test_a_batch_of_orders_approved_on_arrival_credits_each_once(
    store: LedgerStore, merchant_id: str, earnings: OrderEarnings
) -> None:
    await save(store, merchant_id, program(days=0))
    first, second, third = (new_ids()[0] for _ in range(3))
    alice, bob = new_ids()
    batch = [
        (merchant_id, order(first, alice, ("1", 1, "40"))),
        (merchant_id, order(second, bob, ("1", 2, "15"))),
        (merchant_id, order(third, alice, ("1", 1, "25"))),  # alice again: her second credit
        (merchant_id, order(first, alice, ("1", 1, "40"))),  # orders/paid of the first order
        (merchant_id, order(new_ids()[0], None, ("1", 1, "99"))),  # a guest checkout
    ]
    assert await earnings.record_many(batch) == [True, True, True, False, True]
    assert await balance(store, merchant_id, alice) == 65
    assert await balance(store, merchant_id, bob) == 30
    history = await store.list_transactions(merchant_id, alice, limit=10, before_sequence=None)
    assert sorted((t.sequence, t.points, t.balance_after, t.reason) for t in history) == [
        (1, 40, 40, f"order:{first}"),
        (2, 25, 65, f"order:{third}"),
    ]
    for order_id in (first, second, third):
        assert await status_of(store, merchant_id, order_id) is OrderStatus.APPROVED
    # The batch delivered again (a consumer's redelivery): nothing new.
    assert await earnings.record_many(batch) == [False, False, False, False, True]
    assert await balance(store, merchant_id, alice) == 65
    assert await balance(store, merchant_id, bob) == 30


async def test_a_batch_announces_each_credit_once_in_the_ledgers_order(
    store: LedgerStore, merchant_id: str, earnings: OrderEarnings
) -> None:
    await save(store, merchant_id, program(days=0))
    customer = new_ids()[1]
    order_ids = [new_ids()[0] for _ in range(3)]
    await earnings.record_many(
        [(merchant_id, order(o, customer, ("1", 1, "10"))) for o in order_ids]
    )
    earned = [e for _, key, e in await outbox(store) if key == f"{merchant_id}/{customer}"]
    assert [e.event_type for e in earned] == ["points.earned"] * 3
    sequences = []
    for envelope in earned:
        payload = events_pb2.PointsEarned()
        assert envelope.payload.Unpack(payload)
        sequences.append((payload.sequence, payload.reason, payload.balance_after))
    assert sequences == [(n + 1, f"order:{o}", 10 * (n + 1)) for n, o in enumerate(order_ids)]


async def test_a_batch_with_an_order_whose_credit_key_was_used_credits_the_others(
    store: LedgerStore, merchant_id: str, earnings: OrderEarnings
) -> None:
    await save(store, merchant_id, program(days=0))
    reused_id, customer = new_ids()
    reused = IdempotencyKey.internal(f"order:{reused_id}", customer, 999)
    await store.post(Posting(merchant_id, customer, TransactionType.EARN, 999, "x"), reused)
    others = [new_ids() for _ in range(2)]
    batch = [(merchant_id, order(o, c, ("1", 1, "20"))) for o, c in others]
    batch.insert(1, (merchant_id, order(reused_id, customer, ("1", 1, "50"))))
    await earnings.record_many(batch)
    assert await status_of(store, merchant_id, reused_id) is OrderStatus.APPROVING
    assert await balance(store, merchant_id, customer) == 999  # never credited twice
    for order_id, other in others:
        assert await balance(store, merchant_id, other) == 20
        assert await status_of(store, merchant_id, order_id) is OrderStatus.APPROVED


async def test_a_batch_counts_its_own_orders_against_the_plan_limit(
    store: LedgerStore, merchant_id: str, earnings: OrderEarnings
) -> None:
    await save(store, merchant_id, program(days=0, orders_limit=2))
    batch = [new_ids() for _ in range(3)]
    await earnings.record_many([(merchant_id, order(o, c, ("1", 1, "10"))) for o, c in batch])
    statuses = [await status_of(store, merchant_id, o) for o, _ in batch]
    assert statuses == [OrderStatus.APPROVED, OrderStatus.APPROVED, OrderStatus.NOT_EARNING]
    assert [await balance(store, merchant_id, c) for _, c in batch] == [10, 10, None]


async def test_the_store_answers_a_batch_of_new_orders_or_leaves_them_to_the_usual_path(
    store: LedgerStore, merchant_id: str
) -> None:
    """PostgreSQL records new orders set-wise (every answer given); a store without a
    set-wise path (MongoDB) answers None for each, and record_approved_order records them."""
    orders = [approved(merchant_id, new_ids()[0]) for _ in range(3)]
    answers = await store.record_approved_orders([(o, credit_of(o)) for o in orders])
    if isinstance(store, PostgresLedgerStore):
        assert [(stored, inserted) for stored, inserted, _ in filter(None, answers)] == [
            (o, True) for o in orders
        ]
        assert [a[2].balance.balance for a in answers if a and a[2]] == [100] * 3
        # Recorded before: left to record_approved_order, which reads the stored order.
        assert await store.record_approved_orders([(orders[0], credit_of(orders[0]))]) == [None]
    else:
        assert answers == [None] * 3
        assert [await balance(store, merchant_id, o.customer_id) for o in orders] == [None] * 3


def webhook(merchant_id: str, topic: str, body: dict[str, Any]) -> ConsumedEvent:
    """A `webhook.received` as Points' consumer gets it (the JSON body of payload version 1)."""
    payload = gateway_pb2.WebhookReceived(
        topic=topic, webhook_id=uuid.uuid4().hex, body=json.dumps(body).encode()
    )
    return consumed(merchant_id, payload)


async def test_the_webhook_consumer_applies_a_batch_in_order_refunds_after_their_orders(
    store: LedgerStore, merchant_id: str, earnings: OrderEarnings
) -> None:
    await save(store, merchant_id, program(days=0))
    handler = consumers.handlers(store, earnings.programs, earnings)["webhook.received"]
    assert isinstance(handler, BatchHandler)
    (first, customer), (second, other) = new_ids(), new_ids()
    batch = [
        webhook(merchant_id, "orders/create", order(first, customer, ("1", 1, "40"))),
        webhook(merchant_id, "refunds/create", refund(new_ids()[0], first, "10")),
        webhook(merchant_id, "orders/create", order(second, other, ("1", 1, "30"))),
        webhook(merchant_id, "orders/paid", order(first, customer, ("1", 1, "40"))),
    ]
    results = await handler.apply_many(
        [(event, handler) for event in batch], lambda event: contextlib.nullcontext()
    )
    assert results == [True, True, True, False]
    # The refund took back its share of a credit recorded before it, not of nothing.
    assert await balance(store, merchant_id, customer) == 30
    assert await balance(store, merchant_id, other) == 30
