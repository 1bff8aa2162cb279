"""Client idempotency keys never collide with the keys a service derives for its own writes
(issue 14, finding 3), on every LedgerStore: one test per internal key family, each first
letting a client claim, as its idempotency_key, exactly the text of that family's key.

Also the migration of keys stored before namespaces (points_0004 in PostgreSQL, the
index migration of the MongoDB store): the service's own keys move, a client's stay.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from pymongo import ASCENDING

from loyalnest.gen.points.v1 import points_pb2
from loyalnest.platform.idempotency import INTERNAL, REQUEST, IdempotencyKey
from loyalnest.services.points.domain import Posting, TransactionType
from loyalnest.services.points.earning import OrderEarnings, ProgramCopies
from loyalnest.services.points.ledger import Ledger
from loyalnest.services.points.offline_sync import item_key, sync
from loyalnest.services.points.rewards import refund_key
from loyalnest.services.points.service import DATABASE
from loyalnest.services.points.store.base import LedgerStore
from loyalnest.services.points.store.mongo import IDEMPOTENCY_KEYS
from loyalnest.services.points.store.postgres import PostgresLedgerStore

from .conftest import MongoStoreFactory
from .test_ledger_store import earn, history
from .test_order_earning import Clock, balance, new_ids, order, program, save

EarningsOf = Callable[[LedgerStore], OrderEarnings]


@pytest.fixture
def earnings_of() -> EarningsOf:
    def build(store: LedgerStore) -> OrderEarnings:
        ledger = Ledger(store, None)
        return OrderEarnings(ledger, ProgramCopies(ledger, cache_seconds=0), clock=Clock())

    return build


@pytest.fixture
def earnings(store: LedgerStore, earnings_of: EarningsOf) -> OrderEarnings:
    return earnings_of(store)


async def test_a_client_key_named_like_an_order_credit_does_not_block_it(
    store: LedgerStore, merchant_id: str, earnings: OrderEarnings
) -> None:
    order_id, customer = new_ids()
    await earn(store, merchant_id, customer, 5, key=f"order:{order_id}", reason="promo")
    await save(store, merchant_id, program(days=0))
    await earnings.record(merchant_id, order(order_id, customer, ("7", 1, "30")))
    await earnings.settle_due()
    assert await balance(store, merchant_id, customer) == 35
    assert await history(store, merchant_id, customer) == [30, 5]


async def test_a_client_key_named_like_an_order_reversal_does_not_block_it(
    store: LedgerStore, merchant_id: str, earnings: OrderEarnings
) -> None:
    order_id, customer = new_ids()
    await save(store, merchant_id, program(days=0))
    await earnings.record(merchant_id, order(order_id, customer, ("7", 1, "30")))
    await earn(store, merchant_id, customer, 5, key=f"order:{order_id}:cancelled")
    await earnings.take_back(merchant_id, order_id, None)  # orders/cancelled
    assert await balance(store, merchant_id, customer) == 5
    assert await history(store, merchant_id, customer) == [-30, 5, 30]


async def test_a_client_key_named_like_a_reward_refund_does_not_take_its_place(
    store: LedgerStore, merchant_id: str
) -> None:
    customer, redemption_id = f"c-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    refund = refund_key(redemption_id)
    await earn(store, merchant_id, customer, 5, key=refund.key)
    posting = Posting(merchant_id, customer, TransactionType.REVERSAL, 40, "refund")
    result = await store.post(posting, refund)
    assert not result.replayed
    assert (await store.post(posting, refund)).replayed  # still once per redemption
    assert await history(store, merchant_id, customer) == [40, 5]


async def test_a_client_key_named_like_a_pos_offline_item_does_not_take_its_place(
    store: LedgerStore, merchant_id: str
) -> None:
    customer, client_id = f"c-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await earn(store, merchant_id, customer, 5, key=client_id)
    await earn(store, merchant_id, customer, 6, key=f"pos-offline:{client_id}")
    item = points_pb2.OfflineTransaction(
        client_transaction_id=client_id,
        customer_id=customer,
        kind=points_pb2.OFFLINE_TRANSACTION_KIND_EARN,
        points=7,
    )
    item.device_time.GetCurrentTime()
    request = points_pb2.SyncOfflineTransactionsRequest(device_id="till-1", transactions=[item])
    response = await sync(Ledger(store, None), merchant_id, request)
    assert [r.status for r in response.results] == [points_pb2.OFFLINE_SYNC_STATUS_APPLIED]
    assert await history(store, merchant_id, customer) == [7, 6, 5]


def test_every_internal_family_is_out_of_the_clients_namespace() -> None:
    """The request namespace is the only one a client's idempotency_key reaches."""
    item = points_pb2.OfflineTransaction(client_transaction_id="x")
    for own in (
        IdempotencyKey.internal("order:1", "c", 1),
        IdempotencyKey.internal("order:1:cancelled", "c", 1),
        refund_key("r"),
        item_key(item),
    ):
        assert own.namespace != REQUEST


