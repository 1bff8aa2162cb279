"""The MongoDB outbox (platform/events/mongo_outbox.py) as an OutboxSource: enqueue numbers
each lane in commit order, claims lease disjoint lanes and yield them in that order without
passing a hole, mark_sent/backlog/purge behave as PostgresOutbox's (tests/integration/
test_outbox.py), and OutboxRelay publishes from it.

Runs against the MongoDB server in LOYALNEST_TEST_MONGO_URL (a replica set: the tests use
transactions) when set, else against mongomock-ng: test ids then say `mongo-FAKE-mongomock`.
The fake serialises every call (loyalnest.platform.mongo), so what these tests cannot show
on it is concurrency inside the server: write conflicts between transactions that
increment one lane counter, reads that are not snapshots, lease writes racing across
processes. Rollback of an aborted transaction is mongomock-ng's emulation (it restores
snapshots of the collections).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import mongomock_ng
import pymongo
import pytest
from pymongo.client_session import ClientSession
from pymongo.database import Database

from loyalnest.gen.events.v1 import envelope_pb2
from loyalnest.gen.events.v1 import points_pb2 as events_pb2
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.errors import Unavailable
from loyalnest.platform.events import mongo_outbox
from loyalnest.platform.events.clients import OutgoingRecord, publish_bound_seconds
from loyalnest.platform.events.envelope import new_event
from loyalnest.platform.events.mongo_outbox import (
    LEASES_COLLECTION,
    OUTBOX_COLLECTION,
    SEQUENCES_COLLECTION,
    MongoOutbox,
    lease_seconds_for,
    outbox_document,
)
from loyalnest.platform.events.outbox import Backlog, PendingRow, lane_for
from loyalnest.platform.events.relay import OutboxRelay
from loyalnest.platform.mongo import FAKE_LOCK
from loyalnest.services.points.store.mongo import MongoLedgerStore

from .conftest import MONGO_ID, MONGO_URL, MongoStoreFactory
from .test_ledger_store import earn, new_key, redeem

Document = dict[str, Any]
MERCHANT = "m-outbox"
LEASE = 60.0


@pytest.fixture(params=[MONGO_ID])
def database(request: pytest.FixtureRequest) -> Iterator[Database[Document]]:
    """A fresh database with the outbox's indexes and lane documents."""
    name = f"loyalnest_outbox_{uuid.uuid4().hex[:12]}"
    client: pymongo.MongoClient[Document] = (
        mongomock_ng.MongoClient(tz_aware=True, tzinfo=UTC)
        if MONGO_URL is None
        else pymongo.MongoClient(MONGO_URL, tz_aware=True, tzinfo=UTC)
    )
    try:
        mongo_outbox.ensure_outbox(client[name])
        yield client[name]
    finally:
        client.drop_database(name)
        client.close()


def source(database: Database[Document], **options: Any) -> MongoOutbox:
    return MongoOutbox(database, **{"lease_seconds": LEASE, **options})


def earned(customer: str, sequence: int = 0) -> events_pb2.PointsEarned:
    return events_pb2.PointsEarned(customer_id=customer, sequence=sequence, points=1)


def in_transaction(database: Database[Document], change: Callable[[ClientSession], Any]) -> Any:
    with FAKE_LOCK, database.client.start_session() as session:
        return session.with_transaction(change)


def enqueue(database: Database[Document], customer: str, sequence: int = 0) -> str:
    """One event for `customer`, in a transaction of its own; returns its event id."""

    def change(session: ClientSession) -> str:
        envelope = mongo_outbox.enqueue(
            database, MERCHANT, earned(customer, sequence), session=session
        )
        return envelope.event_id

    result: str = in_transaction(database, change)
    return result


def customers_in_lane(lane: int, count: int) -> list[str]:
    """Customers whose events share `lane` (the lane is a hash of merchant/customer)."""
    found = (f"c{n}" for n in itertools.count())
    return list(itertools.islice((c for c in found if lane_of(c) == lane), count))


def lane_of(customer: str) -> int:
    return lane_for(f"{MERCHANT}/{customer}")


