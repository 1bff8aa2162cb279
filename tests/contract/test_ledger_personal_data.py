"""The personal-data part of the LedgerStore contract (loyalnest.platform.personal_data), on
PostgreSQL and MongoDB: a customer's export holds their ledger and history; an erasure moves
them to an id that names nobody, amounts and history kept, and repeats as a no-op; a
merchant's erasure leaves nothing of it and nothing of another merchant goes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.personal_data import CustomerRef
from loyalnest.services.points.domain import LedgerNotFound, Posting, TierState, TransactionType
from loyalnest.services.points.events import expiring_event
from loyalnest.services.points.rules import RuleEvent
from loyalnest.services.points.store.base import (
    CUSTOMER_TABLES,
    ERASED_PREFIX,
    MERCHANT_TABLES,
    LedgerStore,
)

from .test_ledger_store import earn, history, new_customer, redeem

AT = datetime(2026, 11, 1, 12, tzinfo=UTC)


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


async def test_erase_moves_tier_rule_decisions_and_expiry_notices_off_the_identity(
    store: LedgerStore, merchant_id: str
) -> None:
    customer, other = new_customer(), new_customer()
    await earn(store, merchant_id, customer, 40)
    await earn(store, merchant_id, other, 40)
    events = [
        RuleEvent("r-orders", "order-1", 25, Decimal("50.00"), AT),
        RuleEvent("r-punch", "order-1", 0, Decimal("50.00"), AT),
        RuleEvent("r-orders", "order-2", 15, Decimal("30.00"), AT + timedelta(days=1)),
    ]
    tier = TierState("gold", 40, AT + timedelta(days=365), AT)
    expire_at = AT + timedelta(days=90)
    for who in (customer, other):
        await store.record_rule_events(merchant_id, who, events)
        assert await store.save_tier(merchant_id, who, None, tier, None)
        event = expiring_event(who, 40, expire_at, 40)
        assert await store.record_expiry_notice(merchant_id, who, expire_at, event)

    export = (await store.export_customer(merchant_id, CustomerRef(customer))).data
    assert export["tier"]["tier_id"] == "gold"
    assert [(e["rule_id"], e["points"]) for e in export["rule_events"]] == [
        ("r-orders", 25),
        ("r-punch", 0),
        ("r-orders", 15),
    ]
    assert len(export["expiry_notices"]) == 1

    assert await store.erase_customer(merchant_id, CustomerRef(customer)) > 0
    assert await _rows_naming(store, merchant_id, customer) == {}
    assert await store.erase_customer(merchant_id, CustomerRef(customer)) == 0
    since = {"r-orders": AT - timedelta(days=1), "r-punch": AT - timedelta(days=1)}
    assert await store.rule_events(merchant_id, customer, since) == {"r-orders": [], "r-punch": []}
    assert await store.customer_tier(merchant_id, customer) is None

    # The tier and the rule decisions live on with the ledger, under its anonymous id, so the
    # points they gave still add up; the other customer keeps everything.
    (anonymous,) = [c for c in await _customers(store, merchant_id) if c.startswith(ERASED_PREFIX)]
    moved = await store.rule_events(merchant_id, anonymous, since)
    assert sum(e.points for e in moved["r-orders"]) == 40
    assert len(moved["r-punch"]) == 1
    moved_tier = await store.customer_tier(merchant_id, anonymous)
    assert moved_tier is not None and moved_tier.tier_id == "gold"
    # The notice moved too: the expiry job does not notify the anonymous ledger again.
    again = expiring_event(anonymous, 40, expire_at, 40)
    assert not await store.record_expiry_notice(merchant_id, anonymous, expire_at, again)
    kept = await store.rule_events(merchant_id, other, since)
    assert sum(e.points for e in kept["r-orders"]) == 40
    assert await store.customer_tier(merchant_id, other) is not None

    assert await store.erase_merchant(merchant_id) > 0
    assert await _rows_naming(store, merchant_id, anonymous) == {}
    assert await _rows_naming(store, merchant_id, other) == {}


async def test_erase_forgets_the_internal_keys_naming_the_customer(
    store: LedgerStore, merchant_id: str
) -> None:
    """Keys a service derives (`rule:<rule>:<customer>:<year>`, `expire:<customer>:<n>`)
    would keep the Shopify id after the ledger moved off it; another customer's stay."""
    customer, other = new_customer(), new_customer()
    for who in (customer, other):
        for derived in (f"rule:birthday:{who}:2026", f"expire:{who}:7", f"tier-entry:gold:{who}"):
            posting = Posting(merchant_id, who, TransactionType.EARN, 5, derived)
            await store.post(posting, IdempotencyKey.internal(derived, who))
    assert await _internal_keys_naming(store, merchant_id, customer) == 3

    assert await store.erase_customer(merchant_id, CustomerRef(customer)) > 0
    assert await _internal_keys_naming(store, merchant_id, customer) == 0
    assert await _internal_keys_naming(store, merchant_id, other) == 3


