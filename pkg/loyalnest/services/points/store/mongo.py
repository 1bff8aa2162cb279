"""MongoDB ledger store: a balance document per customer plus immutable transactions.

Mirrors the PostgreSQL store. The balance document is changed only by one conditional
`find_one_and_update` (guard on `balance`, `$inc` of the totals and `last_sequence`), which
MongoDB applies atomically to one document, so concurrent debits cannot overdraw.

Idempotency differs in one way: PostgreSQL lets a concurrent first call block on the key's
row lock, MongoDB has no such wait. A key is therefore claimed first, by an insert against a
unique index; a call that finds the key claimed but not yet recorded polls for the result for
a bounded time and then fails with ABORTED so the client retries. Where the server supports
transactions (replica set, sharded cluster), the balance update, the transaction document and
the key's result are committed together; a crashed claimant's key is then provably without
effect and is taken over once its lease has expired. Without transactions (a standalone
server) the steps run one by one: a posting that fails other than by a refusal keeps its key
claimed, since it may have taken effect, and retries with that key get ABORTED.

Events: each posting enqueues its event (points.earned/redeemed/adjusted) in the outbox in
the same session, so with transactions the event commits with the posting; without them a
crash between the two loses the event, and per-customer order can degrade (see
loyalnest.platform.events.mongo_outbox, whose MongoOutbox the service's relay publishes).

pymongo's synchronous client runs in worker threads: the same code then also runs against
mongomock-ng in tests (loyalnest.platform.mongo says what the fake needs besides).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

from google.protobuf.message import Message
from pymongo import ASCENDING, DESCENDING, MongoClient, ReturnDocument
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, OperationFailure
from pymongo.write_concern import WriteConcern

from loyalnest.platform.errors import Aborted, NotFound
from loyalnest.platform.events import mongo_outbox
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.mongo_outbox import OUTBOX_COLLECTION
from loyalnest.platform.idempotency import (
    INTERNAL,
    REQUEST,
    IdempotencyKey,
    IdempotencyKeyReused,
    ensure_same_request,
)
from loyalnest.platform.mongo import CODEC_OPTIONS, MongoCalls, to_millis
from loyalnest.platform.mongo import now_millis as _now
from loyalnest.platform.observability import get_logger
from loyalnest.platform.personal_data import CustomerExport, CustomerRef
from loyalnest.services.points.domain import (
    Balance,
    Channel,
    InsufficientPoints,
    LedgerMoved,
    LedgerNotFound,
    LimitPeriod,
    Posting,
    PostingResult,
    Redemption,
    RedemptionGuard,
    RedemptionLimitReached,
    RedemptionLimitUnsupported,
    RedemptionStatus,
    Reward,
    RewardInactive,
    RewardKind,
    RewardNotFound,
    Segment,
    TierInput,
    TierRequired,
    TierState,
    Transaction,
    TransactionType,
    net_totals,
    pending_redemption,
)
from loyalnest.services.points.events import ledger_event
from loyalnest.services.points.liability import LiabilityFigures, LiabilityUnsupported
from loyalnest.services.points.orders import (
    OrderAdjustment,
    OrderEarning,
    OrderSettlement,
    OrderStatus,
)
from loyalnest.services.points.rules import RuleEvent
from loyalnest.services.points.store.base import (
    OrderCredit,
    RecordedOrder,
    erased_customer_id,
    ledger_history,
    reward_columns,
    reward_row,
)

log = get_logger(__name__)

T = TypeVar("T")
Document = dict[str, Any]

BALANCES = "points_balances"
TRANSACTIONS = "points_transactions"
IDEMPOTENCY_KEYS = "idempotency_keys"
REWARDS = "rewards"
REWARD_REDEMPTIONS = "reward_redemptions"
POS_OFFLINE_QUEUE = "pos_offline_queue"
PROGRAM_SETTINGS = "program_settings_copies"
ORDER_EARNINGS = "order_earnings"
PROCESSED_EVENTS = "processed_events"
EXPIRY_NOTICES = "points_expiry_notices"
RULE_EVENTS = "rule_events"
CUSTOMER_TIERS = "customer_tiers"
TIER_JOB_PROGRESS = "tier_job_progress"
CUSTOMER_SEGMENTS = "customer_segments"
_KEY_INDEX = "merchant_namespace_key_unique"
# Before namespaces (merchant_id, idempotency_key): dropped once its keys are migrated.
_LEGACY_KEY_INDEX = "merchant_key_unique"

_NO_UPPER_BOUND = 2**63 - 1
# A ledger write must survive a primary failover, or a replay could miss its result.
_LEDGER_WRITE_CONCERN = WriteConcern("majority")
# A concurrent first credit may lose the race to create the balance document; one retry
# then finds it, more attempts only guard against pathological interleavings.
_UPSERT_ATTEMPTS = 3


def mark_processed(
    processed: Collection[Any], event: ConsumedEvent, session: ClientSession | None
) -> bool:
    """Records the event as applied by its consumer, in the caller's session (transaction, if
    any); False when
    it was recorded before (a redelivery: the caller applies nothing)."""
    try:
        processed.insert_one(
            {
                "consumer": event.consumer,
                "event_id": event.event_id,
                "topic": event.topic,
                "partition": event.partition,
                "offset": event.offset,
                "processed_at": _now(),
            },
            session=session,
        )
    except DuplicateKeyError:
        return False
    return True


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _transaction(doc: Mapping[str, Any]) -> Transaction:
    return Transaction(
        transaction_id=doc["transaction_id"],
        merchant_id=doc["merchant_id"],
        customer_id=doc["customer_id"],
        sequence=doc["sequence"],
        type=TransactionType(doc["type"]),
        points=doc["points"],
        reason=doc["reason"],
        created_at=_utc(doc["created_at"]),
        balance_after=doc["balance_after"],
        lifetime_earned_after=doc["lifetime_earned_after"],
        lifetime_redeemed_after=doc["lifetime_redeemed_after"],
        rule_id=doc.get("rule_id", ""),
    )


def _legacy_key_namespace(
    doc: Mapping[str, Any], transaction: Mapping[str, Any] | None
) -> tuple[str, str]:
    """The namespace and key of an idempotency key stored before namespaces. A key moves out
    of the clients' namespace only when it provably is the service's own: its fingerprint is
    the one the service computed (a client key's hashes its RPC's name first, never equal)."""
    key, fingerprint = doc["idempotency_key"], doc["request_fingerprint"]
    if key.startswith("order:") and transaction is not None:
        # Order credits and reversals: IdempotencyKey.internal(key, customer_id, points).
        own = IdempotencyKey.internal(key, transaction["customer_id"], abs(transaction["points"]))
        if own.fingerprint == fingerprint:
            return INTERNAL, key
    refund = "refund:reward-redemption:"
    if key.startswith(refund):
        own_fingerprint = hashlib.sha256(f"RewardRefund\0{key[len(refund) :]}".encode())
        if own_fingerprint.hexdigest() == fingerprint:
            return INTERNAL, key
    pos = "pos-offline:"
    # POS offline items hash the whole item; offline sync ends every reason with the device.
    if key.startswith(pos) and transaction is not None and " (device " in transaction["reason"]:
        return "pos-offline", key[len(pos) :]
    return REQUEST, key


class _LedgerCreationRace(Exception):
    """Another call created the balance document between our lookup and our insert."""


class _OrderRecorded(Exception):
    """record_approved_order: the merchant's order was recorded before (nothing written)."""


# Raised before the balance document changed.
_NOTHING_WRITTEN = (
    LedgerNotFound,
    InsufficientPoints,
    LedgerMoved,
    _LedgerCreationRace,
    _OrderRecorded,
    # A redemption's refusals (RedemptionGuard), raised before its debit.
    RedemptionLimitReached,
    RewardInactive,
    TierRequired,
)
# Redemptions that count against a per-customer limit (not refunded, not cancelled).
_REDEEMED = [str(RedemptionStatus.PENDING), str(RedemptionStatus.COMPLETED)]
# Runs in a posting's transaction: before the balance changes, and with its transaction.
Before = Callable[[ClientSession | None], None]
After = Callable[[Transaction, ClientSession | None], None]


class _ClaimLost(Aborted):
    def __init__(self) -> None:
        super().__init__("idempotency key was taken over by a retry while this request ran; retry")