def customer_and_seq(row: PendingRow[str]) -> tuple[str, int]:
    envelope = envelope_pb2.Envelope.FromString(row.record.value)
    payload = events_pb2.PointsEarned()
    assert envelope.payload.Unpack(payload)
    return payload.customer_id, payload.sequence


def docs(database: Database[Document]) -> dict[str, Document]:
    return {doc["_id"]: doc for doc in database[OUTBOX_COLLECTION].find()}


# --- writer side ---------------------------------------------------------------------------


async def test_enqueue_numbers_each_lane_densely_in_commit_order(database: Database[Document]):
    first, second = customers_in_lane(7, 2)
    other = customers_in_lane(8, 1)[0]
    ids = [enqueue(database, c) for c in (first, second, other, first)]
    stored = docs(database)
    assert [(stored[i]["lane"], stored[i]["seq"]) for i in ids] == [(7, 1), (7, 2), (8, 1), (7, 3)]
    assert stored[ids[0]]["partition_key"] == f"{MERCHANT}/{first}"
    assert stored[ids[0]]["sent_at"] is None
    counters = {d["_id"]: d["seq"] for d in database[SEQUENCES_COLLECTION].find()}
    assert (counters[7], counters[8], len(counters)) == (3, 1, 64)


async def test_aborted_transaction_takes_its_event_and_its_number_with_it(
    database: Database[Document],
):
    customer = customers_in_lane(3, 1)[0]

    def failing_change(session: ClientSession) -> None:
        mongo_outbox.enqueue(database, MERCHANT, earned(customer), session=session)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        in_transaction(database, failing_change)
    assert docs(database) == {}
    # No hole: the next event of the lane is number 1, so the relay never waits for one.
    event_id = enqueue(database, customer)
    assert docs(database)[event_id]["seq"] == 1


async def test_enqueue_outside_a_transaction_is_refused(database: Database[Document]):
    with FAKE_LOCK, database.client.start_session() as session:
        with pytest.raises(RuntimeError, match="inside the change's transaction"):
            mongo_outbox.enqueue(database, MERCHANT, earned("c"), session=session)
    assert docs(database) == {}


# --- claims ----------------------------------------------------------------------------------


async def test_claim_yields_lanes_in_seq_order_and_mark_sent_drains_them(
    database: Database[Document],
):
    customers = [f"c{n}" for n in range(40)]
    for round_ in range(1, 4):
        for customer in customers:
            enqueue(database, customer, round_)
    outbox = source(database)
    assert (await outbox.backlog()).pending == 120

    async with outbox.claim(limit=1000, lanes=64) as claim:
        assert len(claim.rows) == 120
        by_customer: dict[str, list[int]] = {}
        for customer, sequence in map(customer_and_seq, claim.rows):
            by_customer.setdefault(customer, []).append(sequence)
        assert by_customer == {c: [1, 2, 3] for c in customers}
        stored = docs(database)
        lanes: dict[int, list[int]] = {}
        for row in claim.rows:
            lanes.setdefault(stored[row.id]["lane"], []).append(stored[row.id]["seq"])
        assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in lanes.values())
        record = claim.rows[0].record
        assert record.topic == "loyalnest.points.events"
        assert dict(record.headers)["event_id"] == claim.rows[0].id.encode()
        await claim.mark_sent([row.id for row in claim.rows])
    assert (await outbox.backlog()).pending == 0
    async with outbox.claim(limit=1000, lanes=64) as claim:
        assert claim.rows == ()
    leases = list(database[LEASES_COLLECTION].find())
    assert all(lease["owner"] is None for lease in leases), "claims release their lanes"


async def test_concurrent_claims_hold_disjoint_lanes(database: Database[Document]):
    for n in range(200):
        enqueue(database, f"c{n}")
    first_relay, second_relay = source(database), source(database)
    async with first_relay.claim(limit=1000, lanes=16) as first:
        async with second_relay.claim(limit=1000, lanes=64) as second:
            first_keys = {row.record.key for row in first.rows}
            second_keys = {row.record.key for row in second.rows}
            assert first.rows and second.rows
            assert not first_keys & second_keys, "a key is never relayed by two relays at once"
            assert len(first.rows) + len(second.rows) == 200
            async with source(database).claim(limit=1000, lanes=64) as third:
                assert third.rows == (), "every lane with events is held"
            await second.mark_sent([row.id for row in second.rows])
        await first.mark_sent([row.id for row in first.rows[:5]])
    assert (await first_relay.backlog()).pending == len(first.rows) - 5


