"""The platform contract for personal data (GDPR): export and erase, per customer and merchant.

A service whose tables hold customer data declares it on its spec and hands the platform a
store implementing `PersonalDataStore`; the platform registers
`loyalnest.platform.v1.PersonalDataService` on its server, as it does health:

    SPEC = ServiceSpec(name="users", ..., personal_data=PersonalData(tables=("users",)))

    async def build(settings):
        store = UserStore(...)
        return ServiceComponents(..., personal_data=store)  # export_customer, erase_...

`tests/unit/test_personal_data_contract.py` reads every service's migrations and fails when
a table with customer columns (`CUSTOMER_COLUMNS`) is not in its spec's `tables`, and when a
declaring service is not in `HOLDERS`: a new service cannot forget the contract. AdminCore
calls every service in `HOLDERS` (its calls, its grants and the chart's NetworkPolicy edges are
derived from that tuple): adding a service is one name there.

Who may call: services only (`internal`), with a service token bound to the merchant and
carrying `<service>:personal-data` (only AdminCore's grant has it): a token for Users
(`users:personal-data`, audience loyalnest/users) is refused by Points.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from google.protobuf import json_format, struct_pb2
from psycopg import AsyncConnection

from loyalnest.gen.platform.v1 import personal_data_pb2, personal_data_pb2_grpc
from loyalnest.platform.auth.context import current_merchant_id, current_principal
from loyalnest.platform.errors import InvalidArgument, PermissionDenied
from loyalnest.platform.events import pseudonyms
from loyalnest.platform.events.redaction import Redactor
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.idempotency import INTERNAL

# What an erased customer's identifiers become where a record must stay (the ledgers' and
# events' anonymous ids).
ERASED_PREFIX = "erased:"
# An erasure's key (EraseCustomerRequest.erasure_key): random, one per GDPR request.
ERASURE_KEY_BYTES = 32

SERVICE_NAME = personal_data_pb2.DESCRIPTOR.services_by_name["PersonalDataService"].full_name

# The services AdminCore asks for a customer's data and erasure (component names as in
# registry.SERVICES). The contract test keeps it equal to the services that declare
# `personal_data`.
HOLDERS: tuple[str, ...] = (
    "auth",
    "campaign",
    "core",
    "edge",
    "event_tracking",
    "gamification",
    "points",
    "products",
    "referrals",
    "rfm",
    "users",
)
# The one service that may call the contract.
CALLER = "admin_core"

# Column names that make a table hold customer data (the contract test's rule): a customer's
# identity (Shopify's id, ours), contact details, names, sealed or not.
CUSTOMER_COLUMNS = frozenset(
    {
        "customer_id",
        "shopify_customer_id",
        "email",
        "email_ciphertext",
        "email_index",
        "phone",
        "phone_ciphertext",
        "first_name",
        "first_name_ciphertext",
        "last_name",
        "last_name_ciphertext",
        "full_name",
        "address",
        "ip_address",
        "referrer_id",
        "referee_id",
        "distinct_id",
    }
)


def permission(service: str) -> str:
    """The permission a call of `service`'s PersonalDataService needs."""
    return f"{service}:personal-data"


def caller_grants() -> frozenset[str]:
    """What AdminCore's service token may carry for the contract (SERVICE_GRANTS)."""
    return frozenset(permission(service) for service in HOLDERS)


@dataclass(frozen=True)
class PersonalData:
    """A service's declaration: the tables of its own that hold customer data, which its
    store's export and erase cover (the contract test checks the list against migrations)."""

    tables: tuple[str, ...]
    # Tables with a customer column that hold no personal data, each with the reason.
    not_personal: Mapping[str, str] = field(default_factory=dict)


def new_erasure_key() -> bytes:
    return secrets.token_bytes(ERASURE_KEY_BYTES)