async def _internal_keys_naming(store: LedgerStore, merchant_id: str, customer_id: str) -> int:
    from loyalnest.services.points.store.mongo import IDEMPOTENCY_KEYS, MongoLedgerStore
    from loyalnest.services.points.store.postgres import PostgresLedgerStore

    if isinstance(store, PostgresLedgerStore):
        async with store._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM idempotency_keys WHERE merchant_id = %s"
                " AND namespace = 'internal' AND idempotency_key LIKE %s",
                (merchant_id, f"%{customer_id}%"),
            )
            row = await cursor.fetchone()
            return int(row[0]) if row else 0
    assert isinstance(store, MongoLedgerStore)
    return int(
        store.database[IDEMPOTENCY_KEYS].count_documents(
            {
                "merchant_id": merchant_id,
                "namespace": "internal",
                "idempotency_key": {"$regex": re.escape(customer_id)},
            }
        )
    )


async def test_erase_merchant_leaves_nothing_of_it(store: LedgerStore, merchant_id: str) -> None:
    customer = new_customer()
    await earn(store, merchant_id, customer, 10)
    await earn(store, f"other-{merchant_id}", customer, 7)
    # Its program copy too (on MongoDB keyed by the merchant alone: once missed there).
    for merchant in (merchant_id, f"other-{merchant_id}"):
        assert await store.save_program_settings(merchant, 1, b"settings")
    assert await store.erase_merchant(merchant_id) > 0
    assert await _customers(store, merchant_id) == []
    assert await store.program_settings(merchant_id) is None
    assert await store.erase_merchant(merchant_id) == 0
    assert (await store.get_balance(f"other-{merchant_id}", customer)).balance == 7
    assert await store.program_settings(f"other-{merchant_id}") == b"settings"


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


async def _rows_naming(store: LedgerStore, merchant_id: str, customer_id: str) -> dict[str, int]:
    """Per table (collection), the merchant's rows that still carry `customer_id`, in a
    column or, in MongoDB, in the document id: the proof an erasure left no identity."""
    from loyalnest.services.points.store.mongo import BALANCES, MongoLedgerStore
    from loyalnest.services.points.store.postgres import PostgresLedgerStore

    found: dict[str, int] = {}
    tables = ("ledgers", *CUSTOMER_TABLES)
    assert set(CUSTOMER_TABLES) <= set(MERCHANT_TABLES)
    if isinstance(store, PostgresLedgerStore):
        async with store._pool.connection() as conn:
            for table in tables:
                cursor = await conn.execute(
                    f"SELECT count(*) FROM {table} WHERE merchant_id = %s AND customer_id = %s",
                    (merchant_id, customer_id),
                )
                row = await cursor.fetchone()
                if row is not None and row[0]:
                    found[table] = row[0]
        return found
    assert isinstance(store, MongoLedgerStore)
    for name in (BALANCES, *CUSTOMER_TABLES):
        count = store.database[name].count_documents(
            {
                "merchant_id": merchant_id,
                "$or": [
                    {"customer_id": customer_id},
                    {"_id": {"$regex": f"\\|{re.escape(customer_id)}(\\||$)"}},
                ],
            }
        )
        if count:
            found[name] = count
    return found


async def test_erase_redacts_the_customers_unsent_events_to_the_anonymous_ledger(
    store: LedgerStore, merchant_id: str
) -> None:
    """Events still in the outbox when the customer is erased would otherwise be published
    afterwards under their Shopify id: they follow the ledger to its anonymous id (amounts
    and sequence kept, for the consumers that add them up); another customer's stay."""
    customer, other = new_customer(), new_customer()
    await earn(store, merchant_id, customer, 100)
    await redeem(store, merchant_id, customer, 30)
    await earn(store, merchant_id, other, 5)

    assert await store.erase_customer(merchant_id, CustomerRef(customer)) > 0
    entries = await _unsent(store)
    assert entries, "nothing was published: the events wait in the outbox"
    for key, envelope in entries:
        assert customer not in key
        assert customer.encode() not in envelope, "an unsent event still names the customer"
    (anonymous,) = [c for c in await _customers(store, merchant_id) if c.startswith(ERASED_PREFIX)]
    payloads = [_payload(envelope) for _, envelope in entries]
    assert sorted(
        (p.customer_id, p.sequence, p.points, k)
        for p, (k, _) in zip(payloads, entries, strict=True)
    ) == sorted(
        [
            (anonymous, 1, 100, f"{merchant_id}/{anonymous}"),
            (anonymous, 2, 30, f"{merchant_id}/{anonymous}"),
            (other, 1, 5, f"{merchant_id}/{other}"),
        ]
    )
    assert await store.erase_customer(merchant_id, CustomerRef(customer)) == 0  # a repeat


def _payload(envelope: bytes) -> Any:
    from loyalnest.platform.events.envelope import Envelope
    from loyalnest.platform.events.topics import spec_for_type

    decoded = Envelope.FromString(envelope)
    payload = spec_for_type(decoded.event_type).payload_type()
    assert decoded.payload.Unpack(payload)
    return payload