async def test_limit_takes_the_oldest_of_each_lane_and_the_rest_follows_in_order(
    database: Database[Document],
):
    customers = customers_in_lane(5, 3)
    for sequence in range(1, 11):
        for customer in customers:
            enqueue(database, customer, sequence)
    outbox = source(database)
    published: list[tuple[str, int]] = []
    while True:
        async with outbox.claim(limit=4, lanes=64) as claim:
            if not claim.rows:
                break
            assert len(claim.rows) <= 4
            # Only the first customer's events are acknowledged this time: the others stay
            # pending and must come first in the next claim.
            acknowledged = [r for r in claim.rows if customer_and_seq(r)[0] == customers[0]]
            if not acknowledged:
                acknowledged = list(claim.rows)
            published += map(customer_and_seq, acknowledged)
            await claim.mark_sent([row.id for row in acknowledged])
    for customer in customers:
        assert [s for c, s in published if c == customer] == list(range(1, 11))


async def test_a_relay_that_died_holding_lanes_loses_them_when_the_lease_expires(
    database: Database[Document],
):
    enqueue(database, "c1")
    async with contextlib.AsyncExitStack() as dead:
        # Entered and never left while the others run: a relay that stopped mid-claim.
        stuck = await dead.enter_async_context(source(database, lease_seconds=0.3).claim(10, 64))
        assert len(stuck.rows) == 1
        async with source(database).claim(10, 64) as meanwhile:
            assert meanwhile.rows == ()
        await asyncio.sleep(0.4)
        async with source(database).claim(10, 64) as successor:
            assert [row.id for row in successor.rows] == [stuck.rows[0].id]
            await successor.mark_sent([successor.rows[0].id])
            # The dead relay's release (here: its late exit) must not free the lane it lost.
            await dead.aclose()
            enqueue(database, "c1")
            async with source(database).claim(10, 64) as third:
                assert third.rows == ()
            lease = database[LEASES_COLLECTION].find_one({"_id": lane_of("c1")})
            assert lease is not None and lease["owner"] is not None
    assert (await source(database).backlog()).pending == 1


# --- holes: what a writer without transactions can leave -----------------------------------


def reserve(database: Database[Document], customer: str) -> int:
    """A writer without transactions that took its number and has not inserted yet."""
    counter = database[SEQUENCES_COLLECTION].find_one_and_update(
        {"_id": lane_of(customer)}, {"$inc": {"seq": 1}}, return_document=True
    )
    assert counter is not None
    seq: int = counter["seq"]
    return seq


def insert_late(database: Database[Document], customer: str, seq: int, sequence: int) -> str:
    event = new_event(MERCHANT, earned(customer, sequence))
    database[OUTBOX_COLLECTION].insert_one(outbox_document(event, seq=seq))
    return event.event_id


async def claimed(outbox: MongoOutbox, *, mark: bool = True) -> list[tuple[str, int]]:
    async with outbox.claim(limit=100, lanes=64) as claim:
        if mark:
            await claim.mark_sent([row.id for row in claim.rows])
        return [customer_and_seq(row) for row in claim.rows]


async def test_a_hole_holds_back_the_lane_until_it_is_filled(database: Database[Document]):
    customer, neighbour = customers_in_lane(9, 2)
    slow = reserve(database, customer)  # seq 1, not inserted yet
    mongo_outbox.enqueue(database, MERCHANT, earned(customer, 2), session=None)  # seq 2
    mongo_outbox.enqueue(database, MERCHANT, earned(neighbour, 1), session=None)  # seq 3
    enqueue(database, "elsewhere")  # another lane is not held back
    outbox = source(database, gap_timeout_seconds=30)
    assert await claimed(outbox) == [("elsewhere", 0)]
    insert_late(database, customer, slow, 1)
    assert await claimed(outbox) == [(customer, 1), (customer, 2), (neighbour, 1)]


