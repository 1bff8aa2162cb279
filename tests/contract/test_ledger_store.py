"""The LedgerStore contract: every implementation must pass the same tests.

Each test runs against PostgreSQL and MongoDB (see conftest.py). Postings and idempotency
keys are built the way the servicer builds them, from real request messages.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from loyalnest.gen.points.v1 import points_pb2
from loyalnest.platform.errors import Aborted
from loyalnest.platform.idempotency import REQUEST, IdempotencyKey, IdempotencyKeyReused
from loyalnest.services.points.domain import (
    InsufficientPoints,
    LedgerNotFound,
    Posting,
    PostingResult,
    TransactionType,
)
from loyalnest.services.points.store.base import LedgerStore
from loyalnest.services.points.store.mongo import IDEMPOTENCY_KEYS, MongoLedgerStore

from .conftest import MongoStoreFactory


def new_key() -> str:
    return f"key-{uuid.uuid4().hex}"


def new_customer() -> str:
    return f"cust-{uuid.uuid4().hex[:8]}"


async def earn(
    store: LedgerStore,
    merchant_id: str,
    customer_id: str,
    points: int,
    *,
    key: str | None = None,
    reason: str = "",
) -> PostingResult:
    request = points_pb2.EarnPointsRequest(
        customer_id=customer_id, points=points, reason=reason, idempotency_key=key or new_key()
    )
    posting = Posting(merchant_id, customer_id, TransactionType.EARN, points, reason)
    return await store.post(posting, IdempotencyKey.of("EarnPoints", request))


async def redeem(
    store: LedgerStore, merchant_id: str, customer_id: str, points: int, *, key: str | None = None
) -> PostingResult:
    request = points_pb2.RedeemPointsRequest(
        customer_id=customer_id, points=points, idempotency_key=key or new_key()
    )
    posting = Posting(merchant_id, customer_id, TransactionType.REDEEM, -points, "")
    return await store.post(posting, IdempotencyKey.of("RedeemPoints", request))


async def adjust(
    store: LedgerStore, merchant_id: str, customer_id: str, points: int, reason: str = "fix"
) -> PostingResult:
    request = points_pb2.AdjustPointsRequest(
        customer_id=customer_id, points=points, reason=reason, idempotency_key=new_key()
    )
    posting = Posting(merchant_id, customer_id, TransactionType.ADJUST, points, reason)
    return await store.post(posting, IdempotencyKey.of("AdjustPoints", request))


async def history(store: LedgerStore, merchant_id: str, customer_id: str) -> list[int]:
    """Points of every transaction, newest first."""
    rows = await store.list_transactions(merchant_id, customer_id, limit=1000, before_sequence=None)
    return [row.points for row in rows]


async def test_earn_opens_ledger_and_credits(store: LedgerStore, merchant_id: str) -> None:
    customer = new_customer()
    before = datetime.now(UTC) - timedelta(seconds=5)

    result = await earn(store, merchant_id, customer, 100, reason="order #1001")

    tx = result.transaction
    assert (tx.merchant_id, tx.customer_id, tx.type) == (merchant_id, customer, "earn")
    assert (tx.sequence, tx.points, tx.reason, tx.balance_after) == (1, 100, "order #1001", 100)
    assert (tx.lifetime_earned_after, tx.lifetime_redeemed_after) == (100, 0)
    assert uuid.UUID(tx.transaction_id)
    assert before < tx.created_at < datetime.now(UTC) + timedelta(seconds=5)
    assert result.balance == tx.balance_snapshot()
    # What the call returned is what the store now reads back, timestamp included.
    assert await store.get_balance(merchant_id, customer) == result.balance
    assert await store.list_transactions(merchant_id, customer, limit=10, before_sequence=None) == [
        tx
    ]


async def test_balance_of_unknown_customer_is_not_found(
    store: LedgerStore, merchant_id: str
) -> None:
    await earn(store, merchant_id, "someone-else", 10)
    with pytest.raises(LedgerNotFound):
        await store.get_balance(merchant_id, new_customer())


async def test_redeem_debits(store: LedgerStore, merchant_id: str) -> None:
    customer = new_customer()
    await earn(store, merchant_id, customer, 100)

    result = await redeem(store, merchant_id, customer, 30)

    tx = result.transaction
    assert (tx.type, tx.points, tx.sequence, tx.balance_after) == ("redeem", -30, 2, 70)
    assert (tx.lifetime_earned_after, tx.lifetime_redeemed_after) == (100, 30)
    balance = await store.get_balance(merchant_id, customer)
    assert (balance.balance, balance.lifetime_earned, balance.lifetime_redeemed) == (70, 100, 30)


async def test_redeem_over_balance_is_refused_and_changes_nothing(
    store: LedgerStore, merchant_id: str
) -> None:
    customer = new_customer()
    first = await earn(store, merchant_id, customer, 50)

    with pytest.raises(InsufficientPoints, match="has 50 points; 60 requested"):
        await redeem(store, merchant_id, customer, 60)

    assert await store.get_balance(merchant_id, customer) == first.balance
    assert await history(store, merchant_id, customer) == [50]
    # The refused call consumed no sequence number.
    assert (await redeem(store, merchant_id, customer, 50)).transaction.sequence == 2


async def test_redeem_of_exact_balance_empties_it(store: LedgerStore, merchant_id: str) -> None:
    customer = new_customer()
    await earn(store, merchant_id, customer, 50)
    assert (await redeem(store, merchant_id, customer, 50)).balance.balance == 0
    with pytest.raises(InsufficientPoints):
        await redeem(store, merchant_id, customer, 1)


async def test_redeem_for_unknown_customer_is_not_found(
    store: LedgerStore, merchant_id: str
) -> None:
    customer = new_customer()
    with pytest.raises(LedgerNotFound):
        await redeem(store, merchant_id, customer, 10)
    # A failed debit does not open a ledger.
    with pytest.raises(LedgerNotFound):
        await store.get_balance(merchant_id, customer)


async def test_adjust_both_ways(store: LedgerStore, merchant_id: str) -> None:
    customer = new_customer()
    with pytest.raises(LedgerNotFound):
        await adjust(store, merchant_id, customer, -5)

    opened = await adjust(store, merchant_id, customer, 40, "goodwill")
    assert (opened.balance.balance, opened.balance.lifetime_earned) == (40, 40)
    assert opened.transaction.type == "adjust"

    with pytest.raises(InsufficientPoints, match="has 40 points; 41 requested"):
        await adjust(store, merchant_id, customer, -41)
    assert (await store.get_balance(merchant_id, customer)).balance == 40

    # A negative adjustment is a correction, not a redemption.
    corrected = await adjust(store, merchant_id, customer, -40)
    assert (corrected.balance.balance, corrected.balance.lifetime_redeemed) == (0, 0)


async def test_replay_returns_first_result_without_posting_again(
    store: LedgerStore, merchant_id: str
) -> None:
    customer = new_customer()
    key = new_key()
    first = await earn(store, merchant_id, customer, 100, key=key)
    later = await earn(store, merchant_id, customer, 50)

    replay = await earn(store, merchant_id, customer, 100, key=key)

    assert replay == first  # same transaction id, timestamp and balance snapshot (100)
    assert replay.balance.balance == 100
    assert (await store.get_balance(merchant_id, customer)) == later.balance
    assert later.balance.balance == 150
    assert await history(store, merchant_id, customer) == [50, 100]


async def test_replay_of_a_redeem_is_not_debited_twice(
    store: LedgerStore, merchant_id: str
) -> None:
    customer = new_customer()
    await earn(store, merchant_id, customer, 100)
    key = new_key()
    first = await redeem(store, merchant_id, customer, 60, key=key)
    # A second debit of 60 would not fit: the replay must not even try it.
    assert await redeem(store, merchant_id, customer, 60, key=key) == first
    assert (await store.get_balance(merchant_id, customer)).balance == 40


async def test_same_key_with_other_parameters_is_rejected(
    store: LedgerStore, merchant_id: str
) -> None:
    customer = new_customer()
    key = new_key()
    await earn(store, merchant_id, customer, 100, key=key)

    with pytest.raises(IdempotencyKeyReused):
        await earn(store, merchant_id, customer, 101, key=key)
    with pytest.raises(IdempotencyKeyReused):
        await earn(store, merchant_id, new_customer(), 100, key=key)
    with pytest.raises(IdempotencyKeyReused):  # the method is part of the fingerprint
        await redeem(store, merchant_id, customer, 100, key=key)

    assert await history(store, merchant_id, customer) == [100]


async def test_a_failed_posting_leaves_its_key_free(store: LedgerStore, merchant_id: str) -> None:
    customer = new_customer()
    key = new_key()
    await earn(store, merchant_id, customer, 10)
    with pytest.raises(InsufficientPoints):
        await redeem(store, merchant_id, customer, 50, key=key)
    await earn(store, merchant_id, customer, 100)

    retried = await redeem(store, merchant_id, customer, 50, key=key)

    assert retried.balance.balance == 60
    assert await redeem(store, merchant_id, customer, 50, key=key) == retried


async def test_keys_are_per_merchant(store: LedgerStore, merchant_id: str) -> None:
    other_merchant = f"{merchant_id}-b"
    customer = new_customer()
    key = new_key()

    in_a = await earn(store, merchant_id, customer, 100, key=key)
    in_b = await earn(store, other_merchant, customer, 100, key=key)

    assert in_a.transaction.transaction_id != in_b.transaction.transaction_id
    assert in_b.transaction.merchant_id == other_merchant
    assert (await store.get_balance(merchant_id, customer)).balance == 100
    assert (await store.get_balance(other_merchant, customer)).balance == 100


async def test_merchants_cannot_see_each_others_customers(
    store: LedgerStore, merchant_id: str
) -> None:
    other_merchant = f"{merchant_id}-b"
    customer = new_customer()
    await earn(store, merchant_id, customer, 100)

    with pytest.raises(LedgerNotFound):
        await store.get_balance(other_merchant, customer)
    with pytest.raises(LedgerNotFound):
        await store.list_transactions(other_merchant, customer, limit=10, before_sequence=None)
    with pytest.raises(LedgerNotFound):
        await redeem(store, other_merchant, customer, 10)

    # The same customer id at merchant B is an unrelated ledger.
    own = await earn(store, other_merchant, customer, 7)
    assert (own.transaction.sequence, own.balance.balance) == (1, 7)
    assert await history(store, other_merchant, customer) == [7]
    assert (await store.get_balance(merchant_id, customer)).balance == 100
    assert await history(store, merchant_id, customer) == [100]


@pytest.mark.usefixtures("frequent_thread_switches")
async def test_concurrent_redeems_never_overdraw(store: LedgerStore, merchant_id: str) -> None:
    customer = new_customer()
    await earn(store, merchant_id, customer, 200)

    outcomes = await asyncio.gather(
        *(redeem(store, merchant_id, customer, 10) for _ in range(50)), return_exceptions=True
    )

    succeeded = [o for o in outcomes if isinstance(o, PostingResult)]
    refused = [o for o in outcomes if isinstance(o, InsufficientPoints)]
    unexpected = [o for o in outcomes if not isinstance(o, PostingResult | InsufficientPoints)]
    assert unexpected == []
    assert (len(succeeded), len(refused)) == (20, 30)
    balance = await store.get_balance(merchant_id, customer)
    assert (balance.balance, balance.lifetime_redeemed) == (0, 200)
    rows = await store.list_transactions(merchant_id, customer, limit=100, before_sequence=None)
    assert [row.sequence for row in rows] == list(range(21, 0, -1))
    assert [row.balance_after for row in rows] == list(range(0, 201, 10))
    assert sorted(r.transaction.balance_after for r in succeeded) == list(range(0, 191, 10))


@pytest.mark.usefixtures("frequent_thread_switches")
async def test_concurrent_calls_with_one_key_post_once(
    store: LedgerStore, merchant_id: str
) -> None:
    customer = new_customer()
    await earn(store, merchant_id, customer, 1)  # the ledger exists: only the key can race
    key = new_key()

    results = await asyncio.gather(
        *(earn(store, merchant_id, customer, 100, key=key) for _ in range(10))
    )

    assert all(result == results[0] for result in results)
    assert (await store.get_balance(merchant_id, customer)).balance == 101
    assert await history(store, merchant_id, customer) == [100, 1]


@pytest.mark.usefixtures("frequent_thread_switches")
async def test_concurrent_first_calls_with_one_key_on_a_new_ledger(
    store: LedgerStore, merchant_id: str
) -> None:
    customer = new_customer()
    key = new_key()
    results = await asyncio.gather(
        *(earn(store, merchant_id, customer, 100, key=key) for _ in range(10))
    )
    assert {result.transaction.transaction_id for result in results} == {
        results[0].transaction.transaction_id
    }
    assert await history(store, merchant_id, customer) == [100]


@pytest.mark.usefixtures("frequent_thread_switches")
async def test_concurrent_first_credits_open_one_ledger(
    store: LedgerStore, merchant_id: str
) -> None:
    customer = new_customer()
    await asyncio.gather(*(earn(store, merchant_id, customer, 5) for _ in range(10)))
    balance = await store.get_balance(merchant_id, customer)
    assert (balance.balance, balance.lifetime_earned) == (50, 50)
    rows = await store.list_transactions(merchant_id, customer, limit=100, before_sequence=None)
    assert sorted(row.sequence for row in rows) == list(range(1, 11))


async def test_list_transactions_pages_newest_first(store: LedgerStore, merchant_id: str) -> None:
    customer = new_customer()
    posted = [(await earn(store, merchant_id, customer, n)).transaction for n in range(1, 6)]
    await earn(store, merchant_id, new_customer(), 99)  # another ledger stays out

    async def page(before: int | None) -> list[int]:
        rows = await store.list_transactions(merchant_id, customer, limit=2, before_sequence=before)
        return [row.sequence for row in rows]

    assert await page(None) == [5, 4]
    assert await page(4) == [3, 2]
    assert await page(2) == [1]
    assert await page(1) == []
    everything = await store.list_transactions(
        merchant_id, customer, limit=10, before_sequence=None
    )
    assert everything == posted[::-1]


async def test_list_transactions_of_unknown_customer_is_not_found(
    store: LedgerStore, merchant_id: str
) -> None:
    with pytest.raises(LedgerNotFound):
        await store.list_transactions(merchant_id, new_customer(), limit=10, before_sequence=None)
    with pytest.raises(LedgerNotFound):
        await store.list_transactions(merchant_id, new_customer(), limit=10, before_sequence=5)


async def test_lifetime_totals(store: LedgerStore, merchant_id: str) -> None:
    customer = new_customer()
    await earn(store, merchant_id, customer, 100)
    await earn(store, merchant_id, customer, 50)
    await redeem(store, merchant_id, customer, 30)
    await adjust(store, merchant_id, customer, -20)
    last = await adjust(store, merchant_id, customer, 10)

    balance = await store.get_balance(merchant_id, customer)
    assert (balance.balance, balance.lifetime_earned, balance.lifetime_redeemed) == (110, 160, 30)
    assert balance == last.balance
    assert await history(store, merchant_id, customer) == [10, -20, -30, 50, 100]


# MongoDB only: the claim protocol that stands in for PostgreSQL's row lock on the key.


def _claim(merchant_id: str, key: str, claimed_at: datetime) -> dict[str, object]:
    return {
        "merchant_id": merchant_id,
        "namespace": REQUEST,
        "idempotency_key": key,
        "request_fingerprint": "from-another-request",
        "result_ref": None,
        "claim_token": "someone-else",
        "claimed_at": claimed_at,
        "created_at": claimed_at,
    }


async def test_mongo_waits_for_a_claim_in_progress_then_aborts(
    mongo_store_factory: MongoStoreFactory, merchant_id: str
) -> None:
    store = await mongo_store_factory(claim_wait_seconds=0.3)
    key = new_key()
    keys = store._database[IDEMPOTENCY_KEYS]
    await asyncio.to_thread(keys.insert_one, _claim(merchant_id, key, datetime.now(UTC)))
    customer = new_customer()

    started = asyncio.get_running_loop().time()
    with pytest.raises(Aborted, match="same idempotency key in progress"):
        await earn(store, merchant_id, customer, 10, key=key)

    assert asyncio.get_running_loop().time() - started >= 0.3
    with pytest.raises(LedgerNotFound):
        await store.get_balance(merchant_id, customer)
    # The holder's claim is left alone.
    claim = await asyncio.to_thread(keys.find_one, {"idempotency_key": key})
    assert claim is not None
    assert claim["claim_token"] == "someone-else"


async def test_mongo_returns_the_result_once_the_holder_records_it(
    mongo_store_factory: MongoStoreFactory, merchant_id: str
) -> None:
    store = await mongo_store_factory(claim_wait_seconds=5)
    customer = new_customer()
    key = new_key()
    keys = store._database[IDEMPOTENCY_KEYS]
    first = await earn(store, merchant_id, customer, 10, key=key)
    # Pretend the first call is still running, then let it finish while a retry waits.
    await asyncio.to_thread(
        keys.update_one, {"idempotency_key": key}, {"$set": {"result_ref": None}}
    )
    retry = asyncio.create_task(earn(store, merchant_id, customer, 10, key=key))
    await asyncio.sleep(0.2)
    assert not retry.done()
    await asyncio.to_thread(
        keys.update_one,
        {"idempotency_key": key},
        {"$set": {"result_ref": first.transaction.transaction_id}},
    )
    assert await retry == first


async def test_mongo_takes_over_a_stale_claim_only_with_transactions(
    mongo_store_factory: MongoStoreFactory, merchant_id: str
) -> None:
    store = await mongo_store_factory(claim_wait_seconds=0.2, claim_lease_seconds=60)
    key = new_key()
    keys = store._database[IDEMPOTENCY_KEYS]
    crashed_at = datetime.now(UTC) - timedelta(minutes=5)
    await asyncio.to_thread(keys.insert_one, _claim(merchant_id, key, crashed_at))
    customer = new_customer()

    if not await store.uses_transactions():
        with pytest.raises(Aborted):
            await earn(store, merchant_id, customer, 10, key=key)
        return
    result = await earn(store, merchant_id, customer, 10, key=key)
    assert result.balance.balance == 10
    assert await earn(store, merchant_id, customer, 10, key=key) == result


def _disk_full(*args: object, **kwargs: object) -> None:
    raise RuntimeError("disk full")


async def test_mongo_posting_is_all_or_nothing_with_transactions(
    mongo_store_factory: MongoStoreFactory, merchant_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await mongo_store_factory()
    if not await store.uses_transactions():
        pytest.skip("the MongoDB server has no transactions")
    customer = new_customer()
    await earn(store, merchant_id, customer, 100)
    key = new_key()

    with monkeypatch.context() as patch:
        # Fails after the balance update, before the key is recorded.
        patch.setattr(store._ledger, "insert_one", _disk_full)
        with pytest.raises(RuntimeError, match="disk full"):
            await redeem(store, merchant_id, customer, 30, key=key)

    assert (await store.get_balance(merchant_id, customer)).balance == 100
    retried = await redeem(store, merchant_id, customer, 30, key=key)
    assert (retried.transaction.sequence, retried.balance.balance) == (2, 70)


async def test_mongo_without_transactions_never_posts_twice_after_a_failure(
    mongo_store_factory: MongoStoreFactory, merchant_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await mongo_store_factory(transactions=False, claim_wait_seconds=0.2)
    customer = new_customer()
    await earn(store, merchant_id, customer, 100)
    key = new_key()
    with monkeypatch.context() as patch:
        patch.setattr(store._ledger, "insert_one", _disk_full)
        with pytest.raises(RuntimeError, match="disk full"):
            await redeem(store, merchant_id, customer, 30, key=key)
    after_failure = await store.get_balance(merchant_id, customer)

    # Whether the failed call took effect is unknown here, so its key stays claimed.
    with pytest.raises(Aborted):
        await redeem(store, merchant_id, customer, 30, key=key)
    assert await store.get_balance(merchant_id, customer) == after_failure


async def test_mongo_ensure_indexes(mongo_store: MongoLedgerStore) -> None:
    await mongo_store.ensure_indexes()  # idempotent: a second start-up must not fail
    await mongo_store.ping()
    database = mongo_store._database
    names = set(await asyncio.to_thread(database.list_collection_names))
    assert {
        "points_balances",
        "points_transactions",
        "idempotency_keys",
        "reward_redemptions",
        "pos_offline_queue",
    } <= names
    keys = await asyncio.to_thread(database[IDEMPOTENCY_KEYS].index_information)
    assert keys["merchant_namespace_key_unique"]["unique"] is True
    for name in ("reward_redemptions", "pos_offline_queue"):
        indexes = await asyncio.to_thread(database[name].index_information)
        assert {"customer_id", "merchant_id"} <= set(indexes)


async def test_reversals_move_the_lifetime_totals_back(
    store: LedgerStore, merchant_id: str
) -> None:
    customer = new_customer()
    await earn(store, merchant_id, customer, 100)
    await redeem(store, merchant_id, customer, 60)

    def reversal(points: int) -> Posting:
        return Posting(merchant_id, customer, TransactionType.REVERSAL, points, "refund:x")

    key = IdempotencyKey(key=new_key(), fingerprint="refund")
    credited = await store.post(reversal(60), key)
    assert (credited.transaction.type, credited.transaction.points) == ("reversal", 60)
    assert (credited.balance.balance, credited.balance.lifetime_redeemed) == (100, 0)
    assert credited.balance.lifetime_earned == 100
    # Idempotent like any posting.
    assert (await store.post(reversal(60), key)).replayed
    assert (await store.get_balance(merchant_id, customer)).balance == 100

    debited = await store.post(reversal(-30), IdempotencyKey(new_key(), "cancel"))
    assert (debited.balance.balance, debited.balance.lifetime_earned) == (70, 70)
    with pytest.raises(InsufficientPoints):
        await store.post(reversal(-71), IdempotencyKey(new_key(), "cancel"))
