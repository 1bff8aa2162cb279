"""The ledger's events: each posting enqueues exactly one event with it, atomically, and the
user.created consumer opens a ledger once per event. Runs against every store (conftest.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from loyalnest.gen.events.v1 import envelope_pb2, users_pb2
from loyalnest.gen.events.v1 import points_pb2 as events_pb2
from loyalnest.platform.events.envelope import ConsumedEvent, decode, new_event
from loyalnest.services.points.domain import InsufficientPoints, LedgerNotFound
from loyalnest.services.points.store.base import LedgerStore
from loyalnest.services.points.store.mongo import MongoLedgerStore
from loyalnest.services.points.store.postgres import PostgresLedgerStore

from .test_ledger_store import adjust, earn, new_customer, new_key, redeem


async def outbox(store: LedgerStore) -> list[tuple[str, str, envelope_pb2.Envelope]]:
    """(topic, partition key, envelope) of every outbox entry, oldest first."""
    if isinstance(store, PostgresLedgerStore):
        async with store._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT topic, partition_key, envelope FROM outbox ORDER BY id"
            )
            rows: list[Any] = await cursor.fetchall()
    else:
        assert isinstance(store, MongoLedgerStore)
        docs = store._outbox.find().sort("created_at", 1)
        rows = [(d["topic"], d["partition_key"], d["envelope"]) for d in docs]
    return [(t, k, envelope_pb2.Envelope.FromString(bytes(v))) for t, k, v in rows]


async def test_each_posting_enqueues_its_event(store: LedgerStore, merchant_id: str) -> None:
    customer = new_customer()
    earned = await earn(store, merchant_id, customer, 100, reason="order #7")
    redeemed = await redeem(store, merchant_id, customer, 30)
    adjusted = await adjust(store, merchant_id, customer, -5, reason="typo")

    entries = await outbox(store)
    assert [e.event_type for _, _, e in entries] == [
        "points.earned",
        "points.redeemed",
        "points.adjusted",
    ]
    assert {(topic, key) for topic, key, _ in entries} == {
        ("loyalnest.points.events", f"{merchant_id}/{customer}")
    }
    first, second, third = (e for _, _, e in entries)
    assert first.merchant_id == merchant_id and first.producer == "points"
    payload = events_pb2.PointsEarned()
    assert first.payload.Unpack(payload)
    assert payload == events_pb2.PointsEarned(
        customer_id=customer,
        transaction_id=earned.transaction.transaction_id,
        sequence=1,
        points=100,
        balance_after=100,
        lifetime_earned_after=100,
        reason="order #7",
    )
    assert first.occurred_at.ToDatetime().timestamp() == pytest.approx(
        earned.transaction.created_at.timestamp(), abs=0.001
    )
    redemption = events_pb2.PointsRedeemed()
    assert second.payload.Unpack(redemption)
    assert (redemption.points, redemption.balance_after, redemption.sequence) == (30, 70, 2)
    assert redemption.transaction_id == redeemed.transaction.transaction_id
    adjustment = events_pb2.PointsAdjusted()
    assert third.payload.Unpack(adjustment)
    assert (adjustment.points, adjustment.balance_after, adjustment.reason) == (-5, 65, "typo")
    assert adjustment.transaction_id == adjusted.transaction.transaction_id
    assert len({e.event_id for _, _, e in entries}) == 3


async def test_replays_and_refusals_enqueue_nothing(store: LedgerStore, merchant_id: str) -> None:
    customer, key = new_customer(), new_key()
    await earn(store, merchant_id, customer, 10, key=key)
    await earn(store, merchant_id, customer, 10, key=key)  # replay: first result, no event
    with pytest.raises(InsufficientPoints):
        await redeem(store, merchant_id, customer, 11)
    with pytest.raises(LedgerNotFound):
        await redeem(store, merchant_id, new_customer(), 1)
    assert [e.event_type for _, _, e in await outbox(store)] == ["points.earned"]


@dataclass
class Record:
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    topic: str = "loyalnest.users.events"
    partition: int = 0
    offset: int = 0
    key: bytes | None = None


def user_created(merchant_id: str, user_id: str, group: str = "loyalnest.points") -> ConsumedEvent:
    event = new_event(
        merchant_id, users_pb2.UserCreated(user_id=user_id, kind=users_pb2.USER_KIND_CUSTOMER)
    )
    return decode(Record(event.value), group)


async def test_open_ledger_once_per_event(store: LedgerStore, merchant_id: str) -> None:
    customer = new_customer()
    event = user_created(merchant_id, customer)
    assert await store.open_ledger(merchant_id, customer, event=event) is True
    assert await store.open_ledger(merchant_id, customer, event=event) is False
    balance = await store.get_balance(merchant_id, customer)
    assert (balance.balance, balance.lifetime_earned, balance.lifetime_redeemed) == (0, 0, 0)
    # A second user.created for the same customer (another event) leaves the ledger alone.
    await earn(store, merchant_id, customer, 40)
    assert await store.open_ledger(merchant_id, customer, event=user_created(merchant_id, customer))
    assert (await store.get_balance(merchant_id, customer)).balance == 40
    assert (await earn(store, merchant_id, customer, 1)).transaction.sequence == 2


async def test_each_consumer_group_applies_an_event_once(
    store: LedgerStore, merchant_id: str
) -> None:
    customer = new_customer()
    event = user_created(merchant_id, customer, group="first")
    other_group = decode(Record(event.envelope.SerializeToString()), "second")
    assert await store.open_ledger(merchant_id, customer, event=event)
    assert await store.open_ledger(merchant_id, customer, event=other_group)
