"""The personal-data part of the LedgerStore contract (loyalnest.platform.personal_data), on
PostgreSQL and MongoDB: a customer's export holds their ledger and history; an erasure moves
them to an id that names nobody, amounts and history kept, and repeats as a no-op; a
merchant's erasure leaves nothing of it and nothing of another merchant goes."""

from __future__ import annotations

from loyalnest.platform.personal_data import CustomerRef
from loyalnest.services.points.domain import LedgerNotFound
from loyalnest.services.points.store.base import ERASED_PREFIX, LedgerStore

from .test_ledger_store import earn, history, new_customer, redeem


async def test_export_then_erase_keeps_amounts_without_identity(
    store: LedgerStore, merchant_id: str
) -> None:
    customer, other = new_customer(), new_customer()
    await earn(store, merchant_id, customer, 100, reason="order #1")
    await redeem(store, merchant_id, customer, 30)
    await earn(store, merchant_id, other, 5)

    export = await store.export_customer(merchant_id, CustomerRef(customer))
    assert export.data["ledger"]["balance"] == 70
    assert [t["points"] for t in export.data["transactions"]] == [100, -30]
    assert await store.export_customer(merchant_id, CustomerRef("nobody")) == type(export)({})

    assert await store.erase_customer(merchant_id, CustomerRef(customer)) > 0
    try:
        await store.get_balance(merchant_id, customer)
        raise AssertionError("the customer's ledger is still under their id")
    except LedgerNotFound:
        pass
    assert (await store.export_customer(merchant_id, CustomerRef(customer))).data == {}
    assert await store.erase_customer(merchant_id, CustomerRef(customer)) == 0  # a repeat
    assert (await store.get_balance(merchant_id, other)).balance == 5  # others untouched

    # The ledger and its history live on under one anonymous id.
    erased = [
        balance.customer_id
        for balance in [
            await store.get_balance(merchant_id, c)
            for c in await _customers(store, merchant_id)
            if c.startswith(ERASED_PREFIX)
        ]
    ]
    (anonymous,) = erased
    assert (await store.get_balance(merchant_id, anonymous)).balance == 70
    assert await history(store, merchant_id, anonymous) == [-30, 100]


async def test_erase_merchant_leaves_nothing_of_it(store: LedgerStore, merchant_id: str) -> None:
    customer = new_customer()
    await earn(store, merchant_id, customer, 10)
    await earn(store, f"other-{merchant_id}", customer, 7)
    assert await store.erase_merchant(merchant_id) > 0
    assert await _customers(store, merchant_id) == []
    assert await store.erase_merchant(merchant_id) == 0
    assert (await store.get_balance(f"other-{merchant_id}", customer)).balance == 7


async def _customers(store: LedgerStore, merchant_id: str) -> list[str]:
    """The merchant's ledger ids (through the export of each: the stores have no list)."""
    from loyalnest.services.points.store.mongo import BALANCES, MongoLedgerStore
    from loyalnest.services.points.store.postgres import PostgresLedgerStore

    if isinstance(store, PostgresLedgerStore):
        async with store._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT customer_id FROM ledgers WHERE merchant_id = %s", (merchant_id,)
            )
            return [row[0] for row in await cursor.fetchall()]
    assert isinstance(store, MongoLedgerStore)
    documents = store.database[BALANCES].find({"merchant_id": merchant_id})
    return [document["customer_id"] for document in documents]