async def _unsent(store: LedgerStore) -> list[tuple[str, bytes]]:
    """(record key, envelope) of every outbox entry not yet published."""
    from loyalnest.services.points.store.mongo import MongoLedgerStore
    from loyalnest.services.points.store.postgres import PostgresLedgerStore

    if isinstance(store, PostgresLedgerStore):
        async with store._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT partition_key, envelope FROM outbox WHERE sent_at IS NULL ORDER BY id"
            )
            return [(key, bytes(envelope)) for key, envelope in await cursor.fetchall()]
    assert isinstance(store, MongoLedgerStore)
    docs = store.database["outbox"].find({"sent_at": None})
    return [(d["partition_key"], bytes(d["envelope"])) for d in docs]


async def test_erase_merchant_drops_its_unsent_events_and_no_other_merchants(
    store: LedgerStore, merchant_id: str
) -> None:
    """shop/redact: the merchant's events not yet published are dropped (every service erases
    the merchant; a late event would make a consumer hold its data again); another
    merchant's wait for the relay as before."""
    customer, other_merchant = new_customer(), f"other-{merchant_id}"
    await earn(store, merchant_id, customer, 10)
    await earn(store, other_merchant, customer, 7)
    assert await store.erase_merchant(merchant_id) > 0
    keys = [key for key, _ in await _unsent(store)]
    assert keys == [f"{other_merchant}/{customer}"]


async def test_erase_rewrites_a_tier_job_cursor_naming_the_customer(
    store: LedgerStore, merchant_id: str
) -> None:
    """The tier job's resume cursor (tier_job_progress) holds the last customer of the last
    page done; erasing that customer leaves their id nowhere, and the resumed job reads
    exactly the customers it had not done."""
    first, erased, last = "7001", "7002", "7003"  # Shopify ids: in id order
    for customer in (first, erased, last):
        await earn(store, merchant_id, customer, 10)
    await store.save_tier_job_cursor(merchant_id, erased)  # done: first, erased

    await store.erase_customer(merchant_id, CustomerRef(erased))

    cursor = await store.tier_job_cursor(merchant_id)
    assert cursor == first
    resumed = [i.customer_id for i in await store.tier_inputs(merchant_id, cursor, 10, None)]
    # `last` once, `first` not again; the anonymous ledger is a ledger of its own.
    assert [c for c in resumed if not c.startswith(ERASED_PREFIX)] == [last]

    # The merchant's first customer: the cursor is "" (resume from the start), not gone.
    await store.save_tier_job_cursor(merchant_id, first)
    await store.erase_customer(merchant_id, CustomerRef(first))
    assert await store.tier_job_cursor(merchant_id) == ""

    # A cursor naming someone else is left alone.
    await store.save_tier_job_cursor(merchant_id, last)
    other = new_customer()
    await earn(store, merchant_id, other, 1)
    await store.erase_customer(merchant_id, CustomerRef(other))
    assert await store.tier_job_cursor(merchant_id) == last


async def test_the_tier_job_cannot_save_a_customer_erased_during_its_page(
    store: LedgerStore, merchant_id: str
) -> None:
    """A job that read a page before the erasure and saves its end after: the erased id is
    not written; the previous cursor stays (a crash redoes that page, as any crash)."""
    first, erased = "7101", "7102"
    for customer in (first, erased):
        await earn(store, merchant_id, customer, 10)
    await store.save_tier_job_cursor(merchant_id, first)
    await store.erase_customer(merchant_id, CustomerRef(erased))
    await store.save_tier_job_cursor(merchant_id, erased)
    assert await store.tier_job_cursor(merchant_id) == first


async def test_the_ledger_moves_to_the_erasures_id_unless_a_ledger_has_it(
    store: LedgerStore, merchant_id: str
) -> None:
    """The erasure key AdminCore sends every service: the ledger moves to the id every other
    service gives the customer in this erasure (CustomerRef.anonymous_id). Where a ledger has
    that id already (a redacted event consumed meanwhile opened one), a random id instead:
    the erasure never fails on it, and the two ledgers stay apart."""
    customer, second = new_customer(), new_customer()
    await earn(store, merchant_id, customer, 40)
    request = CustomerRef(customer)
    assert await store.erase_customer(merchant_id, request) > 0
    assert (await store.get_balance(merchant_id, request.anonymous_id(customer))).balance == 40
    assert await store.erase_customer(merchant_id, request) == 0  # a retry: nothing left

    await earn(store, merchant_id, second, 9)
    taken = CustomerRef(second)
    await earn(store, merchant_id, taken.anonymous_id(second), 1)  # already there
    assert await store.erase_customer(merchant_id, taken) > 0
    assert (await store.get_balance(merchant_id, taken.anonymous_id(second))).balance == 1
    moved = [
        c
        for c in await _customers(store, merchant_id)
        if c.startswith(ERASED_PREFIX)
        and c not in (request.anonymous_id(customer), taken.anonymous_id(second))
    ]
    assert [(await store.get_balance(merchant_id, c)).balance for c in moved] == [9]