def checked_erasure_key(key: bytes) -> bytes:
    """`key` as a request carried it (`erasure_key`), or INVALID_ARGUMENT naming the field."""
    if len(key) != ERASURE_KEY_BYTES:
        raise InvalidArgument.for_field(
            "erasure_key", f"an erasure key is {ERASURE_KEY_BYTES} random bytes"
        )
    return key


def anonymous_id(erasure_key: bytes, identifier: str) -> str:
    """The id `identifier` becomes in an erasure under `erasure_key` (see CustomerRef)."""
    digest = hmac.new(erasure_key, identifier.encode(), hashlib.sha256).hexdigest()
    return ERASED_PREFIX + digest[:32]


@dataclass(frozen=True)
class CustomerRef:
    """Who a request is about (see CustomerRef in personal_data.proto).

    `erasure_key` makes the anonymous ids of an erasure (`anonymous_id`): AdminCore draws one
    per GDPR request and sends it to every service (EraseCustomerRequest.erasure_key), so an
    identifier becomes the same `erased:` id in every service's rows and redacted events, and
    a consumer adding things up per customer sees one anonymous customer, not one per
    producer. Each identifier keeps its own id (a ledger under a Users id stays apart from
    the one under the Shopify id, as before). A keyed hash: without the key, which AdminCore
    forgets when the request completes, nothing leads from the customer to the id or back.
    A ref made without one gets a random key of its own (not compared: it is not identity)."""

    shopify_customer_id: str
    user_ids: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    core_customer_ids: tuple[str, ...] = ()
    erasure_key: bytes = field(default_factory=new_erasure_key, compare=False, repr=False)

    def anonymous_id(self, identifier: str) -> str:
        """What `identifier` becomes in this erasure, in every service alike."""
        return anonymous_id(self.erasure_key, identifier)

    def only(self, customer_id: str) -> CustomerRef:
        """A ref to one of this customer's ids, in the same erasure (a store keyed by it)."""
        return CustomerRef(customer_id, erasure_key=self.erasure_key)

    @classmethod
    def from_proto(cls, message: personal_data_pb2.CustomerRef) -> CustomerRef:
        return cls(
            message.shopify_customer_id,
            tuple(message.user_ids),
            tuple(message.emails),
            tuple(message.core_customer_ids),
        )

    def to_proto(self) -> personal_data_pb2.CustomerRef:
        return personal_data_pb2.CustomerRef(
            shopify_customer_id=self.shopify_customer_id,
            user_ids=self.user_ids,
            emails=self.emails,
            core_customer_ids=self.core_customer_ids,
        )

    def identifiers(self) -> tuple[str, ...]:
        """What names the customer in events: Shopify's id, their accounts' ids, emails."""
        return tuple(i for i in (self.shopify_customer_id, *self.user_ids, *self.emails) if i)

    def merged(self, other: CustomerRef) -> CustomerRef:
        """Both refs' identifiers (AdminCore gathers them from every service's export)."""

        def union(a: Sequence[str], b: Sequence[str]) -> tuple[str, ...]:
            return tuple(sorted({*a, *b} - {""}))

        return CustomerRef(
            self.shopify_customer_id or other.shopify_customer_id,
            union(self.user_ids, other.user_ids),
            union(self.emails, other.emails),
            union(self.core_customer_ids, other.core_customer_ids),
            self.erasure_key,
        )


# The erasure a service is carrying out (PersonalDataServicer.EraseCustomer), for the stores
# keyed by Shopify's id alone (ByShopifyId), whose redact_unsent_events takes its ids from it.
_ERASURE_KEY: ContextVar[bytes | None] = ContextVar("erasure_key", default=None)


@contextmanager
def erasing(customer: CustomerRef) -> Iterator[None]:
    token = _ERASURE_KEY.set(customer.erasure_key)
    try:
        yield
    finally:
        _ERASURE_KEY.reset(token)


@dataclass(frozen=True)
class CustomerExport:
    """One service's section of an export package and the identifiers it found."""

    data: Mapping[str, Any]
    found: CustomerRef | None = None