# ---- keys stored before namespaces ----------------------------------------------------


async def _legacy_rows(
    store: LedgerStore, merchant_id: str, earnings: OrderEarnings
) -> dict[str, Any]:
    """Postings of every family; returns what each one's legacy key row must become."""
    order_id, customer = new_ids()
    await save(store, merchant_id, program(days=0))
    await earnings.record(merchant_id, order(order_id, customer, ("7", 2, "50")))
    await earnings.take_back(merchant_id, order_id, None)
    await earn(store, merchant_id, customer, 9, key=f"order:{int(order_id) + 1}")  # a client's
    refund = refund_key(str(uuid.uuid4()))
    await store.post(Posting(merchant_id, customer, TransactionType.REVERSAL, 3, "r"), refund)
    item = points_pb2.OfflineTransaction(
        client_transaction_id="till-tx-1",
        customer_id=customer,
        kind=points_pb2.OFFLINE_TRANSACTION_KIND_EARN,
        points=2,
    )
    item.device_time.GetCurrentTime()
    await sync(
        Ledger(store, None),
        merchant_id,
        points_pb2.SyncOfflineTransactionsRequest(device_id="till-1", transactions=[item]),
    )
    return {
        # legacy key -> (namespace, key) after the migration
        f"order:{order_id}": (INTERNAL, f"order:{order_id}"),
        f"order:{order_id}:cancelled": (INTERNAL, f"order:{order_id}:cancelled"),
        f"order:{int(order_id) + 1}": (REQUEST, f"order:{int(order_id) + 1}"),
        refund.key: (INTERNAL, refund.key),
        "pos-offline:till-tx-1": ("pos-offline", "till-tx-1"),
    }


async def test_postgres_migration_moves_only_the_services_own_keys(
    postgres_store: PostgresLedgerStore, merchant_id: str, earnings_of: EarningsOf
) -> None:
    expected = await _legacy_rows(postgres_store, merchant_id, earnings_of(postgres_store))
    pool = postgres_store._pool
    async with pool.connection() as conn:
        # Back to how rows were stored before namespaces, then the migration again.
        await conn.execute(
            "UPDATE idempotency_keys SET namespace = 'request', idempotency_key ="
            " CASE WHEN namespace = 'pos-offline' THEN 'pos-offline:' || idempotency_key"
            " ELSE idempotency_key END WHERE merchant_id = %s",
            (merchant_id,),
        )
        migration = DATABASE.migration_dirs[-1] / "points_0004_idempotency_namespaces.sql"
        await conn.execute(migration.read_text().encode())
        cursor = await conn.execute(
            "SELECT namespace, idempotency_key FROM idempotency_keys WHERE merchant_id = %s",
            (merchant_id,),
        )
        rows = set(await cursor.fetchall())
    assert rows == set(expected.values())


async def test_mongo_migration_moves_only_the_services_own_keys(
    mongo_store_factory: MongoStoreFactory, merchant_id: str, earnings_of: EarningsOf
) -> None:
    store = await mongo_store_factory()
    expected = await _legacy_rows(store, merchant_id, earnings_of(store))
    keys = store.database[IDEMPOTENCY_KEYS]

    def downgrade() -> None:
        for doc in keys.find({"merchant_id": merchant_id}):
            legacy = ("pos-offline:" if doc["namespace"] == "pos-offline" else "") + doc[
                "idempotency_key"
            ]
            keys.update_one(
                {"_id": doc["_id"]},
                {"$set": {"idempotency_key": legacy}, "$unset": {"namespace": ""}},
            )
        keys.create_index(
            [("merchant_id", ASCENDING), ("idempotency_key", ASCENDING)],
            unique=True,
            name="merchant_key_unique",
        )

    await asyncio.to_thread(downgrade)
    restarted = await mongo_store_factory()
    docs = await asyncio.to_thread(lambda: list(keys.find({"merchant_id": merchant_id})))
    assert {(d["namespace"], d["idempotency_key"]) for d in docs} == set(expected.values())
    indexes = await asyncio.to_thread(keys.index_information)
    assert "merchant_key_unique" not in indexes
    # A second start finds nothing left to migrate.
    await restarted.ensure_indexes()
