"""The transactional outbox in MongoDB, for services whose state lives in MongoDB.

Writer side, the counterpart of outbox.enqueue(): the event is inserted with the state change
it announces, in the same session, inside its transaction:

    def change(session: ClientSession) -> None:       # run by session.with_transaction
        ...                                           # the change; writes the aggregate
        mongo_outbox.enqueue(database, merchant_id, points_pb2.PointsEarned(...),
                             session=session)

Relay side: MongoOutbox is the OutboxSource the platform's OutboxRelay publishes from, as
PostgresOutbox is for PostgreSQL; delivery, retries and metrics are the relay's.

Collections (in the service's database):
  outbox                  one document per event: envelope, topic, key, `lane` (crc32 of the
                          key, as in PostgreSQL), `seq` (its place in the lane), sent_at
  outbox_lane_sequences   per lane, the last seq handed out. Written by writers only.
  outbox_lane_leases      per lane, the relay holding it (`owner`, `expires_at`) and
                          `seen_through`: every seq of the lane up to it is known to exist.
                          Written by relays only: kept apart from the counters so that a
                          relay's lease writes never conflict with writers' transactions.

Order per key follows commit order. Client clocks do not, and MongoDB offers no sequence
that does, so the writer increments its lane's counter inside its transaction: of two
transactions incrementing one counter, the later conflicts and is retried (with_transaction)
after the first has committed, so a lane's seqs follow its commit order and have no holes
(an aborted transaction's increment is undone with it). Enqueue after the write to the
aggregate, as with PostgreSQL, so the counter is held for the shortest time. The price: the
writers of one lane (1/64 of the keys) are serialised; transactions that collide are
retried, and a writer that dies inside its transaction blocks its lane's writers until the
server aborts it (transactionLifetimeLimitSeconds, 60 s by default).

The relay publishes a lane in seq order and only a run without holes past `seen_through`:
an event is published once every event before it in its lane is known to exist. That also
covers reads that are not snapshots (a query that yields may see a later commit and miss an
earlier one): the missed event is a hole for one poll, then found. A hole still there after
`gap_timeout_seconds` is skipped, with a warning. With transactions none should last (only
documents deleted by hand, or purged before their lane's `seen_through` was saved, make
one). Pending events at or below `seen_through` (retries of failed publications) go first.
Within a claim, per-key order across a failed publication is kept the way it is for
PostgreSQL: by the relay marking only acknowledged events and the idempotent producer.

Leases instead of row locks. A claim takes up to `lanes` free lanes with pending events by a
conditional update of their lease documents (each a single-document write, so a lane goes
to one relay), and releases them when it exits, saving `seen_through`. The lease must outlast
the longest claim, so that two relays never publish one lane at once: `lease_seconds_for`
derives it from the publish timeouts. A relay that dies holding leases delays those lanes
until they expire. Expiry is judged by the relays' own clocks (the server's clock would
need `$$NOW` in pipeline updates, which mongomock-ng cannot evaluate, so the tests could not
cover it): keep hosts NTP-synchronised; the lease's margin absorbs small skew. A claim that
outlasted its lease, or finds it taken on release, logs an error.

Without transactions (a standalone server, which the Points store supports), order degrades:
  - the counter increment and the insert are two writes: a writer dying between them leaves
    a hole (its lane's later events wait gap_timeout_seconds once); one stalled between them
    for longer is published late, after later events of its lane (possibly of its key);
  - per key, events follow the order in which writers incremented the counter, not the order
    their state changes were applied: two concurrent changes of one aggregate can swap their
    events (Points' events carry the ledger `sequence`, which lets consumers tell);
  - a crash between the state change and the insert loses the event.
An event that turns up late (below `seen_through`) is still published: delivery over order.

Documents written before `seq` existed (when no relay published this outbox yet) have none:
they are published first, in created_at order.

Tested against mongomock-ng only (no MongoDB server can run where this was built): the fake
serialises all calls (platform/mongo.py), so it cannot show write conflicts between
concurrent transactions, non-snapshot reads, replica-set write concerns or lease expiry
racing a slow publication; those rest on MongoDB's documented semantics, as argued above.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from bson.binary import Binary
from google.protobuf.message import Message
from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError
from pymongo.write_concern import WriteConcern

from loyalnest.platform.config import EventSettings
from loyalnest.platform.errors import Unavailable
from loyalnest.platform.events.clients import OutgoingRecord, publish_bound_seconds
from loyalnest.platform.events.envelope import Envelope, OutgoingEvent, new_event
from loyalnest.platform.events.outbox import OUTBOX_LANES, Backlog, PendingRow, lane_for
from loyalnest.platform.events.redaction import Redactor
from loyalnest.platform.mongo import CODEC_OPTIONS, Document, MongoCalls, now_millis
from loyalnest.platform.observability import get_logger

log = get_logger(__name__)

OUTBOX_COLLECTION = "outbox"
SEQUENCES_COLLECTION = "outbox_lane_sequences"
LEASES_COLLECTION = "outbox_lane_leases"

# Beyond the longest publication and the relay's shutdown step (it lets a batch in flight
# finish): the database calls of a claim and clock skew between relay hosts.
LEASE_MARGIN_SECONDS = 30.0
DEFAULT_GAP_TIMEOUT_SECONDS = 10.0
_RELEASED = datetime(1970, 1, 1, tzinfo=UTC)
# A lease lost to a failover would let a second relay take the lane: majority-acknowledged.
_LEASE_WRITE_CONCERN = WriteConcern("majority")
_DUPLICATE_KEY = 11000
# What a claim reads of an event document.
_RELAY_FIELDS = {
    "topic": 1,
    "partition_key": 1,
    "envelope": 1,
    "headers": 1,
    "seq": 1,
    "sent_at": 1,
    "created_at": 1,
}


def lease_seconds_for(settings: EventSettings) -> float:
    return (
        publish_bound_seconds(settings)
        + settings.events_shutdown_step_seconds
        + LEASE_MARGIN_SECONDS
    )


def outbox_document(event: OutgoingEvent, *, seq: int) -> Document:
    return {
        "_id": event.event_id,
        "event_type": event.spec.event_type,
        "topic": event.spec.topic.name,
        "partition_key": event.key,
        "lane": lane_for(event.key),
        "seq": seq,
        "envelope": Binary(event.value),
        "headers": dict(event.headers),
        "created_at": event.envelope.occurred_at.ToDatetime(tzinfo=UTC),
        "sent_at": None,
    }


def enqueue(
    database: Database[Document],
    merchant_id: str,
    payload: Message,
    *,
    session: ClientSession | None,
    occurred_at: datetime | None = None,
) -> Envelope:
    """Adds an event to the outbox in the caller's transaction (blocking; a worker thread).

    `session` must be in a transaction. None is the path of a server without transactions
    only (see the module docstring for what it costs), never a way to skip one.
    """
    if session is not None and not session.in_transaction:
        # The event would commit on its own, with or without the change it announces.
        raise RuntimeError("mongo_outbox.enqueue() must run inside the change's transaction")
    event = new_event(merchant_id, payload, occurred_at=occurred_at)
    counter = database[SEQUENCES_COLLECTION].find_one_and_update(
        {"_id": lane_for(event.key)},
        {"$inc": {"seq": 1}},
        # ensure_outbox() creates the counters; the upsert only covers a dropped collection.
        upsert=True,
        return_document=ReturnDocument.AFTER,
        session=session,
    )
    assert counter is not None  # an upsert returning the document after always finds it
    database[OUTBOX_COLLECTION].insert_one(
        outbox_document(event, seq=counter["seq"]), session=session
    )
    return event.envelope


def ensure_outbox(database: Database[Document]) -> None:
    """Indexes plus every lane's counter and lease document (blocking; idempotent).

    Creating the lane documents up front keeps writers' transactions from racing to insert
    a counter (a duplicate key there would fail the change, not just retry it).
    """
    outbox = database[OUTBOX_COLLECTION]
    # The claim's walk of a lane, and pending lanes, backlog and purge (sent_at first).
    outbox.create_index([("lane", ASCENDING), ("seq", ASCENDING)], name="lane_seq")
    outbox.create_index(
        [("sent_at", ASCENDING), ("lane", ASCENDING), ("seq", ASCENDING)], name="sent_lane_seq"
    )
    _create_lane_documents(database[SEQUENCES_COLLECTION], {"seq": 0})
    _create_lane_documents(
        database.get_collection(LEASES_COLLECTION, write_concern=_LEASE_WRITE_CONCERN),
        {"owner": None, "expires_at": _RELEASED, "seen_through": 0},
    )


def _create_lane_documents(collection: Collection[Document], initial: Document) -> None:
    requests = [
        UpdateOne({"_id": lane}, {"$setOnInsert": initial}, upsert=True)
        for lane in range(OUTBOX_LANES)
    ]
    try:
        collection.bulk_write(requests, ordered=False)
    except BulkWriteError as exc:
        # Another process creating them at the same moment: theirs are as good as ours.
        if any(error["code"] != _DUPLICATE_KEY for error in exc.details["writeErrors"]):
            raise


# How long an erasure waits for a relay to release a lane it is publishing (a lease that
# outlives this is expired by then: lease_seconds_for bounds every publication).
REDACT_WAIT_SECONDS = 180.0
# What an erasure's own hold on a lane lasts if its process dies holding it.
_REDACT_LEASE = timedelta(seconds=60)


def redact_unsent(
    database: Database[Document],
    merchant_id: str,
    identifiers: Iterable[str],
    replacement: str | Callable[[str], str],
    *,
    wait_seconds: float = REDACT_WAIT_SECONDS,
) -> int:
    """Rewrites the merchant's events not yet published that name the customer (any of
    `identifiers`) to name `replacement` (one id, or each identifier's: the erasure's
    CustomerRef.anonymous_id) (blocking; a worker thread). The counterpart of
    personal_data.redact_unsent_events; see platform/events/redaction.py for what changes.

    The lanes concerned are leased first, as a relay leases them, so no relay publishes
    them meanwhile: an event published before is deleted (it names the customer and is out
    of reach), the others are redacted before any relay can send them. Idempotent: a
    redacted event no longer names the customer. Returns the events changed."""
    redactor = Redactor(identifiers, replacement)
    if not redactor.identifiers:
        return 0
    outbox = database.get_collection(OUTBOX_COLLECTION, codec_options=CODEC_OPTIONS)
    needles = redactor.needles
    found = [
        doc
        for doc in outbox.find(
            {"sent_at": None, **_of_merchant(merchant_id)}, {"lane": 1, "envelope": 1}
        )
        if any(needle in bytes(doc["envelope"]) for needle in needles)
    ]
    if not found:
        return 0
    with _holding_lanes(database, {doc["lane"] for doc in found}, wait_seconds):
        changed = 0
        for doc in outbox.find({"_id": {"$in": [doc["_id"] for doc in found]}}):
            if doc["sent_at"] is not None:  # published before the lease: forget it
                changed += outbox.delete_one({"_id": doc["_id"]}).deleted_count
                continue
            redacted = redactor.record(bytes(doc["envelope"]), doc["partition_key"])
            if redacted is None:
                continue
            changed += outbox.update_one(
                {"_id": doc["_id"], "sent_at": None},
                {"$set": {"envelope": Binary(redacted.envelope), "partition_key": redacted.key}},
            ).modified_count
        return changed


def drop_merchant_events(
    database: Database[Document], merchant_id: str, *, wait_seconds: float = REDACT_WAIT_SECONDS
) -> int:
    """Deletes every event of the merchant, published or not (shop/redact; blocking), the
    lanes of the unpublished ones leased first: the counterpart of
    personal_data.drop_merchant_events."""
    outbox = database.get_collection(OUTBOX_COLLECTION, codec_options=CODEC_OPTIONS)
    lanes = set(outbox.distinct("lane", {"sent_at": None, **_of_merchant(merchant_id)}))
    with _holding_lanes(database, lanes, wait_seconds):
        return outbox.delete_many(_of_merchant(merchant_id)).deleted_count


def _of_merchant(merchant_id: str) -> Document:
    return {
        "$or": [
            {"partition_key": merchant_id},
            {"partition_key": {"$regex": f"^{re.escape(merchant_id)}/"}},
        ]
    }


@contextlib.contextmanager
def _holding_lanes(
    database: Database[Document], lanes: Iterable[int], wait_seconds: float
) -> Iterator[None]:
    """Leases `lanes` as a relay would (waiting for relays holding them), releasing them on
    exit: no relay publishes them meanwhile."""
    wanted = sorted(lanes)
    if not wanted:
        yield
        return
    leases = database.get_collection(
        LEASES_COLLECTION, codec_options=CODEC_OPTIONS, write_concern=_LEASE_WRITE_CONCERN
    )
    # Relays create the lease documents when they first run; an outbox none has read yet
    # may have none.
    _create_lane_documents(leases, {"owner": None, "expires_at": _RELEASED, "seen_through": 0})
    token = f"erasure-{uuid.uuid4().hex}"
    deadline = time.monotonic() + wait_seconds
    try:
        for lane in wanted:
            while True:
                now = now_millis()
                taken = leases.update_one(
                    {"_id": lane, "$or": [{"owner": None}, {"expires_at": {"$lte": now}}]},
                    {"$set": {"owner": token, "expires_at": now + _REDACT_LEASE}},
                )
                if taken.modified_count:
                    break
                if time.monotonic() > deadline:
                    # The erasure is retried (AdminCore's step stays pending), never INTERNAL.
                    raise Unavailable(
                        f"outbox lane {lane} is held by a relay; retry the erasure",
                        retry_after_seconds=5.0,
                    )
                time.sleep(0.05)
        yield
    finally:
        leases.update_many(
            {"_id": {"$in": wanted}, "owner": token},
            {"$set": {"owner": None, "expires_at": _RELEASED}},
        )


@dataclass
class _LaneRun:
    """What a claim found in one lane: up to where its seqs are known, what it may send."""

    lane: int
    seen_through: int
    rows: list[PendingRow[str]]


class MongoClaim:
    """Events of the lanes a relay holds until `MongoOutbox.claim()` exits."""

    def __init__(self, outbox: Collection[Document], calls: MongoCalls) -> None:
        self._outbox = outbox
        self._calls = calls
        self.rows: Sequence[PendingRow[str]] = ()

    async def mark_sent(self, ids: Sequence[str]) -> None:
        if ids:
            await self._calls.run(
                partial(
                    self._outbox.update_many,
                    # Keeps the first sent_at if a republished event is acknowledged again.
                    {"_id": {"$in": list(ids)}, "sent_at": None},
                    {"$set": {"sent_at": now_millis()}},
                )
            )


class MongoOutbox:
    """The relay's side of one MongoDB database's outbox (an OutboxSource)."""

    def __init__(
        self,
        database: Database[Document],
        *,
        name: str | None = None,
        lease_seconds: float,
        gap_timeout_seconds: float = DEFAULT_GAP_TIMEOUT_SECONDS,
    ) -> None:
        """`name` labels the relay's metrics and logs (the service's schema name for
        PostgreSQL outboxes); defaults to the database name. `lease_seconds`: see
        `lease_seconds_for`."""
        self.name = name or database.name
        self._database = database
        self._calls = MongoCalls(database.client)
        self._outbox = database.get_collection(OUTBOX_COLLECTION, codec_options=CODEC_OPTIONS)
        self._leases = database.get_collection(
            LEASES_COLLECTION, codec_options=CODEC_OPTIONS, write_concern=_LEASE_WRITE_CONCERN
        )
        self._lease = timedelta(seconds=lease_seconds)
        self._gap_timeout = gap_timeout_seconds
        # (lane, first missing seq) -> when this process first saw the hole (monotonic).
        self._holes: dict[tuple[int, int], float] = {}
        self._prepared = False

    @contextlib.asynccontextmanager
    async def claim(self, limit: int, lanes: int) -> AsyncIterator[MongoClaim]:
        """Leases up to `lanes` lanes with pending events and yields up to `limit` of their
        events, oldest first per lane; the leases are released when the block exits."""
        if not self._prepared:  # whoever starts first (writer or relay) creates the lanes
            await self._calls.run(partial(ensure_outbox, self._database))
            self._prepared = True
        token = uuid.uuid4().hex
        started = time.monotonic()
        held = await self._calls.run(partial(self._acquire, lanes, token))
        claim = MongoClaim(self._outbox, self._calls)
        runs: list[_LaneRun] = []
        try:
            if held:
                found = await self._calls.run(partial(self._read, held, limit))
                runs = [self._walk(lane, held[lane], docs) for lane, docs in found.items()]
                claim.rows = [row for run in runs for row in run.rows]
            yield claim
        finally:
            if held:
                seen = {run.lane: run.seen_through for run in runs}
                kept = await self._calls.run(partial(self._release, token, held, seen))
                overran = time.monotonic() - started > self._lease.total_seconds()
                if kept < len(held) or overran:
                    log.error(
                        "outbox lease lost while publishing: another relay may have published"
                        " these lanes at the same time (lease shorter than a publication?)",
                        schema=self.name,
                        lanes=sorted(held),
                        lease_seconds=self._lease.total_seconds(),
                    )

    def _acquire(self, lanes: int, token: str) -> dict[int, int]:
        """Lane -> seen_through of the lanes leased to `token`."""
        pending = self._outbox.distinct("lane", {"sent_at": None})
        if not pending:
            return {}
        now = now_millis()
        free = {"$or": [{"owner": None}, {"expires_at": {"$lte": now}}]}
        candidates = [doc["_id"] for doc in self._leases.find({"_id": {"$in": pending}, **free})]
        if not candidates:
            return {}
        # Random lanes, as PostgreSQL's ORDER BY random(): relays spread over the lanes.
        wanted = random.sample(candidates, min(lanes, len(candidates)))
        self._leases.update_many(
            {"_id": {"$in": wanted}, **free},
            {"$set": {"owner": token, "expires_at": now + self._lease}},
        )
        # Each lane's update re-checks `free`: a lane another relay took meanwhile is not ours.
        return {doc["_id"]: doc["seen_through"] for doc in self._leases.find({"owner": token})}

    def _read(self, held: Mapping[int, int], limit: int) -> dict[int, list[Document]]:
        """Per held lane, its pending events at or below seen_through, then every event
        above it, in seq order; `limit` in all, lanes in random order so none is always
        last."""
        found: dict[int, list[Document]] = {}
        budget = limit
        for lane in random.sample(list(held), len(held)):
            if budget <= 0:
                break
            seen_through = held[lane]
            # Two index range scans (sent_lane_seq, then lane_seq), not one query with $or:
            # that would walk the lane's whole history of sent events, or sort in memory.
            retries = list(
                self._outbox.find(
                    {"sent_at": None, "lane": lane, "seq": {"$not": {"$gt": seen_through}}},
                    _RELAY_FIELDS,
                )
                .sort("seq", ASCENDING)
                .limit(budget)
            )
            # Those without seq (written before it existed) match too and sort first; among
            # themselves they go by age.
            unnumbered = [doc for doc in retries if doc.get("seq") is None]
            numbered = [doc for doc in retries if doc.get("seq") is not None]
            docs = sorted(unnumbered, key=lambda doc: doc["created_at"]) + numbered
            if len(docs) < budget:
                above = self._outbox.find(
                    {"lane": lane, "seq": {"$gt": seen_through}}, _RELAY_FIELDS
                )
                docs += list(above.sort("seq", ASCENDING).limit(budget - len(docs)))
            found[lane] = docs
            budget -= len(docs)
        return found

    def _walk(self, lane: int, seen_through: int, docs: Sequence[Document]) -> _LaneRun:
        """The lane's pending events that may leave now: those at or below seen_through, then
        the run above it up to the first hole (unless the hole outlived gap_timeout)."""
        run = _LaneRun(lane, seen_through, [])
        for doc in docs:
            seq = doc.get("seq")
            if seq is not None and seq > run.seen_through:
                expected = run.seen_through + 1
                if seq > expected and not self._hole_expired(lane, expected, seq):
                    break
                run.seen_through = seq
            if doc["sent_at"] is None:
                record = OutgoingRecord.of(
                    doc["topic"], doc["partition_key"], bytes(doc["envelope"]), doc["headers"]
                )
                run.rows.append(PendingRow(doc["_id"], record))
        for hole in [h for h in self._holes if h[0] == lane and h[1] <= run.seen_through]:
            del self._holes[hole]  # filled (or skipped): forget it
        return run

    def _hole_expired(self, lane: int, missing: int, next_seq: int) -> bool:
        now = time.monotonic()
        first_seen = self._holes.setdefault((lane, missing), now)
        if now - first_seen < self._gap_timeout:
            return False
        del self._holes[(lane, missing)]
        log.warning(
            "outbox lane has a hole; publishing past it",
            schema=self.name,
            lane=lane,
            missing_seqs=f"{missing}..{next_seq - 1}",
            waited_seconds=round(now - first_seen, 1),
        )
        return True

    def _release(self, token: str, held: Mapping[int, int], seen: Mapping[int, int]) -> int:
        """Frees the lanes still leased to `token`, saving how far each was seen; returns how
        many were still ours."""
        requests = [
            UpdateOne(
                {"_id": lane, "owner": token},
                {
                    "$set": {"owner": None, "expires_at": _RELEASED},
                    # Never backwards, whoever saved a later value.
                    "$max": {"seen_through": seen.get(lane, seen_through)},
                },
            )
            for lane, seen_through in held.items()
        ]
        return self._leases.bulk_write(requests, ordered=False).matched_count

    async def backlog(self) -> Backlog:
        return await self._calls.run(self._backlog)

    def _backlog(self) -> Backlog:
        pending = self._outbox.count_documents({"sent_at": None})
        oldest = self._outbox.find_one(
            {"sent_at": None}, {"created_at": 1}, sort=[("created_at", ASCENDING)]
        )
        if oldest is None:
            return Backlog(pending, 0.0)
        # Writers' clocks, not the server's (PostgreSQL uses its own): skew shows here only.
        age = (datetime.now(UTC) - oldest["created_at"]).total_seconds()
        return Backlog(pending, max(0.0, age))

    async def purge_sent(self, older_than_seconds: float, limit: int = 10_000) -> int:
        return await self._calls.run(partial(self._purge_sent, older_than_seconds, limit))

    def _purge_sent(self, older_than_seconds: float, limit: int) -> int:
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        # In slices, as for PostgreSQL: one huge delete would hold up the writers.
        ids = [
            doc["_id"]
            for doc in self._outbox.find({"sent_at": {"$lt": cutoff}}, {"_id": 1}).limit(limit)
        ]
        if not ids:
            return 0
        return self._outbox.delete_many(
            {"_id": {"$in": ids}, "sent_at": {"$ne": None}}
        ).deleted_count