class PersonalDataStore(Protocol):
    async def export_customer(self, merchant_id: str, customer: CustomerRef) -> CustomerExport:
        """Everything the service holds about the customer (JSON-serialisable)."""
        ...

    async def erase_customer(self, merchant_id: str, customer: CustomerRef) -> int:
        """Erases or irreversibly anonymises the customer's personal data; idempotent.
        Returns the records changed (0 on a repeat)."""
        ...

    async def erase_merchant(self, merchant_id: str) -> int:
        """Erases everything held for the merchant; idempotent."""
        ...


class CustomerIdStore(Protocol):
    """A store that knows customers by Shopify's id alone (RFM, Referrals, Campaign, ...)."""

    async def export_customer(self, merchant_id: str, customer_id: str) -> Mapping[str, Any]: ...

    async def erase_customer(self, merchant_id: str, customer_id: str) -> int: ...

    async def erase_merchant(self, merchant_id: str) -> int: ...


@dataclass(frozen=True)
class ByShopifyId:
    """`PersonalDataStore` over a `CustomerIdStore`: the request's Shopify customer id is the
    one such a store keys its rows by (the other identifiers name nothing there)."""

    store: CustomerIdStore

    async def export_customer(self, merchant_id: str, customer: CustomerRef) -> CustomerExport:
        return CustomerExport(
            await self.store.export_customer(merchant_id, customer.shopify_customer_id)
        )

    async def erase_customer(self, merchant_id: str, customer: CustomerRef) -> int:
        return await self.store.erase_customer(merchant_id, customer.shopify_customer_id)

    async def erase_merchant(self, merchant_id: str) -> int:
        return await self.store.erase_merchant(merchant_id)


class PersonalDataServicer(personal_data_pb2_grpc.PersonalDataServiceServicer):
    def __init__(self, service: str, store: PersonalDataStore) -> None:
        self._service = service
        self._store = store

    def _merchant(self) -> str:
        # `internal` already refused user tokens; the permission names this service, so a
        # token meant for another service's data is refused here.
        needed = permission(self._service)
        if not current_principal().has(needed):
            raise PermissionDenied(f"this call needs the {needed!r} permission")
        return current_merchant_id()

    @staticmethod
    def _customer(message: personal_data_pb2.CustomerRef, present: bool) -> CustomerRef:
        if not present or not message.shopify_customer_id.strip():
            raise InvalidArgument.for_field(
                "customer.shopify_customer_id", "the customer's Shopify id is required"
            )
        return CustomerRef.from_proto(message)

    async def ExportCustomer(
        self, request: personal_data_pb2.ExportCustomerRequest, context: Context
    ) -> personal_data_pb2.ExportCustomerResponse:
        merchant_id = self._merchant()
        customer = self._customer(request.customer, request.HasField("customer"))
        export = await self._store.export_customer(merchant_id, customer)
        data = struct_pb2.Struct()
        json_format.ParseDict(json_safe(export.data), data)
        response = personal_data_pb2.ExportCustomerResponse(data=data)
        if export.found is not None:
            response.found.CopyFrom(export.found.to_proto())
        return response

    async def EraseCustomer(
        self, request: personal_data_pb2.EraseCustomerRequest, context: Context
    ) -> personal_data_pb2.EraseCustomerResponse:
        merchant_id = self._merchant()
        customer = self._customer(request.customer, request.HasField("customer"))
        if request.erasure_key:
            customer = replace(customer, erasure_key=checked_erasure_key(request.erasure_key))
        with erasing(customer):
            records = await self._store.erase_customer(merchant_id, customer)
        # This replica's consumers resolve the customer's pseudonym to their tombstone from now
        # on (the other replicas' caches expire: pseudonyms.PSEUDONYM_CACHE_SECONDS).
        pseudonyms.forget_customer(merchant_id, customer.shopify_customer_id)
        return personal_data_pb2.EraseCustomerResponse(records=records)

    async def EraseMerchant(
        self, request: personal_data_pb2.EraseMerchantRequest, context: Context
    ) -> personal_data_pb2.EraseMerchantResponse:
        merchant_id = self._merchant()
        records = await self._store.erase_merchant(merchant_id)
        pseudonyms.forget_customer(merchant_id)
        return personal_data_pb2.EraseMerchantResponse(records=records)