async def test_a_hole_that_stays_is_skipped_and_its_late_event_still_published(
    database: Database[Document],
):
    customer = customers_in_lane(11, 1)[0]
    dead_writer = reserve(database, customer)
    mongo_outbox.enqueue(database, MERCHANT, earned(customer, 2), session=None)
    outbox = source(database, gap_timeout_seconds=0.2)
    assert await claimed(outbox) == []
    await asyncio.sleep(0.3)
    assert await claimed(outbox) == [(customer, 2)]
    # It was only slow after all: published late, out of order (the standalone path's cost).
    insert_late(database, customer, dead_writer, 1)
    mongo_outbox.enqueue(database, MERCHANT, earned(customer, 3), session=None)
    assert await claimed(outbox) == [(customer, 1), (customer, 3)]


async def test_documents_from_before_numbering_are_published_first_by_age(
    database: Database[Document],
):
    customer = customers_in_lane(2, 1)[0]
    now = datetime.now(UTC)
    for sequence, age in ((2, 1), (1, 2)):  # inserted newest first
        old = new_event(MERCHANT, earned(customer, sequence), occurred_at=now - timedelta(age))
        legacy = outbox_document(old, seq=0)
        del legacy["seq"]
        database[OUTBOX_COLLECTION].insert_one(legacy)
    enqueue(database, customer, 3)
    assert await claimed(source(database)) == [(customer, 1), (customer, 2), (customer, 3)]


async def test_backlog_and_purge(database: Database[Document]):
    for n in range(3):
        enqueue(database, f"c{n}")
    outbox = source(database)
    await asyncio.sleep(0.05)
    backlog = await outbox.backlog()
    assert backlog.pending == 3 and backlog.oldest_age_seconds > 0
    await claimed(outbox)
    assert await outbox.backlog() == Backlog(0, 0.0)
    assert await outbox.purge_sent(older_than_seconds=3600) == 0
    enqueue(database, "pending")
    database[OUTBOX_COLLECTION].update_many(
        {"sent_at": {"$ne": None}}, {"$set": {"sent_at": datetime.now(UTC) - timedelta(hours=2)}}
    )
    assert await outbox.purge_sent(older_than_seconds=3600) == 3
    assert [doc["sent_at"] for doc in docs(database).values()] == [None]


# --- the relay over it -----------------------------------------------------------------------


class OrderedFakeKafka:
    """Acknowledges records, failing some the way an idempotent producer does: once a
    record of a key failed, the key's later records in the batch fail too."""

    def __init__(self, fail_every: int) -> None:
        self.fail_every = fail_every
        self.calls = 0
        self.acknowledged: list[OutgoingRecord] = []

    async def publish(self, records: Sequence[OutgoingRecord]) -> list[Exception | None]:
        self.calls += 1
        results: list[Exception | None] = []
        failed_keys: set[bytes | None] = set()
        for n, record in enumerate(records):
            if record.key in failed_keys or (self.calls + n) % self.fail_every == 0:
                failed_keys.add(record.key)
                results.append(ConnectionError("partition leader away"))
            else:
                self.acknowledged.append(record)
                results.append(None)
        await asyncio.sleep(0)  # let the other relay in, as a real publication does
        return results

    async def close(self) -> None:
        pass


@contextlib.asynccontextmanager
async def relays(*loops: Callable[[], Any]) -> AsyncIterator[None]:
    tasks = [asyncio.ensure_future(loop()) for loop in loops]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture(params=[MONGO_ID])
async def points_store(
    request: pytest.FixtureRequest, mongo_store_factory: MongoStoreFactory
) -> MongoLedgerStore:
    return await mongo_store_factory()


