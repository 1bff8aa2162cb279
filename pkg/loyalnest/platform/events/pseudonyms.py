"""Customer pseudonyms on Kafka: no published record holds a Shopify customer id (issue 18).

Kafka cannot be rewritten, so an erasure cannot remove a Shopify customer id from the topics.
Instead no record carries one: the outbox relay replaces every Shopify customer id of an event
(the fields `SHOPIFY_CUSTOMER_FIELDS` declares, and the record key's aggregate part) with the
customer's pseudonym, `cust_` + 32 random hex digits, before publishing; the consumer resolves
it back before a handler sees the event. Handlers and outbox rows (in the service's own,
erasable database) keep the Shopify id: only what goes to Kafka changes.

The edge owns the mapping (CustomerPseudonymService, proto/loyalnest/platform/v1/
customer_pseudonyms.proto): one random pseudonym per (merchant, Shopify customer), deleted
when the customer is erased, with a tombstone pseudonym -> the erasure's anonymous id
(`erased:...`, the id every service gave the customer), so a late record resolves to the
same anonymous customer every store already holds, never to the person. A customer erased
and back gets a new pseudonym: relays keep no cache from Shopify id to pseudonym. Consumers
cache pseudonym -> id per process (a pseudonym is never reused, so the mapping only ever
changes to its tombstone), dropped on the replica that runs the erasure and after
`PSEUDONYM_CACHE_SECONDS` on the others.

Values that are no Shopify id pass through both ways: empty ids, anonymous ids of erased
customers (`erased:`), pseudonyms already, and, on the consumer side, records published
before pseudonyms were on (their clear ids stay what they were).
"""

from __future__ import annotations

import hashlib
import re
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from loyalnest.platform.events.clients import OutgoingRecord
from loyalnest.platform.events.envelope import EVENT_TYPE_HEADER, ConsumedEvent, Envelope
from loyalnest.platform.events.topics import EVENTS, spec_for_type

PREFIX = "cust_"
_PSEUDONYM = re.compile(r"cust_[0-9a-f]{32}")
# An erased customer's id (personal_data.ERASED_PREFIX; not imported: personal_data imports
# this module).
_ERASED_PREFIX = "erased:"
# What a consumer remembers of a resolution, at most (see the module doc), and how many.
PSEUDONYM_CACHE_SECONDS = 300.0
PSEUDONYM_CACHE_SIZE = 100_000
# The owner's component name (its call target) and the permission its contract needs.
OWNER = "edge"
PERMISSION = "edge:pseudonyms"
# The services whose relays or consumers handle events that carry a Shopify customer id: they
# ask the owner. Their grants carry PERMISSION (SERVICE_GRANTS), the chart and the local
# stack give them the edge and Auth as callees; a unit test keeps it equal to the services
# that publish or consume such events (Users and Roles do neither).
CALLERS: tuple[str, ...] = (
    "admin_core",
    "auth",
    "campaign",
    "core",
    "event_tracking",
    "gamification",
    "points",
    "products",
    "referrals",
    "rfm",
)


def callees(service: str) -> set[str]:
    """What `service`'s event loops call for pseudonyms (the chart's and the local stack's
    call targets and egress): the owner, and Auth for the token (Auth makes its own)."""
    if service not in CALLERS:
        return set()
    return {OWNER} | ({"auth"} if service != "auth" else set())


# One request's entries, at most (the contract's limit).
MAX_BATCH = 1000

_EVENTS_PACKAGE = "loyalnest.events.v1."