def json_safe(value: Any) -> Any:
    """`value` with datetimes, uuids, bytes and numbers a Struct cannot hold as text."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int) and abs(value) < 2**53:
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


# --- helpers for PostgreSQL stores ----------------------------------------------------------


# The published rows of one record key, and of a merchant's keys: both by the partial index
# outbox_sent_key (platform_0005), whose predicate (`sent_at IS NOT NULL`) they repeat.
FORGET_SENT = "DELETE FROM outbox WHERE sent_at IS NOT NULL AND partition_key = %s"
_MERCHANT_KEYS = "(partition_key = %s OR partition_key LIKE %s)"
DROP_MERCHANT_SENT = f"DELETE FROM outbox WHERE sent_at IS NOT NULL AND {_MERCHANT_KEYS}"


async def forget_sent_events(conn: AsyncConnection, merchant_id: str, aggregate: str) -> int:
    """Deletes the outbox rows already published for one aggregate of the merchant (their
    copy in Kafka is out of reach: see README "GDPR"). Unsent rows: `redact_unsent_events`."""
    cursor = await conn.execute(FORGET_SENT, (f"{merchant_id}/{aggregate}",))
    return cursor.rowcount


def erasure_ids(replacement: str | Callable[[str], str] | None) -> str | Callable[[str], str]:
    """`replacement`, or by default the anonymous ids of the erasure under way (`erasing`; a
    random key outside one)."""
    if replacement is not None:
        return replacement
    key = _ERASURE_KEY.get() or new_erasure_key()
    return lambda identifier: anonymous_id(key, identifier)


async def redact_unsent_events(
    conn: AsyncConnection,
    merchant_id: str,
    identifiers: Iterable[str],
    replacement: str | Callable[[str], str] | None = None,
) -> int:
    """Rewrites the merchant's outbox rows not yet published that name the customer (any of
    `identifiers`) to name their anonymous ids instead (by default the erasure's, see
    CustomerRef.anonymous_id: the same in every service), inside the caller's
    erasing transaction: once it commits, nothing naming the customer leaves this outbox.
    Redacted, not dropped: see platform/events/redaction.py and README "GDPR".

    A relay publishing one of these rows right now holds its lane (PostgresOutbox.claim):
    the lanes are locked first, so such a row is either published before (and then deleted
    here, as a published row naming the customer) or redacted before it is published.
    Returns the rows changed."""
    redactor = Redactor(identifiers, erasure_ids(replacement))
    if not redactor.identifiers:
        return 0
    # A byte search of the serialized envelopes (strings are raw UTF-8 in protobuf) finds the
    # candidates without decoding every pending row; only the pending rows are scanned.
    pending = (
        "sent_at IS NULL AND (partition_key = %(m)s OR partition_key LIKE %(prefix)s)"
        " AND EXISTS (SELECT 1 FROM unnest(%(needles)s::bytea[]) AS needle"
        "  WHERE position(needle IN envelope) > 0)"
    )
    params = {
        "m": merchant_id,
        "prefix": _like_prefix(merchant_id) + "/%",
        "needles": redactor.needles,
    }
    cursor = await conn.execute(f"SELECT id, lane FROM outbox WHERE {pending}", params)
    found = await cursor.fetchall()
    if not found:
        return 0
    # In lane order, as no relay takes them (it skips locked lanes): no deadlock.
    await conn.execute(
        "SELECT lane FROM outbox_lanes WHERE lane = ANY(%s) ORDER BY lane FOR UPDATE",
        (sorted({lane for _, lane in found}),),
    )
    ids = [id_ for id_, _ in found]
    cursor = await conn.execute(
        "SELECT id, partition_key, envelope, sent_at IS NOT NULL FROM outbox"
        " WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
        (ids,),
    )
    changed = 0
    for id_, key, envelope, sent in await cursor.fetchall():
        if sent:  # published while we waited for its lane: out of reach, forget the row
            await conn.execute("DELETE FROM outbox WHERE id = %s", (id_,))
            changed += 1
            continue
        redacted = redactor.record(bytes(envelope), key)
        if redacted is None:
            continue
        await conn.execute(
            "UPDATE outbox SET envelope = %s, partition_key = %s WHERE id = %s",
            (redacted.envelope, redacted.key, id_),
        )
        changed += 1
    return changed


async def drop_merchant_events(conn: AsyncConnection, merchant_id: str) -> int:
    """Deletes every outbox row of the merchant, published or not, in the caller's
    transaction (shop/redact). Unpublished ones are dropped, not redacted as for a customer:
    everything of the merchant is being erased in every service, and a late event would make
    a consumer that already erased the merchant hold its data again. The lanes of the
    unpublished rows are locked first, as in `redact_unsent_events`, so none leaves
    meanwhile."""
    params = (merchant_id, _like_prefix(merchant_id) + "/%")
    cursor = await conn.execute(
        f"SELECT DISTINCT lane FROM outbox WHERE sent_at IS NULL AND {_MERCHANT_KEYS}"
        " ORDER BY lane",
        params,
    )
    lanes = [lane for (lane,) in await cursor.fetchall()]
    if lanes:
        await conn.execute(
            "SELECT lane FROM outbox_lanes WHERE lane = ANY(%s) ORDER BY lane FOR UPDATE",
            (lanes,),
        )
    # Unsent and sent apart: each by its own partial index (outbox_pending, outbox_sent_key).
    # The lanes are held: a row published meanwhile was published before, so the second
    # statement finds it.
    dropped = (
        await conn.execute(f"DELETE FROM outbox WHERE sent_at IS NULL AND {_MERCHANT_KEYS}", params)
    ).rowcount
    return dropped + (await conn.execute(DROP_MERCHANT_SENT, params)).rowcount


async def forget_internal_keys_naming(
    conn: AsyncConnection, merchant_id: str, identifier: str
) -> int:
    """Deletes the merchant's internal idempotency keys (IdempotencyKey.internal, e.g.
    `rule:<rule>:<customer>:<year>`) that name `identifier` as one of their `:`-separated
    parts: they would keep the customer's id after the rows they guarded moved off it.
    A redelivered event is still recognised by the inbox's processed event ids."""
    token = _like_prefix(identifier)
    cursor = await conn.execute(
        "DELETE FROM idempotency_keys WHERE merchant_id = %s AND namespace = %s"
        " AND (idempotency_key = %s OR idempotency_key LIKE %s OR idempotency_key LIKE %s"
        " OR idempotency_key LIKE %s)",
        (merchant_id, INTERNAL, identifier, f"{token}:%", f"%:{token}", f"%:{token}:%"),
    )
    return cursor.rowcount


async def erase_platform_rows(conn: AsyncConnection, merchant_id: str) -> int:
    """The platform's tables in a service schema, for a merchant being erased: its idempotency
    keys, its outbox rows (published or not: `drop_merchant_events`), its audit rows (when
    the schema has audit_logs)."""
    erased = (
        await conn.execute("DELETE FROM idempotency_keys WHERE merchant_id = %s", (merchant_id,))
    ).rowcount
    erased += await drop_merchant_events(conn, merchant_id)
    cursor = await conn.execute("SELECT to_regclass('audit_logs') IS NOT NULL")
    row = await cursor.fetchone()
    if row is not None and row[0]:
        erased += (
            await conn.execute("DELETE FROM audit_logs WHERE merchant_id = %s", (merchant_id,))
        ).rowcount
    return erased


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
