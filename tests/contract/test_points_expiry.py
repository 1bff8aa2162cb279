"""Points expiry on every LedgerStore: FIFO across earned lots, an `expire` transaction of its
own type, the expiring-soon figure, idempotent reruns, a race with a redemption, and the
points.expiring notice once per expiry. Lots are dated by the store's own clock; the job's
clock is set from the transactions' times, so every figure is computed by hand below."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.gen.events.v1 import points_pb2 as points_events
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.program_settings import default_program
from loyalnest.services.points.domain import (
    Expiring,
    LedgerMoved,
    Posting,
    Transaction,
    TransactionType,
)
from loyalnest.services.points.earning import ProgramCopies
from loyalnest.services.points.events import expiring_event
from loyalnest.services.points.expiry import ExpiryPolicy, PointsExpiry, upcoming
from loyalnest.services.points.ledger import Ledger
from loyalnest.services.points.store.base import LedgerStore, ledger_history
from loyalnest.services.points.store.postgres import PostgresLedgerStore

DAY = timedelta(days=1)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def program(days: int, mode: int, notice_days: int, version: int = 1) -> core_pb2.ProgramSettings:
    settings = default_program()
    settings.version = version
    settings.points_expiry_days = days
    settings.points_expiry_mode = mode  # type: ignore[assignment]
    settings.points_expiry_notice_days = notice_days
    return settings


async def post(
    ledger: Ledger, merchant: str, customer: str, kind: TransactionType, points: int
) -> Transaction:
    posting = Posting(merchant, customer, kind, points, f"{kind} {points}")
    result = await ledger.post(posting, IdempotencyKey.internal(str(uuid.uuid4())))
    # Lots a few milliseconds apart: MongoDB keeps milliseconds.
    await asyncio.sleep(0.02)
    return result.transaction


async def expiry_for(
    store: LedgerStore, merchant: str, settings: core_pb2.ProgramSettings
) -> tuple[Ledger, PointsExpiry, Clock]:
    ledger = Ledger(store, None)
    programs = ProgramCopies(ledger, cache_seconds=0)
    assert await programs.save(merchant, settings)
    clock = Clock()
    return ledger, PointsExpiry(ledger, programs, clock=clock), clock


async def test_expiry_after_earned_takes_lots_fifo_once(store: LedgerStore) -> None:
    merchant, customer = f"m-{uuid.uuid4().hex[:8]}", "c-1"
    ledger, expiry, clock = await expiry_for(
        store, merchant, program(30, core_pb2.POINTS_EXPIRY_MODE_AFTER_EARNED, 7)
    )
    a = await post(ledger, merchant, customer, TransactionType.EARN, 100)
    b = await post(ledger, merchant, customer, TransactionType.EARN, 50)
    # The redemption consumes the oldest lot first: A 100 -> 70, B stays 50.
    await post(ledger, merchant, customer, TransactionType.REDEEM, -30)

    clock.now = a.created_at + 23 * DAY  # A expires in 7 days: within the notice period
    assert await expiry.expiring(merchant, customer) == Expiring(70, a.created_at + 30 * DAY)
    report = await expiry.run()
    assert (report.expired_points, report.notices) == (0, 1)  # notice of A's 70
    assert (await expiry.run()).notices == 0  # once per expiry time

    clock.now = a.created_at + 30 * DAY  # A's 70 are due; B's 50 are 30 days less ms away
    report = await expiry.run()
    assert (report.expired_points, report.expired_customers, report.notices) == (70, 1, 1)
    balance = await store.get_balance(merchant, customer)
    # Expiry is neither a redemption nor an un-earning: the lifetime totals stay.
    assert (balance.balance, balance.lifetime_earned, balance.lifetime_redeemed) == (50, 150, 30)
    [last, *_] = await store.list_transactions(merchant, customer, limit=1, before_sequence=None)
    assert (last.type, last.points, last.balance_after, last.reason) == (
        TransactionType.EXPIRE,
        -70,
        50,
        "expired: 30 days after earned",
    )
    assert await expiry.expiring(merchant, customer) == Expiring(50, b.created_at + 30 * DAY)

    rerun = await expiry.run()  # idempotent: nothing more is due
    assert (rerun.expired_points, rerun.notices) == (0, 0)
    assert (await store.get_balance(merchant, customer)).balance == 50

    clock.now = b.created_at + 30 * DAY
    assert (await expiry.run()).expired_points == 50
    assert (await store.get_balance(merchant, customer)).balance == 0
    assert await expiry.expiring(merchant, customer) is None


async def test_customers_at_the_same_sequence_each_expire(store: LedgerStore) -> None:
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    ledger, expiry, clock = await expiry_for(
        store, merchant, program(30, core_pb2.POINTS_EXPIRY_MODE_AFTER_EARNED, 0)
    )
    # Two customers, one earn each: both ledgers at sequence 1 when their lots expire.
    first = await post(ledger, merchant, "c-1", TransactionType.EARN, 40)
    await post(ledger, merchant, "c-2", TransactionType.EARN, 60)
    clock.now = first.created_at + 31 * DAY
    report = await expiry.run()
    assert (report.expired_points, report.expired_customers, report.skipped) == (100, 2, 0)
    assert [(await store.get_balance(merchant, c)).balance for c in ("c-1", "c-2")] == [0, 0]


async def test_expiry_after_inactivity_takes_the_whole_balance(store: LedgerStore) -> None:
    merchant, customer = f"m-{uuid.uuid4().hex[:8]}", "c-2"
    ledger, expiry, clock = await expiry_for(
        store, merchant, program(10, core_pb2.POINTS_EXPIRY_MODE_AFTER_INACTIVITY, 3)
    )
    await post(ledger, merchant, customer, TransactionType.EARN, 40)
    # A merchant's adjustment is not the customer's activity: the redemption is the last.
    redeemed = await post(ledger, merchant, customer, TransactionType.REDEEM, -10)
    await post(ledger, merchant, customer, TransactionType.ADJUST, 5)

    clock.now = redeemed.created_at + 10 * DAY - timedelta(seconds=1)
    assert (await expiry.run()).expired_points == 0
    # 40 - 10 + 5 = 35, all expiring with the inactivity period.
    assert await expiry.expiring(merchant, customer) == Expiring(35, redeemed.created_at + 10 * DAY)
    clock.now = redeemed.created_at + 10 * DAY
    assert (await expiry.run()).expired_points == 35
    last = (await store.list_transactions(merchant, customer, limit=1, before_sequence=None))[0]
    assert (last.type, last.points, last.reason) == (
        TransactionType.EXPIRE,
        -35,
        "expired: 10 days without activity",
    )


async def test_no_expiry_without_days_and_for_other_merchants(store: LedgerStore) -> None:
    merchant, other = f"m-{uuid.uuid4().hex[:8]}", f"m-{uuid.uuid4().hex[:8]}"
    ledger, expiry, clock = await expiry_for(
        store, merchant, program(0, core_pb2.POINTS_EXPIRY_MODE_AFTER_EARNED, 7)
    )
    await post(ledger, merchant, "c-3", TransactionType.EARN, 10)
    await post(ledger, other, "c-3", TransactionType.EARN, 10)  # no program copy: defaults
    clock.now += 10_000 * DAY
    await expiry.run()
    assert (await store.get_balance(merchant, "c-3")).balance == 10
    assert (await store.get_balance(other, "c-3")).balance == 10
    assert await expiry.expiring(merchant, "c-3") is None


async def test_a_posting_conditional_on_an_old_sequence_changes_nothing(
    store: LedgerStore,
) -> None:
    merchant, customer = f"m-{uuid.uuid4().hex[:8]}", "c-4"
    ledger = Ledger(store, None)
    earned = await post(ledger, merchant, customer, TransactionType.EARN, 20)
    await post(ledger, merchant, customer, TransactionType.REDEEM, -5)
    stale = Posting(
        merchant,
        customer,
        TransactionType.EXPIRE,
        -20,
        "expired",
        expected_sequence=earned.sequence,  # the redemption came after it
    )
    key = IdempotencyKey.internal(f"expire:{earned.sequence}", customer, 20)
    with pytest.raises(LedgerMoved):
        await ledger.post(stale, key)
    assert (await store.get_balance(merchant, customer)).balance == 15
    # The key was not consumed by the refusal: a correct posting with it still applies.
    fresh = Posting(merchant, customer, TransactionType.EXPIRE, -15, "expired", 2)
    result = await ledger.post(fresh, IdempotencyKey.internal("expire:2", customer, 15))
    assert result.balance.balance == 0


async def test_expiry_notice_is_recorded_once(store: LedgerStore) -> None:
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    at = datetime(2027, 1, 1, tzinfo=UTC)
    event = expiring_event("c-5", 12, at, 40)
    assert isinstance(event, points_events.PointsExpiring)
    assert await store.record_expiry_notice(merchant, "c-5", at, event)
    assert not await store.record_expiry_notice(merchant, "c-5", at, event)
    assert await store.record_expiry_notice(merchant, "c-5", at + DAY, event)
    assert await store.record_expiry_notice(merchant, "c-6", at, event)


@pytest.mark.parametrize(
    "mode", [core_pb2.POINTS_EXPIRY_MODE_AFTER_EARNED, core_pb2.POINTS_EXPIRY_MODE_AFTER_INACTIVITY]
)
async def test_the_balance_reads_only_recent_history_and_agrees_with_the_whole(
    store: LedgerStore, mode: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages of 3: the newest-first walk crosses pages and stops part-way in most cases.
    monkeypatch.setattr("loyalnest.services.points.expiry.RECENT_PAGE", 3)
    merchant, customer = f"m-{uuid.uuid4().hex[:8]}", "c-r"
    ledger, expiry, clock = await expiry_for(store, merchant, program(1, mode, 1))
    rng = random.Random(mode)
    posted: list[Transaction] = []
    balance = 0
    for _ in range(24):
        kind = rng.choice(
            [TransactionType.EARN] * 3 + [TransactionType.REDEEM, TransactionType.ADJUST]
        )
        if kind is TransactionType.EARN:
            points = rng.randrange(1, 50)
        elif kind is TransactionType.REDEEM:
            if balance == 0:
                continue
            points = -rng.randrange(1, balance + 1)
        else:
            points = rng.choice([-1, 1]) * rng.randrange(1, 20)
            if balance + points < 0:
                points = -points
        posted.append(await post(ledger, merchant, customer, kind, points))
        balance = posted[-1].balance_after
    policy = ExpiryPolicy.of(program(1, mode, 1))
    whole = await ledger_history(store, merchant, customer)
    for t in [posted[0], *rng.sample(posted, 8), posted[-1]]:
        for now in (t.created_at + DAY - timedelta(milliseconds=1), t.created_at + DAY):
            clock.now = now
            assert await expiry.expiring(merchant, customer) == upcoming(whole, policy, now)


async def test_the_job_reads_every_customer_whose_points_may_expire(store: LedgerStore) -> None:
    """expiry_candidates may return more than needed (MongoDB: everyone with points), never
    less: each customer with an old lot still open is among them."""
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    ledger = Ledger(store, None)
    old = [("a", 100), ("c", 100), ("d", 100), ("e", 30)]
    for customer, points in old:
        await post(ledger, merchant, customer, TransactionType.EARN, points)
    await post(ledger, merchant, "c", TransactionType.REDEEM, -60)  # c's old lot: 40 left
    await post(ledger, merchant, "d", TransactionType.REDEEM, -100)  # d's old lot: spent
    await post(ledger, merchant, "e", TransactionType.REDEEM, -30)  # e: no points left
    await asyncio.sleep(0.05)
    cutoff = datetime.now(UTC)
    await asyncio.sleep(0.05)
    for customer in ("a", "c", "d", "b"):
        await post(ledger, merchant, customer, TransactionType.EARN, 50)
    # After earned: a (100 old + 50), c (40 old + 50) have old lots open; d's and b's are new.
    last, found = await store.expiry_candidates(merchant, "", 10, cutoff, False)
    assert last == ""
    assert {"a", "c"} <= set(found) and "e" not in found
    # Pages: 2 customers with points each (a, b | c, d), the last page not full.
    last, first_page = await store.expiry_candidates(merchant, "", 2, cutoff, False)
    assert last == "b" and "a" in first_page
    last, second_page = await store.expiry_candidates(merchant, "b", 2, cutoff, False)
    assert last == "d" and "c" in second_page
    assert await store.expiry_candidates(merchant, "d", 2, cutoff, False) == ("", [])
    if isinstance(store, PostgresLedgerStore):  # the exact answer, no superset
        assert found == ["a", "c"]
        # After inactivity: all four earned after the cutoff, so none is due.
        assert (await store.expiry_candidates(merchant, "", 10, cutoff, True))[1] == []
    # ... and with a cutoff after everything, all four are.
    everyone = (await store.expiry_candidates(merchant, "", 10, datetime.now(UTC), True))[1]
    assert set(everyone) == {"a", "b", "c", "d"}
