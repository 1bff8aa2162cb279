"""The liability summary table on every ledger store (store/postgres_liability.py,
store/mongo_liability.py): each ledger event's movement added once however often it is
delivered, the outstanding total equal to the sum of the balances, the merchant's erasure
taking its row along; MongoDB without transactions keeps no table (LIABILITY_UNSUPPORTED).

    c1 +100 +50 redeem -120 +30 (60); c2 +200 adjust -20 expire -100 (80); c3 +40 reversal -5
    (35): outstanding 175 = earned 420 - redeemed 120 - expired 100 - 20 - 5; 9 events.
"""

from __future__ import annotations

import contextlib
import uuid

import pytest

from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import BatchHandler
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.services.points.domain import Posting, TransactionType
from loyalnest.services.points.events import ledger_event
from loyalnest.services.points.liability import LedgerTotals, LiabilityUnsupported
from loyalnest.services.points.service import PointsSettings, backfill_liability
from loyalnest.services.points.store.base import LedgerStore
from loyalnest.services.points.store.mongo import MongoLedgerStore
from loyalnest.services.points.store.mongo_liability import MongoLiabilityTable
from loyalnest.services.points.store.postgres import PostgresLedgerStore
from loyalnest.services.points.store.postgres_liability import PostgresLiabilityTable
from tests.consumed_events import consumed

pytestmark = pytest.mark.integration

HISTORY = [
    ("c1", TransactionType.EARN, 100),
    ("c1", TransactionType.EARN, 50),
    ("c1", TransactionType.REDEEM, -120),
    ("c1", TransactionType.EARN, 30),
    ("c2", TransactionType.EARN, 200),
    ("c2", TransactionType.ADJUST, -20),
    ("c2", TransactionType.EXPIRE, -100),
    ("c3", TransactionType.EARN, 40),
    ("c3", TransactionType.REVERSAL, -5),
]


def table_of(store: LedgerStore) -> PostgresLiabilityTable | MongoLiabilityTable:
    if isinstance(store, PostgresLedgerStore):
        return PostgresLiabilityTable(store._database)
    assert isinstance(store, MongoLedgerStore)
    return MongoLiabilityTable(store)


async def ledger_events(store: LedgerStore, merchant: str) -> list[ConsumedEvent]:
    """The fixture posted, and each posting's event as the consumer receives it."""
    events = []
    for i, (customer, kind, points) in enumerate(HISTORY):
        posting = Posting(merchant, customer, kind, points, f"fixture {i}")
        result = await store.post(posting, IdempotencyKey.internal(f"f:{i}", customer))
        events.append(consumed(merchant, ledger_event(result.transaction), offset=i))
    return events


async def test_each_event_counts_once(store: LedgerStore) -> None:
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    table = table_of(store)
    handle = table.handler()
    events = await ledger_events(store, merchant)
    if isinstance(store, MongoLedgerStore) and not await store.uses_transactions():
        assert [await handle(e) for e in events] == [False] * len(events)
        with pytest.raises(LiabilityUnsupported):
            await table.totals(merchant)
        return
    assert await table.totals(merchant) == LedgerTotals()
    assert [await handle(e) for e in events] == [True] * len(events)
    # Redelivered, in another order: nothing more.
    assert [await handle(e) for e in reversed(events)] == [False] * len(events)
    totals = await table.totals(merchant)
    assert (totals.outstanding, totals.earned, totals.redeemed) == (175, 420, 120)
    assert (totals.expired, totals.adjusted, totals.reversed, totals.events) == (100, -20, -5, 9)
    assert totals.updated_at is not None
    balances = [(await store.get_balance(merchant, c)).balance for c in ("c1", "c2", "c3")]
    assert balances == [60, 80, 35] and sum(balances) == totals.outstanding

    await store.erase_merchant(merchant)
    assert await table.totals(merchant) == LedgerTotals()


async def test_the_backfill_counts_each_transaction_once_beside_the_consumer(
    postgres_store: PostgresLedgerStore,
) -> None:
    """A ledger written before the table (no event consumed): the backfill counts it, again
    nothing; its events consumed afterwards add nothing; a later transaction's event does."""
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    table = PostgresLiabilityTable(postgres_store._database)
    handle = table.handler()
    events = await ledger_events(postgres_store, merchant)
    assert await table.backfill(merchant) == (1, len(HISTORY))
    totals = await table.totals(merchant)
    assert (totals.outstanding, totals.earned, totals.redeemed, totals.events) == (175, 420, 120, 9)
    assert (totals.expired, totals.adjusted, totals.reversed) == (100, -20, -5)
    assert await table.backfill(merchant) == (0, 0)
    for event in events:  # delivered late: the inbox records them, the table keeps its count
        await handle(event)
    assert await table.totals(merchant) == totals

    later = Posting(merchant, "c3", TransactionType.EARN, 7, "later")
    result = await postgres_store.post(later, IdempotencyKey.internal("later", "c3"))
    assert await handle(consumed(merchant, ledger_event(result.transaction), offset=99))
    after = await table.totals(merchant)
    assert (after.outstanding, after.earned, after.events) == (182, 427, 10)
    assert await table.backfill(merchant) == (0, 0)
    assert await table.totals(merchant) == after


async def test_a_run_of_events_is_counted_in_one_statement_each_event_once(
    postgres_store: PostgresLedgerStore,
) -> None:
    """A partition's run (apply_many): two merchants' events, one delivered twice in the run,
    a third merchant's already counted by the backfill. Each counts once, as one by one."""
    merchants = [f"m-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    table = PostgresLiabilityTable(postgres_store._database)
    handler = table.handler()
    first, second, backfilled = [await ledger_events(postgres_store, m) for m in merchants]
    assert await table.backfill(merchants[2]) == (1, len(HISTORY))
    run = [*first, *second, first[3], *backfilled]

    def as_run(events: list[ConsumedEvent]) -> list[tuple[ConsumedEvent, BatchHandler]]:
        return [(event, handler) for event in events]

    applied = await handler.apply_many(as_run(run), lambda event: contextlib.nullcontext())
    # The repeat is a duplicate; the backfilled merchant's events are recorded, not re-added.
    assert applied == [True] * (2 * len(HISTORY)) + [False] + [True] * len(HISTORY)
    for merchant in merchants:
        totals = await table.totals(merchant)
        assert (totals.outstanding, totals.earned, totals.redeemed) == (175, 420, 120)
        assert (totals.expired, totals.adjusted, totals.reversed, totals.events) == (
            100,
            -20,
            -5,
            9,
        )
    # Redelivered, as a run and one by one: nothing more.
    before = [await table.totals(m) for m in merchants]
    assert await handler.apply_many(as_run(run), lambda event: contextlib.nullcontext()) == [
        False
    ] * len(run)
    assert [await handler(event) for event in first] == [False] * len(first)
    assert [await table.totals(m) for m in merchants] == before


async def test_the_backfill_job(postgres_store: PostgresLedgerStore, database_url: str) -> None:
    """`loyalnest points liability-backfill`: every merchant of the database, once."""
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    await ledger_events(postgres_store, merchant)
    settings = PointsSettings(database_url=database_url)
    assert await backfill_liability(settings) == (1, len(HISTORY))
    assert await backfill_liability(settings) == (0, 0)
    totals = await PostgresLiabilityTable(postgres_store._database).totals(merchant)
    assert (totals.outstanding, totals.events) == (175, 9)