# Every event message field that holds a Shopify customer id, by message (full name): nested
# messages included (an order's customer). A unit test fails when a string field named like
# a customer id is in neither this nor NOT_SHOPIFY_CUSTOMER_FIELDS.
SHOPIFY_CUSTOMER_FIELDS: Mapping[str, frozenset[str]] = {
    _EVENTS_PACKAGE + name: frozenset(fields)
    for name, fields in {
        "WebhookReceived": {"customer_id"},
        "ShopifyOrder": {"customer_id"},
        "ShopifyCustomer": {"customer_id"},
        "ShopifyPrivacyRequest": {"customer_id"},
        "SealedCustomerData": {"customer_id"},
        "PointsEarned": {"customer_id"},
        "PointsRedeemed": {"customer_id"},
        "PointsAdjusted": {"customer_id"},
        "PointsReversed": {"customer_id"},
        "PointsExpired": {"customer_id"},
        "PointsExpiring": {"customer_id"},
        "TierChanged": {"customer_id"},
        "RfmUpdated": {"customer_id"},
        "GdprRequestCreated": {"customer_id"},
        "CustomerCreated": {"shopify_customer_id"},
        "BadgeAwarded": {"customer_id"},
        "EmailEventCreated": {"customer_id"},
        "ReferralCreated": {"referrer_id"},
        "ReferralCompleted": {"referrer_id", "referee_id"},
    }.items()
}
# Fields named like a customer id that hold another id, each with the reason.
NOT_SHOPIFY_CUSTOMER_FIELDS: Mapping[str, str] = {
    _EVENTS_PACKAGE + "CustomerCreated.customer_id": "Core's own random uuid (its row is erased)",
    _EVENTS_PACKAGE + "CustomerUpdated.customer_id": "Core's own random uuid (its row is erased)",
}


def is_pseudonym(value: str) -> bool:
    return _PSEUDONYM.fullmatch(value) is not None


def pseudonym_of_key(key_id: str) -> str:
    """The pseudonym of the edge's customer key `key_id` (32 hex digits)."""
    return PREFIX + key_id


def key_of_pseudonym(pseudonym: str) -> str:
    return pseudonym.removeprefix(PREFIX)


def unknown_pseudonym_id(pseudonym: str) -> str:
    """What a pseudonym the edge no longer knows (its merchant erased) stands for: an
    anonymous id derived from the pseudonym alone, the same for every record that carries
    it, leading to no one."""
    return _ERASED_PREFIX + hashlib.sha256(f"pseudonym:{pseudonym}".encode()).hexdigest()[:32]


def _needs_pseudonym(value: str) -> bool:
    return bool(value) and not value.startswith(_ERASED_PREFIX) and not is_pseudonym(value)


# --- the mapping's owner, as callers see it ----------------------------------------------------


@dataclass(frozen=True)
class Resolution:
    customer_id: str
    erased: bool = False


# (merchant_id, value)
MerchantValue = tuple[str, str]


class PseudonymBackend(Protocol):
    """The edge's mapping: locally in the edge (CustomerKeys), remotely everywhere else
    (RemotePseudonyms, over CustomerPseudonymService)."""

    async def pseudonymize(self, customers: Sequence[MerchantValue]) -> list[str]: ...
    async def resolve(self, pseudonyms: Sequence[MerchantValue]) -> list[Resolution]: ...


# --- walking the declared fields ----------------------------------------------------------


def _reaches(descriptor: Any, seen: set[str] | None = None) -> bool:
    """Whether a message of this type can hold a declared field (itself or nested)."""
    seen = set() if seen is None else seen
    if descriptor.full_name in seen:
        return False
    seen.add(descriptor.full_name)
    if descriptor.full_name in SHOPIFY_CUSTOMER_FIELDS:
        return True
    return any(
        field.message_type is not None and _reaches(field.message_type, seen)
        for field in descriptor.fields
    )


_CARRIERS = frozenset(spec.event_type for spec in EVENTS if _reaches(spec.payload_type.DESCRIPTOR))
# Message types by full name: whether one can hold a declared field. _visit skips the others
# (an order's line items, money, addresses) instead of walking every field of every event.
_HOLDS: dict[str, bool] = {}


def _holds(descriptor: Any) -> bool:
    holds = _HOLDS.get(descriptor.full_name)
    if holds is None:
        holds = _HOLDS[descriptor.full_name] = _reaches(descriptor)
    return holds


