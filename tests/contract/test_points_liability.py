"""The liability's set-based FIFO (store/postgres_liability.py) against expiry.open_lots, the
transaction-by-transaction FIFO expiry uses, on random ledgers; MongoDB's clean refusal; and
what simulation replays of an order (weighted amount, channel) kept by every store."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.services.points.domain import Posting, TransactionType
from loyalnest.services.points.expiry import open_lots
from loyalnest.services.points.liability import LiabilityUnsupported
from loyalnest.services.points.orders import OrderEarning, OrderStatus
from loyalnest.services.points.store.base import LedgerStore, ledger_history
from loyalnest.services.points.store.mongo import MongoLedgerStore
from loyalnest.services.points.store.postgres import PostgresLedgerStore

_DEBITS = (TransactionType.REDEEM, TransactionType.EXPIRE, TransactionType.ADJUST)


def _consumed_by_type(points: list[tuple[TransactionType, int]]) -> dict[str, int]:
    """FIFO by hand: which debit type consumed how much of the credits."""
    lots: list[int] = []
    taken = {"redeem": 0, "expire": 0, "other": 0}
    for kind, amount in points:
        if amount > 0:
            lots.append(amount)
            continue
        owed = -amount
        while owed:
            bite = min(lots[0], owed)
            lots[0] -= bite
            owed -= bite
            key = str(kind) if kind in (TransactionType.REDEEM, TransactionType.EXPIRE) else "other"
            taken[key] += bite
            if not lots[0]:
                lots.pop(0)
    return taken


async def test_set_based_fifo_matches_open_lots(postgres_store: PostgresLedgerStore) -> None:
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    rng = random.Random(21)
    expected = {"redeem": 0, "expire": 0, "other": 0}
    earned = 0
    for c in range(12):
        customer, balance = f"c{c}", 0
        moves: list[tuple[TransactionType, int]] = []
        for i in range(rng.randint(1, 25)):
            if balance and rng.random() < 0.45:
                kind, amount = rng.choice(_DEBITS), -rng.randint(1, balance)
            else:
                kind, amount = TransactionType.EARN, rng.randint(1, 300)
            moves.append((kind, amount))
            balance += amount
            await postgres_store.post(
                Posting(merchant, customer, kind, amount, "random"),
                IdempotencyKey.internal(f"r:{c}:{i}", customer),
            )
        earned += sum(a for _, a in moves if a > 0)
        for key, value in _consumed_by_type(moves).items():
            expected[key] += value

    now = datetime.now(UTC) + timedelta(seconds=1)
    figures = await postgres_store.liability(merchant, now, 0)  # every lot in the cohort
    lots_left = 0
    for c in range(12):
        lots_left += sum(
            lot.points for lot in open_lots(await ledger_history(postgres_store, merchant, f"c{c}"))
        )
    assert figures.outstanding == lots_left
    assert [b.key for b in figures.by_age] == ["0-30"]  # all earned just now
    b = figures.breakage
    assert (b.earned, b.outstanding) == (earned, lots_left)
    assert (b.redeemed, b.expired, b.taken_back) == (
        expected["redeem"],
        expected["expire"],
        expected["other"],
    )
    assert b.earned == b.redeemed + b.expired + b.taken_back + b.outstanding


async def test_mongo_refuses_liability_cleanly(mongo_store: MongoLedgerStore) -> None:
    with pytest.raises(LiabilityUnsupported) as refused:
        await mongo_store.liability("m", datetime.now(UTC), 365)
    assert refused.value.violation_type == "LIABILITY_UNSUPPORTED"


async def test_orders_since_keep_what_simulation_replays(store: LedgerStore) -> None:
    merchant, now = f"m-{uuid.uuid4().hex[:8]}", datetime.now(UTC).replace(microsecond=0)

    def earning(order_id: str, days: int, status: OrderStatus, **kw: object) -> OrderEarning:
        at = now - timedelta(days=days)
        return OrderEarning(
            merchant_id=merchant, order_id=order_id, customer_id="c", points=5,
            eligible_amount=Decimal("5.00"), currency="USD", status=status, approve_at=at,
            created_at=at, settings_version=1, awards="order:5", **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    await store.record_order(earning("old", 40, OrderStatus.APPROVED))
    await store.record_order(earning("late", 1, OrderStatus.PENDING))
    await store.record_order(
        earning("pos", 2, OrderStatus.APPROVED, weighted_amount=Decimal("10.00"), pos=True)
    )
    await store.record_order(earning("over", 3, OrderStatus.NOT_EARNING))
    orders = await store.orders_since(merchant, now - timedelta(days=30), 10)
    assert [(o.order_id, o.weighted_amount, o.pos) for o in orders] == [
        ("pos", Decimal("10.00"), True),
        ("late", None, False),
    ]