async def test_two_relays_publish_each_posting_once_in_sequence_order(
    points_store: MongoLedgerStore,
):
    """Points' Mongo store posts, two OutboxRelays over MongoOutbox publish (fake Kafka)."""
    store = points_store
    customers = [f"c{n}" for n in range(12)]
    for round_ in range(5):
        await asyncio.gather(*(earn(store, MERCHANT, c, 10 + round_) for c in customers))
    await asyncio.gather(*(redeem(store, MERCHANT, c, 3, key=new_key()) for c in customers))
    settings = ServiceSettings(
        outbox_batch_size=7,
        outbox_lanes_per_batch=4,
        outbox_poll_interval_seconds=0.001,
        events_retry_initial_seconds=0.001,
        events_retry_max_seconds=0.01,
        metrics_enabled=False,
    )
    kafka = OrderedFakeKafka(fail_every=5)
    relay_loops = [
        OutboxRelay(
            MongoOutbox(store.database, name="points", lease_seconds=LEASE),
            settings,
            client_id=f"relay-{n}",
            publisher=kafka,
        ).run
        for n in (1, 2)
    ]
    outbox = MongoOutbox(store.database, lease_seconds=LEASE)
    async with relays(*relay_loops):
        for _ in range(500):
            if (await outbox.backlog()).pending == 0:
                break
            await asyncio.sleep(0.01)
    assert (await outbox.backlog()).pending == 0
    events = [envelope_pb2.Envelope.FromString(r.value) for r in kafka.acknowledged]
    assert len(events) == 6 * len(customers)
    assert len({e.event_id for e in events}) == len(events), "each event acknowledged once"
    sequences: dict[str, list[int]] = {}
    for record, envelope in zip(kafka.acknowledged, events, strict=True):
        payload: events_pb2.PointsEarned | events_pb2.PointsRedeemed = (
            events_pb2.PointsRedeemed()
            if envelope.event_type == "points.redeemed"
            else events_pb2.PointsEarned()
        )
        assert envelope.payload.Unpack(payload)
        assert record.key == f"{MERCHANT}/{payload.customer_id}".encode()
        sequences.setdefault(payload.customer_id, []).append(payload.sequence)
    assert sequences == {c: [1, 2, 3, 4, 5, 6] for c in customers}


def test_the_lease_outlasts_the_longest_publication() -> None:
    settings = ServiceSettings(
        kafka_connect_timeout_seconds=5,
        kafka_publish_timeout_seconds=10,
        events_shutdown_step_seconds=20,
    )
    # A relay holds its lanes from the claim to marking them sent, which includes connecting,
    # creating topics, the acks and the relay's shutdown step.
    assert lease_seconds_for(settings) > publish_bound_seconds(settings) + 20
    assert publish_bound_seconds(settings) > 10 + 5


# --- an erasure redacting unsent events (mongo_outbox.redact_unsent) -------------------------


def test_an_erasure_waits_for_a_relays_lease_then_redacts_and_frees_the_lane(
    database: Database[Document],
) -> None:
    """A relay holds the customer's lane: the erasure waits until the lease is released (here:
    expires) rather than rewrite events the relay may be publishing; it then redacts them,
    leaves other customers' alone and frees the lane for the relays."""
    customer, other = "7390000000001", "7390000000002"
    enqueue(database, customer, 1)
    enqueue(database, other, 1)
    lane = lane_of(customer)
    held_until = datetime.now(UTC) + timedelta(seconds=1)
    database[LEASES_COLLECTION].update_one(
        {"_id": lane}, {"$set": {"owner": "relay-1", "expires_at": held_until}}
    )
    started = datetime.now(UTC)
    with FAKE_LOCK:
        changed = mongo_outbox.redact_unsent(database, MERCHANT, [customer], "erased:x")
    assert changed == 1 and datetime.now(UTC) >= held_until > started
    keys = sorted(doc["partition_key"] for doc in database["outbox"].find({"sent_at": None}))
    assert keys == sorted([f"{MERCHANT}/erased:x", f"{MERCHANT}/{other}"])
    lease = database[LEASES_COLLECTION].find_one({"_id": lane})
    assert lease is not None and lease["owner"] is None
    # A lane that stays leased: the erasure gives up (AdminCore retries it), changing nothing.
    database[LEASES_COLLECTION].update_one(
        {"_id": lane_of(other)},
        {"$set": {"owner": "relay-2", "expires_at": datetime.now(UTC) + timedelta(hours=1)}},
    )
    with FAKE_LOCK, pytest.raises(Unavailable, match="held by a relay"):
        mongo_outbox.redact_unsent(database, MERCHANT, [other], "erased:y", wait_seconds=0.3)
    assert database["outbox"].count_documents({"partition_key": f"{MERCHANT}/{other}"}) == 1