def carries_customer_ids(event_type: str) -> bool:
    return event_type in _CARRIERS


def _visit(message: Message, replace: Callable[[str], str | None]) -> None:
    """Calls `replace` on every declared field's value of `message` (nested included) and
    sets the value it returns (None: left as it is)."""
    declared = SHOPIFY_CUSTOMER_FIELDS.get(message.DESCRIPTOR.full_name, frozenset())
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            entry = field.message_type
            if entry is not None and entry.GetOptions().map_entry:
                value_field = entry.fields_by_name["value"]
                if value_field.type == FieldDescriptor.TYPE_MESSAGE and _holds(
                    value_field.message_type
                ):
                    for item in value.values():
                        _visit(item, replace)
                continue
            if not _holds(entry):
                continue
            for item in value if field.is_repeated else [value]:
                _visit(item, replace)
        elif field.type == FieldDescriptor.TYPE_STRING and field.name in declared:
            if field.is_repeated:
                for index, item in enumerate(value):
                    new = replace(item)
                    if new is not None:
                        value[index] = new
            else:
                new = replace(value)
                if new is not None:
                    setattr(message, field.name, new)


def declared_values(message: Message) -> list[str]:
    found: list[str] = []

    def collect(value: str) -> None:
        found.append(value)

    _visit(message, lambda value: collect(value))
    return found


def rewrite(message: Message, mapping: Mapping[str, str]) -> None:
    """Replaces every declared field's value found in `mapping`, in place."""
    _visit(message, mapping.get)


def _header(record: OutgoingRecord, name: str) -> str | None:
    for key, value in record.headers:
        if key == name:
            return value.decode()
    return None


def _key_aggregate(key: str, merchant_id: str) -> str | None:
    prefix = merchant_id + "/"
    return key[len(prefix) :] if key.startswith(prefix) else None


# --- producer side: the outbox relay ------------------------------------------------------


@dataclass
class _Pending:
    index: int
    envelope: Envelope
    payload: Message
    key: str


class Pseudonymizer:
    """Replaces Shopify customer ids with pseudonyms in records about to be published: one
    `backend.pseudonymize` per batch, no cache (a customer erased and back gets a new
    pseudonym)."""

    def __init__(self, backend: PseudonymBackend) -> None:
        self._backend = backend

    async def records(self, records: Sequence[OutgoingRecord]) -> list[OutgoingRecord]:
        out = list(records)
        pending: list[_Pending] = []
        wanted: dict[MerchantValue, None] = {}
        for index, record in enumerate(records):
            declared = _header(record, EVENT_TYPE_HEADER)
            if declared is not None and not carries_customer_ids(declared):
                continue  # most events: not even decoded
            envelope = Envelope.FromString(record.value)
            if not carries_customer_ids(envelope.event_type):
                continue
            payload = spec_for_type(envelope.event_type).payload_type()
            envelope.payload.Unpack(payload)
            key = (record.key or b"").decode()
            merchant = envelope.merchant_id
            values = declared_values(payload)
            aggregate = _key_aggregate(key, merchant)
            if aggregate is not None and aggregate in values:
                values.append(aggregate)
            values = [value for value in values if _needs_pseudonym(value)]
            if not values:
                continue
            for value in values:
                wanted[(merchant, value)] = None
            pending.append(_Pending(index, envelope, payload, key))
        if not pending:
            return out
        asked = list(wanted)
        answers: list[str] = []
        for start in range(0, len(asked), MAX_BATCH):
            answers += await self._backend.pseudonymize(asked[start : start + MAX_BATCH])
        by_merchant: dict[str, dict[str, str]] = {}
        for (merchant, value), pseudonym in zip(asked, answers, strict=True):
            by_merchant.setdefault(merchant, {})[value] = pseudonym
        for item in pending:
            merchant = item.envelope.merchant_id
            mapping = by_merchant[merchant]
            rewrite(item.payload, mapping)
            item.envelope.payload.Pack(item.payload)
            aggregate = _key_aggregate(item.key, merchant)
            key = item.key
            if aggregate is not None and aggregate in mapping:
                key = f"{merchant}/{mapping[aggregate]}"
            record = records[item.index]
            out[item.index] = OutgoingRecord(
                record.topic, key.encode(), item.envelope.SerializeToString(), record.headers
            )
        return out

    async def close(self) -> None:
        close = getattr(self._backend, "close", None)
        if close is not None:
            await close()