class MongoLedgerStore:
    def __init__(
        self,
        database: Database[Document],
        *,
        claim_wait_seconds: float = 5.0,
        claim_lease_seconds: float = 60.0,
        transactions: bool | None = None,
        owns_client: bool = False,
        processed_retention_seconds: float = 14 * 24 * 3600,
    ) -> None:
        """Uses `database` (a pymongo or mongomock-ng Database); `close` leaves its client
        open unless `owns_client`.

        `processed_retention_seconds`: how long consumed event ids are kept for deduplication
        (a TTL index; the PostgreSQL services' inbox purge loop does the same).
        `claim_wait_seconds`: how long a call waits for a concurrent call with the same key.
        `claim_lease_seconds`: how old an unrecorded claim must be before a retry may take
        it over (only with transactions); must exceed the longest a posting can take.
        `transactions`: None asks the server whether it supports them; False forces the
        standalone-server path (tests use it to cover that path on a fake).
        """
        self._database = database
        self._client: MongoClient[Document] = database.client
        self._owns_client = owns_client
        # Serialised on mongomock-ng (see loyalnest.platform.mongo).
        self._calls = MongoCalls(self._client)
        self._fake = self._calls.fake
        self._claim_wait = claim_wait_seconds
        self._claim_lease = timedelta(seconds=claim_lease_seconds)
        self._transactions = transactions
        self._processed_retention = int(processed_retention_seconds)

        def collection(name: str) -> Collection[Document]:
            return database.get_collection(name, codec_options=CODEC_OPTIONS)

        self._balances = collection(BALANCES)
        self._ledger = collection(TRANSACTIONS)
        self._keys = collection(IDEMPOTENCY_KEYS)
        self._rewards = collection(REWARDS)
        self._redemptions = collection(REWARD_REDEMPTIONS)
        self._pos_queue = collection(POS_OFFLINE_QUEUE)
        self._outbox = collection(OUTBOX_COLLECTION)
        self._processed = collection(PROCESSED_EVENTS)
        self._programs = collection(PROGRAM_SETTINGS)
        self._orders = collection(ORDER_EARNINGS)
        self._notices = collection(EXPIRY_NOTICES)
        self._rule_events = collection(RULE_EVENTS)
        self._tiers = collection(CUSTOMER_TIERS)
        self._tier_job = collection(TIER_JOB_PROGRESS)

    @classmethod
    def connect(
        cls,
        url: str,
        database: str,
        *,
        claim_wait_seconds: float = 5.0,
        claim_lease_seconds: float = 60.0,
        transactions: bool | None = None,
        processed_retention_seconds: float = 14 * 24 * 3600,
    ) -> MongoLedgerStore:
        """Does not wait for the server: readiness (`ping`) reports when it is reachable."""
        client: MongoClient[Document] = MongoClient(
            url,
            tz_aware=True,
            tzinfo=UTC,
            appname="loyalnest-points",
            # Fail fast while the server is away: worker threads must not pile up behind it.
            serverSelectionTimeoutMS=5000,
        )
        return cls(
            client[database],
            claim_wait_seconds=claim_wait_seconds,
            claim_lease_seconds=claim_lease_seconds,
            transactions=transactions,
            owns_client=True,
            processed_retention_seconds=processed_retention_seconds,
        )

    async def close(self) -> None:
        if self._owns_client:
            await asyncio.to_thread(self._client.close)

    @property
    def database(self) -> Database[Document]:
        """The store's database, where the outbox relay (MongoOutbox) reads its events."""
        return self._database

    async def _run(self, call: Callable[[], T]) -> T:
        return await self._calls.run(call)

    async def ping(self) -> None:
        await self._run(partial(self._client.admin.command, "ping"))

    # ---- personal data (loyalnest.platform.personal_data) -------------------------------

    async def export_customer(self, merchant_id: str, customer: CustomerRef) -> CustomerExport:
        return await self._run(partial(self._export_customer, merchant_id, customer))

    def _export_customer(self, merchant_id: str, customer: CustomerRef) -> CustomerExport:
        match = {"merchant_id": merchant_id, "customer_id": customer.shopify_customer_id}
        hidden = {"_id": 0, "merchant_id": 0, "customer_id": 0}
        data: dict[str, Any] = {}
        ledger = self._balances.find_one(match, hidden)
        if ledger is not None:
            data["ledger"] = ledger
        tier = self._tiers.find_one(match, {**hidden, "version": 0, "redemption_checks": 0})
        if tier is not None:
            data["tier"] = tier
        segment = self._database.get_collection(CUSTOMER_SEGMENTS).find_one(match, hidden)
        if segment is not None:
            data["segment"] = segment
        for name, collection, order in (
            ("transactions", self._ledger, "sequence"),
            ("redemptions", self._redemptions, "created_at"),
            ("orders", self._database.get_collection(ORDER_EARNINGS), "created_at"),
            ("rule_events", self._rule_events, "at"),
            ("expiry_notices", self._notices, "expire_at"),
        ):
            found = list(collection.find(match, hidden).sort(order, ASCENDING))
            if found:
                data[name] = found
        return CustomerExport(data)

    async def erase_customer(self, merchant_id: str, customer: CustomerRef) -> int:
        return await self._run(partial(self._erase_customer, merchant_id, customer))

    def _erase_customer(self, merchant_id: str, customer: CustomerRef) -> int:
        """As in PostgreSQL, without one transaction: the ledger document first records the
        id it moves to (`erased_to`), so a retry after a crash moves what is left to the same
        id, then the history moves, the ledger last."""
        match = {"merchant_id": merchant_id, "customer_id": customer.shopify_customer_id}
        # The erasure's id, the one every service uses for the customer, unless a ledger has
        # it already (see _anonymous_ledger_id in the PostgreSQL store).
        anonymous = customer.anonymous_id(customer.shopify_customer_id)
        if self._balances.find_one({"merchant_id": merchant_id, "customer_id": anonymous}):
            anonymous = erased_customer_id()
        ledger = self._balances.find_one_and_update(
            {**match, "erased_to": {"$exists": False}},
            {"$set": {"erased_to": anonymous}},
            return_document=ReturnDocument.AFTER,
        ) or self._balances.find_one(match)
        anonymous = ledger["erased_to"] if ledger is not None else anonymous
        erased = 0
        for collection in (
            self._ledger,
            self._redemptions,
            self._database.get_collection(ORDER_EARNINGS),
        ):
            erased += collection.update_many(
                match, {"$set": {"customer_id": anonymous}}
            ).modified_count
        # Their ids name the customer (`merchant|customer|...`, see record_rule_events,
        # save_tier, record_expiry_notice): each moves to a new document under the anonymous
        # id, then the old one goes (a retry finds the copy already there).
        for collection in (self._tiers, self._rule_events, self._notices):
            for doc in list(collection.find(match)):
                suffix = doc["_id"].removeprefix(f"{merchant_id}|{customer.shopify_customer_id}")
                with contextlib.suppress(DuplicateKeyError):
                    collection.insert_one(
                        {
                            **doc,
                            "_id": f"{merchant_id}|{anonymous}{suffix}",
                            "customer_id": anonymous,
                        }
                    )
                erased += collection.delete_one({"_id": doc["_id"]}).deleted_count
        # Its events not yet published follow the ledger to the anonymous id, before the
        # ledger moves last: a retry after a crash redacts what is left to the same id.
        mongo_outbox.redact_unsent(self._database, merchant_id, customer.identifiers(), anonymous)
        if ledger is not None:
            erased += self._balances.update_one(
                match, {"$set": {"customer_id": anonymous}, "$unset": {"erased_to": ""}}
            ).modified_count
        # The tier job's resume cursor may name them: after the ledger moved (a job saving
        # the cursor meanwhile checks the ledger after its write, see save_tier_job_cursor).
        self._rewrite_tier_cursor(merchant_id, customer.shopify_customer_id, anonymous)
        # A segment is about the person and carries no amount: it goes, not moved.
        erased += self._database.get_collection(CUSTOMER_SEGMENTS).delete_many(match).deleted_count
        key = f"{merchant_id}/{customer.shopify_customer_id}"
        self._outbox.delete_many({"partition_key": key, "sent_at": {"$ne": None}})
        # As personal_data.forget_internal_keys_naming: the derived keys naming the customer.
        naming = f"(^|:){re.escape(customer.shopify_customer_id)}(:|$)"
        self._keys.delete_many(
            {
                "merchant_id": merchant_id,
                "namespace": INTERNAL,
                "idempotency_key": {"$regex": naming},
            }
        )
        return erased

    async def erase_merchant(self, merchant_id: str) -> int:
        return await self._run(partial(self._erase_merchant, merchant_id))

    def _erase_merchant(self, merchant_id: str) -> int:
        erased = 0
        for name in (
            ORDER_EARNINGS,
            REWARD_REDEMPTIONS,
            REWARDS,
            TRANSACTIONS,
            BALANCES,
            PROGRAM_SETTINGS,
            IDEMPOTENCY_KEYS,
            POS_OFFLINE_QUEUE,
            RULE_EVENTS,
            CUSTOMER_TIERS,
            EXPIRY_NOTICES,
            TIER_JOB_PROGRESS,
            CUSTOMER_SEGMENTS,
            "integrations",  # store/integrations.py
            "liability_totals",  # store/mongo_liability.py
        ):
            erased += (
                self._database.get_collection(name)
                .delete_many({"merchant_id": merchant_id})
                .deleted_count
            )
        # The program copy is keyed by the merchant alone (`_id`, save_program_settings), not
        # by a merchant_id field: the sweep above misses it (found by the GDPR proof's scan).
        erased += self._programs.delete_one({"_id": merchant_id}).deleted_count
        erased += mongo_outbox.drop_merchant_events(self._database, merchant_id)
        return erased

    async def ensure_indexes(self) -> None:
        await self._run(self._ensure_indexes)
        await self.uses_transactions()

    def _ensure_indexes(self) -> None:
        ledger = [("merchant_id", ASCENDING), ("customer_id", ASCENDING)]
        self._balances.create_index(ledger, unique=True, name="ledger_unique")
        # Unique per ledger: a second writer of a sequence number would be a bug, not a race.
        self._ledger.create_index(
            [*ledger, ("sequence", DESCENDING)], unique=True, name="ledger_sequence_unique"
        )
        self._keys.create_index(
            [("merchant_id", ASCENDING), ("namespace", ASCENDING), ("idempotency_key", ASCENDING)],
            unique=True,
            name=_KEY_INDEX,
        )
        self._migrate_key_namespaces()
        self._processed.create_index(
            [("consumer", ASCENDING), ("event_id", ASCENDING)],
            unique=True,
            name="consumer_event_unique",
        )
        # Bounded like the PostgreSQL inbox: a redelivery older than this is not expected.
        self._processed.create_index(
            [("processed_at", ASCENDING)],
            expireAfterSeconds=self._processed_retention,
            name="processed_ttl",
        )
        self._rewards.create_index(
            [("merchant_id", ASCENDING), ("created_at", ASCENDING), ("reward_id", ASCENDING)],
            name="merchant_listing",
        )
        self._orders.create_index([("approve_at", ASCENDING)], name="approve_at")
        self._orders.create_index(
            [("merchant_id", ASCENDING), ("created_at", ASCENDING)], name="merchant_month"
        )
        self._rule_events.create_index(
            [
                ("merchant_id", ASCENDING),
                ("customer_id", ASCENDING),
                ("rule_id", ASCENDING),
                ("at", ASCENDING),
            ],
            name="customer_rule_recent",
        )
        # The expiry job's walk over a merchant's customers who have points.
        self._balances.create_index(
            [("merchant_id", ASCENDING), ("customer_id", ASCENDING), ("balance", ASCENDING)],
            name="merchant_customer_balance",
        )
        # The per-customer limit's count (redeem) and ListRewards' eligibility.
        self._redemptions.create_index(
            [
                ("merchant_id", ASCENDING),
                ("customer_id", ASCENDING),
                ("reward_id", ASCENDING),
                ("created_at", ASCENDING),
            ],
            name="customer_reward_recent",
        )
        for later in (self._redemptions, self._pos_queue):
            later.create_index([("customer_id", ASCENDING)], name="customer_id")
            later.create_index([("merchant_id", ASCENDING)], name="merchant_id")
        mongo_outbox.ensure_outbox(self._database)

    async def uses_transactions(self) -> bool:
        if self._transactions is None:
            self._transactions = await self._run(self._detect_transactions)
            if not self._transactions:
                log.warning(
                    "MongoDB without transactions (standalone server): a crash during a"
                    " posting can leave its idempotency key claimed; retries with that key"
                    " get ABORTED until the claim is removed. Use a replica set."
                )
        return self._transactions

    def _detect_transactions(self) -> bool:
        if self._fake:
            return True  # its transactions are safe under platform.mongo.FAKE_LOCK
        try:
            hello = self._client.admin.command("hello")
        except OperationFailure:  # servers before 4.4.2
            hello = self._client.admin.command("isMaster")
        return "setName" in hello or hello.get("msg") == "isdbgrid"

    async def get_balance(self, merchant_id: str, customer_id: str) -> Balance:
        doc = await self._run(
            partial(
                self._balances.find_one, {"merchant_id": merchant_id, "customer_id": customer_id}
            )
        )
        if doc is None:
            raise LedgerNotFound(customer_id)
        return Balance(
            customer_id=customer_id,
            balance=doc["balance"],
            lifetime_earned=doc["lifetime_earned"],
            lifetime_redeemed=doc["lifetime_redeemed"],
            updated_at=_utc(doc["updated_at"]),
            sequence=doc["last_sequence"],
        )

    async def post(self, posting: Posting, key: IdempotencyKey) -> PostingResult:
        transactional = await self.uses_transactions()
        token = uuid.uuid4().hex
        earlier = await self._claim(posting.merchant_id, key, token, transactional=transactional)
        if earlier is not None:
            return PostingResult.of(earlier, replayed=True)
        # One thread call for the posting and the release of the claim on failure: a
        # cancelled caller must not release a claim whose posting is still running.
        transaction = await self._run(
            partial(self._post_claimed, posting, key, token, transactional=transactional)
        )
        return PostingResult.of(transaction)

    def _key_filter(self, merchant_id: str, key: IdempotencyKey) -> Document:
        return {"merchant_id": merchant_id, "namespace": key.namespace, "idempotency_key": key.key}

    def _migrate_key_namespaces(self) -> None:
        """Keys written before namespaces existed (points_0004 does the same in PostgreSQL):
        each gets its namespace, then the old unique index, without the namespace, goes."""
        if _LEGACY_KEY_INDEX not in self._keys.index_information():
            return  # migrated already, or a new database
        for doc in self._keys.find({"namespace": {"$exists": False}}):
            ref = doc.get("result_ref")
            transaction = self._ledger.find_one({"_id": ref}) if ref is not None else None
            namespace, key = _legacy_key_namespace(doc, transaction)
            self._keys.update_one(
                {"_id": doc["_id"]}, {"$set": {"namespace": namespace, "idempotency_key": key}}
            )
        self._keys.drop_index(_LEGACY_KEY_INDEX)

    async def _claim(
        self, merchant_id: str, key: IdempotencyKey, token: str, *, transactional: bool
    ) -> Transaction | None:
        """None when this call now holds the key, else the first call's transaction."""
        key_filter = self._key_filter(merchant_id, key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._claim_wait
        delay = 0.01
        while True:
            now = _now()
            claim = {
                **key_filter,
                "request_fingerprint": key.fingerprint,
                "result_ref": None,
                "claim_token": token,
                "claimed_at": now,
                "created_at": now,
            }
            try:
                await self._run(partial(self._keys.insert_one, claim))
                return None
            except DuplicateKeyError:
                pass
            existing = await self._run(partial(self._keys.find_one, key_filter))
            if existing is not None:
                if existing["result_ref"] is not None:
                    ensure_same_request(key, existing["request_fingerprint"])
                    return await self._run(partial(self._transaction_by_id, existing["result_ref"]))
                # Like PostgreSQL, judge the fingerprint only once the holder has finished:
                # if it fails, the key is free for this request, whatever its parameters.
                stale = _utc(existing["claimed_at"]) < now - self._claim_lease
                if transactional and stale and await self._take_over(existing, key, token):
                    return None
            # Also reached when a failed holder released the key between our insert and read.
            if loop.time() >= deadline:
                raise Aborted("concurrent request with the same idempotency key in progress; retry")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    async def _take_over(self, stale: Document, key: IdempotencyKey, token: str) -> bool:
        # Safe only with transactions: the stale holder's effect and its result_ref commit
        # together, so no result_ref means no effect, and its late commit checks the token.
        now = _now()
        taken = await self._run(
            partial(
                self._keys.find_one_and_update,
                {"_id": stale["_id"], "claim_token": stale["claim_token"], "result_ref": None},
                {
                    "$set": {
                        "claim_token": token,
                        "claimed_at": now,
                        "request_fingerprint": key.fingerprint,
                    }
                },
            )
        )
        if taken is not None:
            log.warning("took over a stale idempotency claim", idempotency_key=key.key)
        return taken is not None

    def _post_claimed(
        self,
        posting: Posting,
        key: IdempotencyKey,
        token: str,
        *,
        transactional: bool,
        before: Before | None = None,
        after: After | None = None,
    ) -> Transaction:
        try:
            for attempt in range(1, _UPSERT_ATTEMPTS + 1):
                try:
                    if not transactional:
                        return self._apply_and_record(
                            posting, key, token, None, before=before, after=after
                        )
                    with self._client.start_session() as session:
                        return session.with_transaction(
                            partial(
                                self._apply_and_record,
                                posting,
                                key,
                                token,
                                before=before,
                                after=after,
                            ),
                            write_concern=_LEDGER_WRITE_CONCERN,
                        )
                except _LedgerCreationRace:
                    if attempt == _UPSERT_ATTEMPTS:
                        raise
            raise AssertionError("unreachable")  # pragma: no cover
        except BaseException as exc:
            # Free the key for a retry, as PostgreSQL's rollback does, but only when nothing
            # was posted: always so with a transaction; without one only a refusal is sure
            # to have written nothing, and after any other failure a retry must not post
            # again. Conditional on our token, so a claim taken over meanwhile stays.
            if transactional or isinstance(exc, _NOTHING_WRITTEN):
                self._keys.delete_one(
                    {
                        **self._key_filter(posting.merchant_id, key),
                        "claim_token": token,
                        "result_ref": None,
                    }
                )
            raise

    def _apply_and_record(
        self,
        posting: Posting,
        key: IdempotencyKey,
        token: str,
        session: ClientSession | None,
        *,
        before: Before | None = None,
        after: After | None = None,
    ) -> Transaction:
        if before is not None:
            before(session)
        transaction = self._apply(posting, session)
        if after is not None:
            after(transaction, session)
        recorded = self._keys.update_one(
            {
                **self._key_filter(posting.merchant_id, key),
                "claim_token": token,
                "result_ref": None,
            },
            {"$set": {"result_ref": transaction.transaction_id}},
            session=session,
        )
        if recorded.matched_count == 0:
            # Taken over as stale: aborting the transaction undoes our posting.
            raise _ClaimLost()
        return transaction

    def _apply(self, posting: Posting, session: ClientSession | None) -> Transaction:
        ledger = {"merchant_id": posting.merchant_id, "customer_id": posting.customer_id}
        now = _now()
        update: Document = {
            "$inc": {
                "balance": posting.points,
                "lifetime_earned": posting.earned,
                "lifetime_redeemed": posting.redeemed,
                "last_sequence": 1,
            },
            "$set": {"updated_at": now},
        }
        guard: Document = {}
        if posting.points < 0:
            guard = {"balance": {"$gte": -posting.points}}
        if posting.expected_sequence is not None:
            guard["last_sequence"] = posting.expected_sequence
        if posting.opens_ledger:
            update["$setOnInsert"] = {"created_at": now}
        try:
            after = self._balances.find_one_and_update(
                {**ledger, **guard},
                update,
                upsert=posting.opens_ledger,
                return_document=ReturnDocument.AFTER,
                session=session,
            )
        except DuplicateKeyError as exc:
            raise _LedgerCreationRace() from exc
        if after is None:
            current = self._balances.find_one(ledger, session=session)
            if current is None:
                raise LedgerNotFound(posting.customer_id)
            if posting.expected_sequence not in (None, current["last_sequence"]):
                raise LedgerMoved(posting.customer_id, posting.expected_sequence)
            raise InsufficientPoints(posting.customer_id, current["balance"], -posting.points)
        transaction = Transaction(
            transaction_id=str(uuid.uuid4()),
            merchant_id=posting.merchant_id,
            customer_id=posting.customer_id,
            sequence=after["last_sequence"],
            type=posting.type,
            points=posting.points,
            reason=posting.reason,
            created_at=now,
            balance_after=after["balance"],
            lifetime_earned_after=after["lifetime_earned"],
            lifetime_redeemed_after=after["lifetime_redeemed"],
            rule_id=posting.rule_id,
        )
        doc = {"_id": transaction.transaction_id, **asdict(transaction)}
        doc["type"] = str(transaction.type)
        self._ledger.insert_one(doc, session=session)
        # Same session: with transactions the event commits with the posting. Without them
        # (standalone server) a crash right here loses the event; see the module docstring.
        # After the balance update, as late as the posting allows: enqueue takes the outbox
        # lane's counter, which serialises the lane's writers until commit.
        mongo_outbox.enqueue(
            self._database,
            posting.merchant_id,
            ledger_event(transaction),
            session=session,
            occurred_at=now,
        )
        return transaction

    async def open_ledger(
        self, merchant_id: str, customer_id: str, *, event: ConsumedEvent
    ) -> bool:
        transactional = await self.uses_transactions()
        return await self._run(
            partial(self._open_ledger, merchant_id, customer_id, event, transactional)
        )

    def _open_ledger(
        self, merchant_id: str, customer_id: str, event: ConsumedEvent, transactional: bool
    ) -> bool:
        def apply(session: ClientSession | None) -> bool:
            # The upsert is idempotent, so this order is safe without transactions too: a
            # crash before the marker only repeats a no-op on redelivery.
            for attempt in range(1, _UPSERT_ATTEMPTS + 1):
                try:
                    self._open_ledger_document(merchant_id, customer_id, session)
                    break
                except DuplicateKeyError:  # a concurrent first credit created it
                    if attempt == _UPSERT_ATTEMPTS:
                        raise
            return mark_processed(self._processed, event, session)

        if not transactional:
            return apply(None)
        with self._client.start_session() as session:
            return session.with_transaction(apply, write_concern=_LEDGER_WRITE_CONCERN)

    def _open_ledger_document(
        self, merchant_id: str, customer_id: str, session: ClientSession | None
    ) -> None:
        now = _now()
        self._balances.update_one(
            {"merchant_id": merchant_id, "customer_id": customer_id},
            {
                "$setOnInsert": {
                    "balance": 0,
                    "lifetime_earned": 0,
                    "lifetime_redeemed": 0,
                    "last_sequence": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            },
            upsert=True,
            session=session,
        )

    def _transaction_by_id(self, transaction_id: str) -> Transaction:
        doc = self._ledger.find_one({"_id": transaction_id})
        if doc is None:  # pragma: no cover - written before the key's result_ref
            raise RuntimeError(f"transaction {transaction_id} recorded for a key is missing")
        return _transaction(doc)

    async def list_transactions(
        self, merchant_id: str, customer_id: str, *, limit: int, before_sequence: int | None
    ) -> list[Transaction]:
        return await self._run(
            partial(self._list_transactions, merchant_id, customer_id, limit, before_sequence)
        )

    def _list_transactions(
        self, merchant_id: str, customer_id: str, limit: int, before_sequence: int | None
    ) -> list[Transaction]:
        ledger = {"merchant_id": merchant_id, "customer_id": customer_id}
        docs: list[Document] = []
        # MongoDB reads limit 0 as "no limit"; SQL's LIMIT 0 returns nothing.
        if limit > 0:
            cursor = (
                self._ledger.find(
                    {**ledger, "sequence": {"$lt": before_sequence or _NO_UPPER_BOUND}}
                )
                .sort("sequence", DESCENDING)
                .limit(limit)
            )
            docs = list(cursor)
        if not docs and self._balances.find_one(ledger, {"_id": 1}) is None:
            raise LedgerNotFound(customer_id)
        return [_transaction(doc) for doc in docs]

    # ---- rewards catalog and redemptions ------------------------------------------------
    # Single-document writes: a reward and a redemption are each one document, so these need
    # no transaction; their ids make every write a no-op when repeated.

    async def create_reward(self, reward: Reward, fingerprint: str) -> Reward:
        return await self._run(partial(self._create_reward, reward, fingerprint))

    def _create_reward(self, reward: Reward, fingerprint: str) -> Reward:
        doc = {
            **reward_row(reward),
            "_id": _reward_doc_id(reward.merchant_id, reward.reward_id),
            "kind": str(reward.kind),
            "created_at": _millis(reward.created_at),
            "updated_at": _millis(reward.updated_at),
            "request_fingerprint": fingerprint,
        }
        try:
            self._rewards.insert_one(doc)
        except DuplicateKeyError:
            stored = self._rewards.find_one({"_id": doc["_id"]})
            assert stored is not None  # rewards are never deleted
            if stored["request_fingerprint"] != fingerprint:
                raise IdempotencyKeyReused() from None
            return _reward(stored)
        return _reward(doc)

    async def get_reward(self, merchant_id: str, reward_id: str) -> Reward:
        doc = await self._run(
            partial(self._rewards.find_one, {"_id": _reward_doc_id(merchant_id, reward_id)})
        )
        if doc is None:
            raise RewardNotFound(reward_id)
        return _reward(doc)

    async def update_reward(
        self, merchant_id: str, reward_id: str, changes: Mapping[str, object]
    ) -> Reward:
        values = reward_columns(changes)
        doc = await self._run(
            partial(
                self._rewards.find_one_and_update,
                {"_id": _reward_doc_id(merchant_id, reward_id)},
                {"$set": {**values, "updated_at": _now()}},
                return_document=ReturnDocument.AFTER,
            )
        )
        if doc is None:
            raise RewardNotFound(reward_id)
        return _reward(doc)

    async def list_rewards(
        self, merchant_id: str, *, active_only: bool, limit: int, offset: int
    ) -> list[Reward]:
        query: Document = {"merchant_id": merchant_id}
        if active_only:
            query["active"] = True

        def fetch() -> list[Document]:
            if limit <= 0:  # MongoDB reads limit 0 as "no limit"
                return []
            cursor = self._rewards.find(query).sort(
                [("created_at", ASCENDING), ("reward_id", ASCENDING)]
            )
            return list(cursor.skip(offset).limit(limit))

        return [_reward(doc) for doc in await self._run(fetch)]

    async def record_redemption(self, redemption: Redemption) -> Redemption:
        doc = _redemption_document(redemption)

        def insert() -> Document | None:
            with contextlib.suppress(DuplicateKeyError):
                self._redemptions.insert_one(doc)
            return self._redemptions.find_one({"_id": doc["_id"]})

        stored = await self._run(insert)
        assert stored is not None
        return _redemption(stored)

    async def redeem(
        self, posting: Posting, key: IdempotencyKey, reward: Reward, guard: RedemptionGuard
    ) -> tuple[PostingResult, Redemption]:
        transactional = await self.uses_transactions()
        if guard.limit_max and not transactional:
            raise RedemptionLimitUnsupported(reward.reward_id)
        token = uuid.uuid4().hex
        earlier = await self._claim(posting.merchant_id, key, token, transactional=transactional)
        if earlier is not None:
            # A debit posted before redemptions were written with it may lack its document.
            redemption = await self.record_redemption(pending_redemption(earlier, reward))
            return PostingResult.of(earlier, replayed=True), redemption

        def check(session: ClientSession | None) -> None:
            if guard.refusal is not None:
                raise guard.refusal
            if guard.tier_ids:
                self._check_tier(posting, reward, guard, session)
            if not guard.limit_max:
                return
            # In the posting's transaction, which also writes the customer's balance
            # document: of two concurrent redemptions one gets a write conflict and is
            # retried by with_transaction, and its new snapshot counts the other's.
            # find, not count_documents: the same on a server, and mongomock-ng's
            # count_documents takes no session.
            counted = len(
                list(
                    self._redemptions.find(
                        {
                            "merchant_id": posting.merchant_id,
                            "customer_id": posting.customer_id,
                            "reward_id": reward.reward_id,
                            "created_at": {"$gte": guard.since},
                            "status": {"$in": _REDEEMED},
                        },
                        {"_id": 1},
                        limit=guard.limit_max,
                        session=session,
                    )
                )
            )
            if counted >= guard.limit_max:
                raise RedemptionLimitReached(
                    reward.reward_id, reward.limit_max, reward.limit_period
                )

        def record(transaction: Transaction, session: ClientSession | None) -> None:
            doc = _redemption_document(pending_redemption(transaction, reward))
            self._redemptions.insert_one(doc, session=session)

        transaction = await self._run(
            partial(
                self._post_claimed,
                posting,
                key,
                token,
                transactional=transactional,
                before=check,
                after=record,
            )
        )
        return PostingResult.of(transaction), await self.get_redemption(
            posting.merchant_id, transaction.transaction_id
        )

    def _check_tier(
        self,
        posting: Posting,
        reward: Reward,
        guard: RedemptionGuard,
        session: ClientSession | None,
    ) -> None:
        """A tier-only reward's tier, in the debit's transaction. The read alone would not
        conflict with a tier change, so the document is written too (a counter): of the
        redemption and a concurrent save_tier one gets a write conflict and is retried by
        with_transaction, reading what the other committed. Without transactions (a
        standalone server) the check is as close to the debit as it gets, not atomic."""
        tier_key = {"_id": f"{posting.merchant_id}|{posting.customer_id}"}
        if session is not None:
            self._tiers.update_one(tier_key, {"$inc": {"redemption_checks": 1}}, session=session)
        doc = self._tiers.find_one(tier_key, session=session)
        refused = guard.tier_refusal(reward.reward_id, None if doc is None else _tier_state(doc))
        if refused is not None:
            raise refused

    async def redemption_counts(
        self, merchant_id: str, customer_id: str, since: Mapping[str, datetime]
    ) -> dict[str, int]:
        counts = dict.fromkeys(since, 0)
        if not since:
            return counts

        def find() -> list[Document]:
            return list(
                self._redemptions.find(
                    {
                        "merchant_id": merchant_id,
                        "customer_id": customer_id,
                        "reward_id": {"$in": list(since)},
                        "created_at": {"$gte": min(since.values())},
                        "status": {"$in": _REDEEMED},
                    },
                    {"reward_id": 1, "created_at": 1},
                )
            )

        for doc in await self._run(find):
            if _utc(doc["created_at"]) >= since[doc["reward_id"]]:
                counts[doc["reward_id"]] += 1
        return counts

    async def finish_redemption(
        self,
        merchant_id: str,
        redemption_id: str,
        *,
        status: RedemptionStatus,
        discount_code: str = "",
        failure: str = "",
        from_status: RedemptionStatus = RedemptionStatus.PENDING,
        gift_card_id: str = "",
        gift_card_last_characters: str = "",
    ) -> Redemption:
        doc_id = _redemption_doc_id(merchant_id, redemption_id)
        changes: Document = {"status": str(status), "failure": failure, "updated_at": _now()}
        if discount_code:  # a cancellation keeps the code it deactivated
            changes["discount_code"] = discount_code
        if gift_card_id:
            changes["gift_card_id"] = gift_card_id
        if gift_card_last_characters:
            changes["gift_card_last_characters"] = gift_card_last_characters

        def finish() -> Document | None:
            self._redemptions.update_one(
                {"_id": doc_id, "status": str(from_status)}, {"$set": changes}
            )
            return self._redemptions.find_one({"_id": doc_id})

        stored = await self._run(finish)
        if stored is None:
            raise NotFound("reward_redemption", redemption_id)
        return _redemption(stored)

    async def get_redemption(self, merchant_id: str, redemption_id: str) -> Redemption:
        doc_id = _redemption_doc_id(merchant_id, redemption_id)
        stored = await self._run(partial(self._redemptions.find_one, {"_id": doc_id}))
        if stored is None:
            raise NotFound("reward_redemption", redemption_id)
        return _redemption(stored)

    # ---- earning from orders ------------------------------------------------------------
    # An order is one document with its adjustments embedded, so every change is a
    # single-document write; `revision` makes read-modify-write steps conditional on nothing
    # having changed in between (retried when something did).

    async def save_program_settings(self, merchant_id: str, version: int, settings: bytes) -> bool:
        def save() -> bool:
            try:
                result = self._programs.update_one(
                    {"_id": merchant_id, "version": {"$lt": version}},
                    {"$set": {"version": version, "settings": settings, "updated_at": _now()}},
                    upsert=True,
                )
            except DuplicateKeyError:
                return False  # the copy held is of `version` or newer
            return result.upserted_id is not None or result.modified_count > 0

        return await self._run(save)

    async def program_settings(self, merchant_id: str) -> bytes | None:
        doc = await self._run(partial(self._programs.find_one, {"_id": merchant_id}))
        return None if doc is None else bytes(doc["settings"])

    async def program_copies(self) -> list[tuple[str, bytes]]:
        docs = await self._run(lambda: list(self._programs.find({}, {"settings": 1})))
        return [(doc["_id"], bytes(doc["settings"])) for doc in docs]

    # ---- earning rules ------------------------------------------------------------------

    async def rule_events(
        self, merchant_id: str, customer_id: str, since: Mapping[str, datetime]
    ) -> dict[str, list[RuleEvent]]:
        found: dict[str, list[RuleEvent]] = {rule_id: [] for rule_id in since}
        if not since:
            return found

        def find() -> list[Document]:
            return list(
                self._rule_events.find(
                    {
                        "merchant_id": merchant_id,
                        "customer_id": customer_id,
                        "rule_id": {"$in": list(since)},
                        "at": {"$gte": _millis(min(since.values()))},
                    }
                ).sort([("at", ASCENDING), ("occurrence", ASCENDING)])
            )

        for doc in await self._run(find):
            at = _utc(doc["at"])
            if at >= _millis(since[doc["rule_id"]]):
                found[doc["rule_id"]].append(
                    RuleEvent(
                        doc["rule_id"], doc["occurrence"], doc["points"], Decimal(doc["amount"]), at
                    )
                )
        return found

    async def record_rule_events(
        self, merchant_id: str, customer_id: str, events: Sequence[RuleEvent]
    ) -> None:
        def insert() -> None:
            for e in events:
                # The id is the (rule, occurrence): a second insert keeps the first decision.
                with contextlib.suppress(DuplicateKeyError):
                    self._rule_events.insert_one(
                        {
                            "_id": f"{merchant_id}|{customer_id}|{e.rule_id}|{e.occurrence}",
                            "merchant_id": merchant_id,
                            "customer_id": customer_id,
                            "rule_id": e.rule_id,
                            "occurrence": e.occurrence,
                            "points": e.points,
                            "amount": str(e.amount),
                            "at": _millis(e.at),
                        }
                    )

        if events:
            await self._run(insert)

    # ---- VIP tiers ----------------------------------------------------------------------

    async def save_customer_segment(
        self, merchant_id: str, customer_id: str, segment: str, at: datetime
    ) -> bool:
        return await self._run(
            partial(self._save_customer_segment, merchant_id, customer_id, segment, at)
        )

    def _save_customer_segment(
        self, merchant_id: str, customer_id: str, segment: str, at: datetime
    ) -> bool:
        # One document per customer (its id names both): the upsert matches only an older
        # one, so a newer one held makes the insert collide, which is "nothing changed".
        try:
            result = self._database.get_collection(CUSTOMER_SEGMENTS).update_one(
                {"_id": f"{merchant_id}|{customer_id}", "scored_at": {"$lt": _millis(at)}},
                {
                    "$set": {
                        "merchant_id": merchant_id,
                        "customer_id": customer_id,
                        "segment": segment,
                        "scored_at": _millis(at),
                    }
                },
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return result.modified_count > 0 or result.upserted_id is not None

    async def customer_segment(self, merchant_id: str, customer_id: str) -> str:
        doc = await self._run(
            partial(
                self._database.get_collection(CUSTOMER_SEGMENTS).find_one,
                {"_id": f"{merchant_id}|{customer_id}"},
            )
        )
        return "" if doc is None else str(doc["segment"])

    async def customer_tier(self, merchant_id: str, customer_id: str) -> TierState | None:
        doc = await self._run(
            partial(self._tiers.find_one, {"_id": f"{merchant_id}|{customer_id}"})
        )
        return None if doc is None else _tier_state(doc)

    async def save_tier(
        self,
        merchant_id: str,
        customer_id: str,
        expected: TierState | None,
        new: TierState,
        event: Message | None,
    ) -> bool:
        transactional = await self.uses_transactions()
        key = f"{merchant_id}|{customer_id}"
        fields = {
            "tier_id": new.tier_id,
            "qualifying": new.qualifying,
            "term_end": None if new.term_end is None else _millis(new.term_end),
            "changed_at": _millis(new.changed_at),
        }

        def write(session: ClientSession | None) -> bool:
            if expected is None:
                try:
                    self._tiers.insert_one(
                        {
                            "_id": key,
                            "merchant_id": merchant_id,
                            "customer_id": customer_id,
                            **fields,
                            "version": 1,
                        },
                        session=session,
                    )
                except DuplicateKeyError:
                    return False
            else:
                done = self._tiers.update_one(
                    {"_id": key, "version": expected.version},
                    {"$set": fields, "$inc": {"version": 1}},
                    session=session,
                )
                if done.modified_count == 0:
                    return False
            if event is not None:
                mongo_outbox.enqueue(self._database, merchant_id, event, session=session)
            return True

        def run() -> bool:
            if not transactional:
                return write(None)
            with self._client.start_session() as session:
                return session.with_transaction(write, write_concern=_LEDGER_WRITE_CONCERN)

        return await self._run(run)

    async def ledger_customers(self, merchant_id: str, after: str, limit: int) -> list[str]:
        def find() -> list[str]:
            cursor = (
                self._balances.find(
                    {"merchant_id": merchant_id, "customer_id": {"$gt": after}},
                    {"customer_id": 1},
                )
                .sort("customer_id", ASCENDING)
                .limit(limit)
            )
            return [doc["customer_id"] for doc in cursor]

        return await self._run(find)

    async def tier_inputs(
        self, merchant_id: str, after: str, limit: int, since: datetime | None
    ) -> list[TierInput]:
        # A read per customer (the PostgreSQL store sums in one statement per page): MongoDB
        # ledgers are the small deployments' store.
        inputs = []
        for customer_id in await self.ledger_customers(merchant_id, after, limit):

            def history(customer: str = customer_id) -> list[Transaction]:
                ledger = {"merchant_id": merchant_id, "customer_id": customer}
                return [_transaction(doc) for doc in self._ledger.find(ledger)]

            earned, redeemed = net_totals(await self._run(history), since)
            state = await self.customer_tier(merchant_id, customer_id)
            inputs.append(TierInput(customer_id, earned, redeemed, state))
        return inputs

    async def rule_events_and_tier(
        self, merchant_id: str, customer_id: str, since: Mapping[str, datetime]
    ) -> tuple[dict[str, list[RuleEvent]], TierState | None]:
        events = await self.rule_events(merchant_id, customer_id, since)
        return events, await self.customer_tier(merchant_id, customer_id)

    async def customer_tier_input(
        self, merchant_id: str, customer_id: str, since: datetime | None
    ) -> TierInput:
        # Two reads, as before the PostgreSQL store folded them into one statement.
        history = await ledger_history(self, merchant_id, customer_id)
        earned, redeemed = net_totals(history, since)
        state = await self.customer_tier(merchant_id, customer_id)
        return TierInput(customer_id, earned, redeemed, state)

    async def expiry_candidates(
        self, merchant_id: str, after: str, limit: int, cutoff: datetime, after_inactivity: bool
    ) -> tuple[str, list[str]]:
        # Every customer with points (the superset): MongoDB ledgers are the small
        # deployments' store, where the job's read per customer is affordable.
        customers = await self.customers_with_points(merchant_id, after, limit)
        return (customers[-1] if len(customers) == limit else ""), customers

    async def tier_job_cursor(self, merchant_id: str) -> str | None:
        doc = await self._run(partial(self._tier_job.find_one, {"_id": merchant_id}))
        return None if doc is None else str(doc["after_customer"])

    async def save_tier_job_cursor(self, merchant_id: str, after: str | None) -> None:
        if after is None:
            await self._run(partial(self._tier_job.delete_one, {"_id": merchant_id}))
            return
        await self._run(partial(self._save_tier_job_cursor, merchant_id, after))

    def _save_tier_job_cursor(self, merchant_id: str, after: str) -> None:
        ledger = {"merchant_id": merchant_id, "customer_id": after}
        if self._balances.find_one(ledger, {"_id": 1}) is None:
            return  # erased since the page was read: the previous cursor stays
        self._tier_job.update_one(
            {"_id": merchant_id},
            {"$set": {"merchant_id": merchant_id, "after_customer": after}},
            upsert=True,
        )
        # An erasure moves the ledger, then rewrites a cursor naming it: if it moved between
        # the check and the write, its rewrite may have looked before the write; this one
        # then sees the ledger gone (either order leaves no erased id in the cursor).
        if self._balances.find_one(ledger, {"_id": 1}) is None:
            self._rewrite_tier_cursor(merchant_id, after, None)

    def _rewrite_tier_cursor(
        self, merchant_id: str, customer_id: str, anonymous: str | None
    ) -> None:
        """A cursor naming the erased customer becomes the customer before them by id (the
        anonymous ledger aside): a resumed run neither skips anyone nor redoes anyone."""
        before = {"merchant_id": merchant_id, "customer_id": {"$lt": customer_id}}
        if anonymous is not None:
            before["customer_id"] = {"$lt": customer_id, "$ne": anonymous}
        found = list(
            self._balances.find(before, {"customer_id": 1}).sort("customer_id", DESCENDING).limit(1)
        )
        self._tier_job.update_one(
            {"_id": merchant_id, "after_customer": customer_id},
            {"$set": {"after_customer": found[0]["customer_id"] if found else ""}},
        )

    async def ledger_openings(
        self, merchant_id: str, after: str, limit: int
    ) -> list[tuple[str, datetime]]:
        def find() -> list[tuple[str, datetime]]:
            cursor = (
                self._balances.find(
                    {"merchant_id": merchant_id, "customer_id": {"$gt": after}},
                    {"customer_id": 1, "created_at": 1},
                )
                .sort("customer_id", ASCENDING)
                .limit(limit)
            )
            return [(doc["customer_id"], _utc(doc["created_at"])) for doc in cursor]

        return await self._run(find)

    # ---- points expiry ------------------------------------------------------------------

    async def liability(
        self, merchant_id: str, now: datetime, horizon_days: int
    ) -> LiabilityFigures:
        # The FIFO sums are set-based SQL (store/postgres_liability.py); not ported to Mongo.
        raise LiabilityUnsupported("mongodb")

    async def customers_with_points(self, merchant_id: str, after: str, limit: int) -> list[str]:
        def find() -> list[str]:
            cursor = (
                self._balances.find(
                    {
                        "merchant_id": merchant_id,
                        "customer_id": {"$gt": after},
                        "balance": {"$gt": 0},
                    },
                    {"customer_id": 1},
                )
                .sort("customer_id", ASCENDING)
                .limit(limit)
            )
            return [doc["customer_id"] for doc in cursor]

        return await self._run(find)

    async def record_expiry_notice(
        self, merchant_id: str, customer_id: str, expire_at: datetime, event: Message
    ) -> bool:
        transactional = await self.uses_transactions()
        # The notice's id is its key: a second insert is a duplicate, whatever the session.
        notice = {
            "_id": f"{merchant_id}|{customer_id}|{_utc(expire_at).isoformat()}",
            "merchant_id": merchant_id,
            "customer_id": customer_id,
            "expire_at": expire_at,
            "created_at": _now(),
        }

        def record(session: ClientSession | None) -> bool:
            try:
                self._notices.insert_one(notice, session=session)
            except DuplicateKeyError:
                return False
            mongo_outbox.enqueue(self._database, merchant_id, event, session=session)
            return True

        def run() -> bool:
            if not transactional:
                return record(None)
            with self._client.start_session() as session:
                return session.with_transaction(record, write_concern=_LEDGER_WRITE_CONCERN)

        return await self._run(run)

    async def record_order(self, earning: OrderEarning) -> tuple[OrderEarning, bool]:
        doc = _order_document(earning)

        def insert() -> tuple[Document, bool]:
            try:
                self._orders.insert_one(doc)
            except DuplicateKeyError:
                stored = self._orders.find_one({"_id": doc["_id"]})
                assert stored is not None  # orders are never deleted
                return stored, False
            return doc, True

        stored, inserted = await self._run(insert)
        return _order_earning(stored), inserted

    async def orders_since(
        self, merchant_id: str, since: datetime, limit: int
    ) -> list[OrderEarning]:
        query = {
            "merchant_id": merchant_id,
            "created_at": {"$gte": _millis(since)},
            "status": {"$ne": str(OrderStatus.NOT_EARNING)},
        }

        def find() -> list[OrderEarning]:
            cursor = (
                self._orders.find(query)
                .sort([("created_at", ASCENDING), ("order_id", ASCENDING)])
                .limit(limit)
            )
            return [_order_earning(doc) for doc in cursor]

        return await self._run(find)

    async def count_orders(self, merchant_id: str, since: datetime) -> int:
        query = {
            "merchant_id": merchant_id,
            "created_at": {"$gte": since},
            "status": {"$ne": str(OrderStatus.NOT_EARNING)},
        }
        return await self._run(partial(self._orders.count_documents, query))

    async def add_order_adjustment(
        self, merchant_id: str, order_id: str, adjustment: OrderAdjustment
    ) -> OrderAdjustment | None:
        doc_id = _order_doc_id(merchant_id, order_id)

        def add() -> OrderAdjustment | None:
            while True:
                doc = self._orders.find_one({"_id": doc_id})
                if doc is None:
                    return None
                existing = [OrderAdjustment(**a) for a in doc["adjustments"]]
                for earlier in existing:
                    if earlier.adjustment_id == adjustment.adjustment_id:
                        return earlier
                remaining = doc["points"] - sum(a.points for a in existing)
                capped = OrderAdjustment(
                    adjustment.adjustment_id,
                    max(0, min(adjustment.points, remaining)),
                    adjustment.reason,
                )
                result = self._orders.update_one(
                    {"_id": doc_id, "revision": doc["revision"]},
                    {"$push": {"adjustments": asdict(capped)}, "$inc": {"revision": 1}},
                )
                if result.modified_count:
                    return capped

        return await self._run(add)

    async def order_settlement(self, merchant_id: str, order_id: str) -> OrderSettlement | None:
        doc = await self._run(
            partial(self._orders.find_one, {"_id": _order_doc_id(merchant_id, order_id)})
        )
        return None if doc is None else _settlement(doc)

    async def orders_to_settle(self, now: datetime, limit: int) -> list[OrderSettlement]:
        query = {
            "$or": [
                {"status": str(OrderStatus.PENDING), "approve_at": {"$lte": now}},
                {"status": str(OrderStatus.APPROVING)},
                {
                    "status": str(OrderStatus.APPROVED),
                    "adjustments": {"$elemMatch": {"applied": False}},
                },
            ]
        }

        def fetch() -> list[Document]:
            return list(self._orders.find(query).sort("approve_at", ASCENDING).limit(limit))

        return [_settlement(doc) for doc in await self._run(fetch)]

    async def begin_order_approval(self, merchant_id: str, order_id: str) -> OrderSettlement | None:
        doc_id = _order_doc_id(merchant_id, order_id)

        def begin() -> Document | None:
            while True:
                doc = self._orders.find_one({"_id": doc_id})
                if doc is None or doc["status"] != str(OrderStatus.PENDING):
                    return doc
                approved = max(0, doc["points"] - sum(a["points"] for a in doc["adjustments"]))
                applied = [{**a, "applied": True} for a in doc["adjustments"]]
                updated = self._orders.find_one_and_update(
                    {"_id": doc_id, "revision": doc["revision"]},
                    {
                        "$set": {
                            "status": str(OrderStatus.APPROVING),
                            "approved_points": approved,
                            "adjustments": applied,
                        },
                        "$inc": {"revision": 1},
                    },
                    return_document=ReturnDocument.AFTER,
                )
                if updated is not None:
                    return updated

        doc = await self._run(begin)
        return None if doc is None else _settlement(doc)

    def _approved(self, merchant_id: str, order_id: str, session: ClientSession | None) -> None:
        self._orders.update_one(
            {"_id": _order_doc_id(merchant_id, order_id), "status": "approving"},
            {"$set": {"status": str(OrderStatus.APPROVED)}, "$inc": {"revision": 1}},
            session=session,
        )

    async def approve_order(
        self, merchant_id: str, order_id: str, credit: OrderCredit | None
    ) -> PostingResult | None:
        if credit is None:
            await self._run(partial(self._approved, merchant_id, order_id, None))
            return None
        posting, key = credit
        transactional = await self.uses_transactions()
        token = uuid.uuid4().hex
        earlier = await self._claim(posting.merchant_id, key, token, transactional=transactional)
        if earlier is not None:
            # Posted before (a crash before the status changed, or without transactions).
            await self._run(partial(self._approved, merchant_id, order_id, None))
            return PostingResult.of(earlier, replayed=True)

        def approved(_: Transaction, session: ClientSession | None) -> None:
            self._approved(merchant_id, order_id, session)

        # In the posting's transaction; without transactions after the posting, so a crash
        # in between leaves the order APPROVING (the settlement loop replays the credit).
        transaction = await self._run(
            partial(
                self._post_claimed, posting, key, token, transactional=transactional, after=approved
            )
        )
        return PostingResult.of(transaction)

    async def record_approved_orders(
        self, items: Sequence[tuple[OrderEarning, OrderCredit]]
    ) -> list[RecordedOrder | None]:
        # No set-wise path: a document store's transaction is per order already.
        return [None] * len(items)

    async def record_approved_order(
        self, earning: OrderEarning, credit: OrderCredit | None
    ) -> RecordedOrder:
        transactional = await self.uses_transactions()
        if credit is None:
            stored, inserted = await self.record_order(earning)
            return stored, inserted, None
        if not transactional:
            # Step by step: APPROVING first, so that a crash before the credit is repaired.
            stored, inserted = await self.record_order(
                replace(earning, status=OrderStatus.APPROVING)
            )
            if not inserted:
                return stored, False, None
            result = await self.approve_order(earning.merchant_id, earning.order_id, credit)
            return earning, True, result
        posting, key = credit
        token = uuid.uuid4().hex
        try:
            earlier = await self._claim(posting.merchant_id, key, token, transactional=True)
        except IdempotencyKeyReused:
            # The key comes first here: the order recorded before with another amount (its
            # program changed between orders/create and orders/paid) is a duplicate.
            found = await self._run(
                partial(
                    self._orders.find_one,
                    {"_id": _order_doc_id(earning.merchant_id, earning.order_id)},
                )
            )
            if found is None:
                raise
            return _order_earning(found), False, None
        if earlier is not None:
            stored, inserted = await self.record_order(earning)
            return stored, inserted, PostingResult.of(earlier, replayed=True) if inserted else None
        doc = _order_document(earning)

        def insert(session: ClientSession | None) -> None:
            try:
                self._orders.insert_one(doc, session=session)
            except DuplicateKeyError as exc:
                raise _OrderRecorded() from exc  # aborts the transaction, frees the claim

        try:
            transaction = await self._run(
                partial(self._post_claimed, posting, key, token, transactional=True, before=insert)
            )
        except _OrderRecorded:
            found = await self._run(partial(self._orders.find_one, {"_id": doc["_id"]}))
            assert found is not None  # orders are never deleted
            return _order_earning(found), False, None
        return earning, True, PostingResult.of(transaction)

    async def mark_adjustment_applied(
        self, merchant_id: str, order_id: str, adjustment_id: str
    ) -> None:
        await self._run(
            partial(
                self._orders.update_one,
                {
                    "_id": _order_doc_id(merchant_id, order_id),
                    "adjustments.adjustment_id": adjustment_id,
                },
                {"$set": {"adjustments.$.applied": True}, "$inc": {"revision": 1}},
            )
        )


def _reward_doc_id(merchant_id: str, reward_id: str) -> str:
    return f"{merchant_id}/{reward_id}"


def _redemption_doc_id(merchant_id: str, redemption_id: str) -> str:
    return f"{merchant_id}/{redemption_id}"


def _millis(value: datetime) -> datetime:
    return to_millis(_utc(value))


def _reward(doc: Mapping[str, Any]) -> Reward:
    return Reward(
        merchant_id=doc["merchant_id"],
        reward_id=doc["reward_id"],
        name=doc["name"],
        kind=RewardKind(doc["kind"]),
        value=doc["value"],
        points_cost=doc["points_cost"],
        active=doc["active"],
        created_at=_utc(doc["created_at"]),
        updated_at=_utc(doc["updated_at"]),
        # Rewards stored before conditions existed have none.
        min_subtotal=doc.get("min_subtotal", ""),
        product_ids=tuple(doc.get("product_ids", ())),
        collection_ids=tuple(doc.get("collection_ids", ())),
        code_expiry_days=doc.get("code_expiry_days", 0),
        limit_max=doc.get("limit_max", 0),
        limit_period=LimitPeriod(doc.get("limit_period", LimitPeriod.EVER)),
        tier_ids=tuple(doc.get("tier_ids", ())),
        variant_id=doc.get("variant_id", ""),
        channels=tuple(Channel(c) for c in doc.get("channels", ())),
        eligible_segments=tuple(Segment(s) for s in doc.get("eligible_segments", ())),
    )


def _redemption_document(redemption: Redemption) -> Document:
    return {
        **asdict(redemption),
        "_id": _redemption_doc_id(redemption.merchant_id, redemption.redemption_id),
        "status": str(redemption.status),
        "created_at": _millis(redemption.created_at),
        "expires_at": None if redemption.expires_at is None else _millis(redemption.expires_at),
    }


def _redemption(doc: Mapping[str, Any]) -> Redemption:
    return Redemption(
        merchant_id=doc["merchant_id"],
        redemption_id=doc["redemption_id"],
        customer_id=doc["customer_id"],
        reward_id=doc["reward_id"],
        points=doc["points"],
        status=RedemptionStatus(doc["status"]),
        discount_code=doc["discount_code"],
        failure=doc["failure"],
        created_at=_utc(doc["created_at"]),
        expires_at=None if doc.get("expires_at") is None else _utc(doc["expires_at"]),
        gift_card_id=doc.get("gift_card_id", ""),
        gift_card_last_characters=doc.get("gift_card_last_characters", ""),
    )


def _order_doc_id(merchant_id: str, order_id: str) -> str:
    return f"{merchant_id}/{order_id}"


def _order_document(earning: OrderEarning) -> Document:
    return {
        **asdict(earning),
        "_id": _order_doc_id(earning.merchant_id, earning.order_id),
        "status": str(earning.status),
        # Exact as text: BSON's Decimal128 would do too, but mongomock-ng lacks it.
        "eligible_amount": str(earning.eligible_amount),
        "weighted_amount": None
        if earning.weighted_amount is None
        else str(earning.weighted_amount),
        "approve_at": _millis(earning.approve_at),
        "created_at": _millis(earning.created_at),
        "adjustments": [],
        "revision": 0,
    }


def _order_earning(doc: Mapping[str, Any]) -> OrderEarning:
    return OrderEarning(
        merchant_id=doc["merchant_id"],
        order_id=doc["order_id"],
        customer_id=doc["customer_id"],
        points=doc["points"],
        eligible_amount=Decimal(doc["eligible_amount"]),
        currency=doc["currency"],
        status=OrderStatus(doc["status"]),
        approve_at=_utc(doc["approve_at"]),
        created_at=_utc(doc["created_at"]),
        settings_version=doc["settings_version"],
        note=doc["note"],
        approved_points=doc["approved_points"],
        awards=doc.get("awards", ""),
        weighted_amount=None
        if doc.get("weighted_amount") is None
        else Decimal(doc["weighted_amount"]),
        pos=doc.get("pos", False),
    )


def _settlement(doc: Mapping[str, Any]) -> OrderSettlement:
    return OrderSettlement(_order_earning(doc), [OrderAdjustment(**a) for a in doc["adjustments"]])


def _tier_state(doc: Document) -> TierState:
    return TierState(
        tier_id=doc["tier_id"],
        qualifying=doc["qualifying"],
        term_end=None if doc["term_end"] is None else _utc(doc["term_end"]),
        changed_at=_utc(doc["changed_at"]),
        version=doc["version"],
    )