# --- consumer side -------------------------------------------------------------------------


class _Cache:
    """Pseudonym -> resolution, per process, bounded, expiring (see the module doc)."""

    def __init__(self, ttl_seconds: float, size: int) -> None:
        self._ttl = ttl_seconds
        self._size = size
        self._entries: dict[MerchantValue, tuple[float, Resolution]] = {}

    def get(self, key: MerchantValue) -> Resolution | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, resolution = entry
        if time.monotonic() >= expires:
            del self._entries[key]
            return None
        return resolution

    def put(self, key: MerchantValue, resolution: Resolution) -> None:
        if len(self._entries) >= self._size:
            # Oldest insertions first (dicts keep insertion order).
            for old in list(self._entries)[: max(1, self._size // 10)]:
                del self._entries[old]
        self._entries[key] = (time.monotonic() + self._ttl, resolution)

    def forget(self, merchant_id: str, customer_id: str | None) -> None:
        for key, (_, resolution) in list(self._entries.items()):
            if key[0] == merchant_id and customer_id in (None, resolution.customer_id):
                del self._entries[key]


_CACHES: weakref.WeakSet[Resolver] = weakref.WeakSet()


def forget_customer(merchant_id: str, customer_id: str | None = None) -> None:
    """Drops this process's cached resolutions to the customer (None: every customer of the
    merchant). PersonalDataServicer calls it when this replica erases them."""
    for resolver in list(_CACHES):
        resolver.cache.forget(merchant_id, customer_id)


class Resolver:
    """Resolves pseudonyms in consumed events, in place, before handlers see them."""

    def __init__(
        self,
        backend: PseudonymBackend,
        *,
        ttl_seconds: float = PSEUDONYM_CACHE_SECONDS,
        size: int = PSEUDONYM_CACHE_SIZE,
    ) -> None:
        self._backend = backend
        self.cache = _Cache(ttl_seconds, size)
        _CACHES.add(self)

    async def events(self, events: Iterable[ConsumedEvent]) -> None:
        """Rewrites each event's payload (and its envelope's copy); raises when the owner
        cannot be reached (the consumer retries the batch)."""
        todo: list[tuple[ConsumedEvent, list[str]]] = []
        resolved: dict[MerchantValue, Resolution] = {}
        wanted: dict[MerchantValue, None] = {}
        for event in events:
            if not carries_customer_ids(event.event_type):
                continue
            found = [value for value in declared_values(event.payload) if is_pseudonym(value)]
            if not found:
                continue
            todo.append((event, found))
            for value in found:
                key = (event.merchant_id, value)
                cached = self.cache.get(key)
                if cached is not None:
                    resolved[key] = cached
                elif key not in resolved:
                    wanted[key] = None
        if not todo:
            return
        asked = list(wanted)
        for start in range(0, len(asked), MAX_BATCH):
            chunk = asked[start : start + MAX_BATCH]
            for key, resolution in zip(chunk, await self._backend.resolve(chunk), strict=True):
                self.cache.put(key, resolution)
                resolved[key] = resolution
        for event, found in todo:
            mapping = {value: resolved[(event.merchant_id, value)].customer_id for value in found}
            rewrite(event.payload, mapping)
            event.envelope.payload.Pack(event.payload)

    async def close(self) -> None:
        close = getattr(self._backend, "close", None)
        if close is not None:
            await close()
