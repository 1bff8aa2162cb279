"""Per-customer keys: crypto-shredding of the customer data webhook.received carries.

Each (merchant, customer) gets its own random AES-256 key the first time a webhook names them,
kept in `customer_keys` wrapped (AES-256-GCM) under the edge's master key, with an id. The edge
makes it for the delivery and the accept statement stores it with the delivery
(`EdgeStore.accept`), unless the customer has one already: a new customer costs no round trip
of its own. The customer's email, phone and names from a webhook are sealed under that key
(`SealedCustomerData`) and travel like that through the outbox, Kafka and every consumer's
dead letters. `erase` deletes the key: from then on no copy of that data, wherever it was
copied, can be decrypted, without finding and rewriting any of them (GDPR erasure, issue 18).
A later webhook for the same customer gets a new key with a new id; what was sealed before
stays unreadable.

Associated data binds a sealed value to the merchant, the customer, the key id and the Shopify
event, so a ciphertext moved to another event or customer does not open.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from loyalnest.gen.events.v1 import gateway_pb2 as gateway_events
from loyalnest.platform import personal_data
from loyalnest.platform.crypto import KEY_BYTES, FieldCipher
from loyalnest.platform.events.pseudonyms import (
    PREFIX as PSEUDONYM_PREFIX,
)
from loyalnest.platform.events.pseudonyms import (
    MerchantValue,
    Resolution,
    is_pseudonym,
    key_of_pseudonym,
    pseudonym_of_key,
    unknown_pseudonym_id,
)
from loyalnest.platform.memo import RecentlyUsed
from loyalnest.platform.personal_data import CustomerExport, CustomerRef
from loyalnest.platform.postgres import Database

# Find the key, or create it; a concurrent creation makes ours lose (ON CONFLICT): read again.
# For a webhook delivery it is created only if the delivery's event was not recorded before: a
# redelivery (nothing is published for it) must not bring back the id of a customer erased
# since (no delivery: NULLs, never recorded). Answers whether it was recorded, and the key if
# there is one.
_GET_OR_CREATE = (
    "WITH recorded AS (SELECT EXISTS (SELECT 1 FROM webhook_idempotency_keys"
    " WHERE shop_domain = %s AND event_id = %s) AS yes),"
    " created AS ("
    " INSERT INTO customer_keys (merchant_id, customer_id, key_id, wrapped_key)"
    " SELECT %s, %s, %s, %s WHERE NOT (SELECT yes FROM recorded)"
    " ON CONFLICT (merchant_id, customer_id) DO NOTHING"
    " RETURNING key_id, wrapped_key),"
    " found AS (SELECT key_id, wrapped_key FROM created"
    " UNION ALL SELECT key_id, wrapped_key FROM customer_keys"
    " WHERE merchant_id = %s AND customer_id = %s"
    " LIMIT 1)"
    " SELECT (SELECT yes FROM recorded), found.key_id, found.wrapped_key"
    " FROM (SELECT 1) AS one LEFT JOIN found ON true"
)


# A webhook delivery: (shop domain, Shopify event id).
Delivered = tuple[str, str]


_FIND_KEYS = (
    "SELECT k.merchant_id, k.customer_id, k.key_id FROM customer_keys k"
    " JOIN unnest(%s::text[], %s::text[]) AS q(merchant_id, customer_id)"
    " ON k.merchant_id = q.merchant_id AND k.customer_id = q.customer_id"
)
_CREATE_KEYS = (
    "INSERT INTO customer_keys (merchant_id, customer_id, key_id, wrapped_key)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bytea[])"
    " ON CONFLICT (merchant_id, customer_id) DO NOTHING"
)
# Live keys, and the tombstones of erased customers' pseudonyms (and of customers whose
# erasure has begun, whose key still exists: the tombstone wins): one round trip.
_RESOLVE = (
    "SELECT k.merchant_id, k.key_id, k.customer_id, false FROM customer_keys k"
    " JOIN unnest(%s::text[], %s::text[]) AS q(merchant_id, key_id)"
    " ON k.merchant_id = q.merchant_id AND k.key_id = q.key_id"
    " UNION ALL SELECT t.merchant_id, substr(t.pseudonym, 6), t.anonymous_id, true"
    " FROM customer_pseudonym_tombstones t"
    " JOIN unnest(%s::text[], %s::text[]) AS q(merchant_id, pseudonym)"
    " ON t.merchant_id = q.merchant_id AND t.pseudonym = q.pseudonym"
)


# The tombstone of a customer's pseudonym: it resolves to their erasure's anonymous id.
_TOMBSTONE = (
    "INSERT INTO customer_pseudonym_tombstones (merchant_id, pseudonym, anonymous_id)"
    " SELECT merchant_id, %s || key_id, %s FROM customer_keys"
    " WHERE merchant_id = %s AND customer_id = %s ON CONFLICT DO NOTHING"
)


class CustomerErased(LookupError):
    """The customer's key is gone (erased): their sealed data cannot be read any more."""


def _wrap_context(merchant_id: str, customer_id: str, key_id: str) -> str:
    return f"edge.customer_keys:{merchant_id}:{customer_id}:{key_id}"


def _seal_context(merchant_id: str, customer_id: str, key_id: str, event_id: str) -> str:
    return f"webhook.received.customer_data:{merchant_id}:{customer_id}:{key_id}:{event_id}"


def _bytes_context(context: str, customer_id: str, key_id: str) -> str:
    return f"{context}:{customer_id}:{key_id}"


@dataclass(frozen=True)
class CustomerKey:
    """A customer's key in clear (`key`) and as stored (`wrapped` under the master key)."""

    merchant_id: str
    customer_id: str
    key_id: str
    key: bytes = field(repr=False)
    wrapped: bytes = field(repr=False)

    def seal(
        self, event_id: str, data: gateway_events.CustomerData
    ) -> gateway_events.SealedCustomerData:
        """A webhook delivery's customer data sealed under this key, bound to the event."""
        ciphertext = FieldCipher(self.key).encrypt(
            data.SerializeToString(deterministic=True),
            context=_seal_context(self.merchant_id, self.customer_id, self.key_id, event_id),
        )
        return gateway_events.SealedCustomerData(
            customer_id=self.customer_id, key_id=self.key_id, ciphertext=ciphertext
        )


@dataclass(frozen=True)
class KeyNotStored:
    """A delivery's new key was not stored with it (EdgeStore.accept), nor anything else.
    `found`: the customer's key (id, wrapped) if they have one; `recorded`: the event was
    recorded before."""

    attempted: CustomerKey
    recorded: bool
    found: tuple[str, bytes] | None


# Customers this process has seen with a key, most recent last: their next delivery is sealed
# under the key they have (`seal`) rather than one made for it (`new_key`), which would be made,
# sealed with and refused. A hint only (no key material): the statements decide.
KNOWN_CUSTOMERS = 10_000


class CustomerKeys:
    def __init__(self, database: Database, master: FieldCipher) -> None:
        """`master`: the edge's master key (and previous ones, readable during a rotation)."""
        self._pool = database.pool
        self._master = master
        self._known: RecentlyUsed[MerchantValue, bool] = RecentlyUsed(KNOWN_CUSTOMERS)

    def known(self, merchant_id: str, customer_id: str) -> bool:
        """Whether the customer had a key when this process last looked (see KNOWN_CUSTOMERS)."""
        return self._known.get((merchant_id, customer_id)) is not None

    def remember(self, merchant_id: str, customer_id: str) -> None:
        self._known.put((merchant_id, customer_id), True)

    def new_key(self, merchant_id: str, customer_id: str) -> CustomerKey:
        """A fresh key for the customer, not stored yet: `EdgeStore.accept` stores it with the
        delivery it seals, when the customer has none (one round trip for a new customer)."""
        key_id = uuid.uuid4().hex
        key = os.urandom(KEY_BYTES)
        wrapped = self._master.encrypt(key, context=_wrap_context(merchant_id, customer_id, key_id))
        return CustomerKey(merchant_id, customer_id, key_id, key, wrapped)

    def stored_key(
        self, merchant_id: str, customer_id: str, key_id: str, wrapped: bytes
    ) -> CustomerKey:
        """The customer's key as `customer_keys` holds it (wrapped under the master key)."""
        key = self._master.decrypt(wrapped, context=_wrap_context(merchant_id, customer_id, key_id))
        return CustomerKey(merchant_id, customer_id, key_id, key, wrapped)

    async def seal_again(
        self,
        not_stored: KeyNotStored,
        event_id: str,
        data: gateway_events.CustomerData,
        *,
        shop_domain: str,
    ) -> gateway_events.SealedCustomerData | None:
        """`seal`, for a delivery whose new key was not stored: under the key the customer
        has, with no round trip when the answer named it."""
        attempted = not_stored.attempted
        if not_stored.found is not None:
            self.remember(attempted.merchant_id, attempted.customer_id)
            key_id, wrapped = not_stored.found
            key = self.stored_key(attempted.merchant_id, attempted.customer_id, key_id, wrapped)
            return key.seal(event_id, data)
        if not_stored.recorded:
            return None  # recorded before, the customer erased since: no key is made again
        # Created by another delivery after the statement's snapshot: read it.
        return await self.seal(
            attempted.merchant_id, attempted.customer_id, event_id, data, shop_domain=shop_domain
        )

    async def _key(
        self, merchant_id: str, customer_id: str, delivery: Delivered | None = None
    ) -> CustomerKey | None:
        """The customer's key, created if need be; None only for a `delivery` recorded before
        whose customer has no key (erased since): nothing is created for it."""
        candidate = self.new_key(merchant_id, customer_id)
        shop_domain, event_id = delivery if delivery is not None else (None, None)
        params = (
            shop_domain,
            event_id,
            merchant_id,
            customer_id,
            candidate.key_id,
            candidate.wrapped,
        )
        async with self._pool.connection() as conn:
            for _ in range(3):
                cursor = await conn.execute(
                    _GET_OR_CREATE, (*params, merchant_id, customer_id), prepare=True
                )
                answer = await cursor.fetchone()
                assert answer is not None  # the final SELECT always answers one row
                recorded, found_id, wrapped_key = answer
                if found_id is not None:
                    self.remember(merchant_id, customer_id)
                    if str(found_id) == candidate.key_id:
                        return candidate
                    return self.stored_key(
                        merchant_id, customer_id, str(found_id), bytes(wrapped_key)
                    )
                if recorded:
                    return None
                # No key and not recorded: another transaction created it after our
                # snapshot; again.
        raise RuntimeError("customer key neither created nor found")

    async def seal(
        self,
        merchant_id: str,
        customer_id: str,
        event_id: str,
        data: gateway_events.CustomerData,
        *,
        shop_domain: str,
    ) -> gateway_events.SealedCustomerData | None:
        """The customer data of a webhook delivery sealed under the customer's key; None for
        a delivery recorded before whose customer was erased since (no key is made again)."""
        found = await self._key(merchant_id, customer_id, (shop_domain, event_id))
        return None if found is None else found.seal(event_id, data)

    async def open(
        self, merchant_id: str, event_id: str, sealed: gateway_events.SealedCustomerData
    ) -> gateway_events.CustomerData:
        """The data `seal` sealed for this event; CustomerErased once the key is erased."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT wrapped_key FROM customer_keys"
                " WHERE merchant_id = %s AND customer_id = %s AND key_id = %s",
                (merchant_id, sealed.customer_id, sealed.key_id),
            )
            row = await cursor.fetchone()
        if row is None:
            raise CustomerErased(f"no key {sealed.key_id} for the customer: erased")
        key = self._master.decrypt(
            bytes(row[0]), context=_wrap_context(merchant_id, sealed.customer_id, sealed.key_id)
        )
        plaintext = FieldCipher(key).decrypt(
            sealed.ciphertext,
            context=_seal_context(merchant_id, sealed.customer_id, sealed.key_id, event_id),
        )
        return gateway_events.CustomerData.FromString(plaintext)

    async def seal_bytes(
        self,
        merchant_id: str,
        customer_id: str,
        data: bytes,
        *,
        context: str,
        delivery: Delivered | None = None,
    ) -> tuple[str, bytes] | None:
        """`data` sealed under the customer's key (created if need be), bound to `context`
        and the key: (key id, ciphertext). For copies kept outside events (dead letters);
        None for a `delivery` recorded before whose customer was erased since."""
        found = await self._key(merchant_id, customer_id, delivery)
        if found is None:
            return None
        return found.key_id, FieldCipher(found.key).encrypt(
            data, context=_bytes_context(context, customer_id, found.key_id)
        )

    async def open_bytes(
        self, merchant_id: str, key_id: str, ciphertext: bytes, *, context: str
    ) -> bytes:
        """What `seal_bytes` sealed; CustomerErased once the customer's key is erased."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT customer_id, wrapped_key FROM customer_keys"
                " WHERE merchant_id = %s AND key_id = %s",
                (merchant_id, key_id),
            )
            row = await cursor.fetchone()
        if row is None:
            raise CustomerErased(f"no key {key_id}: its customer was erased")
        customer_id = str(row[0])
        key = self._master.decrypt(
            bytes(row[1]), context=_wrap_context(merchant_id, customer_id, key_id)
        )
        return FieldCipher(key).decrypt(
            ciphertext, context=_bytes_context(context, customer_id, key_id)
        )

    # --- pseudonyms (loyalnest.platform.events.pseudonyms): `cust_` + the key's id ------------

    async def pseudonymize(self, customers: Sequence[MerchantValue]) -> list[str]:
        """Each customer's pseudonym, their key (and so their pseudonym) made if they have
        none: one query when all have one, three when some are new."""
        wanted = list(dict.fromkeys(customers))
        found: dict[MerchantValue, str] = {}
        async with self._pool.connection() as conn:
            for _ in range(3):
                missing = [c for c in wanted if c not in found]
                if not missing:
                    break
                cursor = await conn.execute(
                    _FIND_KEYS, ([m for m, _ in missing], [c for _, c in missing])
                )
                for merchant_id, customer_id, key_id in await cursor.fetchall():
                    found[(merchant_id, customer_id)] = pseudonym_of_key(key_id)
                missing = [c for c in wanted if c not in found]
                if not missing:
                    break
                key_ids = [uuid.uuid4().hex for _ in missing]
                wrapped = [
                    self._master.encrypt(os.urandom(KEY_BYTES), context=_wrap_context(m, c, key_id))
                    for (m, c), key_id in zip(missing, key_ids, strict=True)
                ]
                await conn.execute(
                    _CREATE_KEYS,
                    ([m for m, _ in missing], [c for _, c in missing], key_ids, wrapped),
                )
                # Read back: a concurrent creation may have won (ON CONFLICT).
        if any(c not in found for c in wanted):
            raise RuntimeError("customer pseudonyms neither created nor found")
        return [found[c] for c in customers]

    async def resolve(self, pseudonyms: Sequence[MerchantValue]) -> list[Resolution]:
        """The Shopify id behind each pseudonym; an erased customer's anonymous id (their
        tombstone), or one derived from the pseudonym when the edge knows it no more (its
        merchant erased)."""
        asked = [(m, p) for m, p in pseudonyms if is_pseudonym(p)]
        merchants = [m for m, _ in asked]
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                _RESOLVE,
                (
                    merchants,
                    [key_of_pseudonym(p) for _, p in asked],
                    merchants,
                    [p for _, p in asked],
                ),
            )
            rows = await cursor.fetchall()
        # Tombstones last, so they replace the live key of a customer being erased.
        known = {
            (merchant_id, pseudonym_of_key(key_id)): Resolution(customer_id, erased)
            for merchant_id, key_id, customer_id, erased in sorted(rows, key=lambda r: r[3])
        }
        return [
            known.get((m, p)) or Resolution(unknown_pseudonym_id(p), erased=True)
            for m, p in pseudonyms
        ]

    async def begin_erasure(self, merchant_id: str, customer: CustomerRef) -> bool:
        """The customer's pseudonym resolves to their erasure's anonymous id from now on (the
        tombstone the erasure would leave, made now), while the key, and so the pseudonym
        Pseudonymize answers, stays until `erase_customer`. False when they have no key."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                _TOMBSTONE,
                (
                    PSEUDONYM_PREFIX,
                    customer.anonymous_id(customer.shopify_customer_id),
                    merchant_id,
                    customer.shopify_customer_id,
                ),
            )
            if cursor.rowcount > 0:
                return True
            cursor = await conn.execute(
                "SELECT 1 FROM customer_keys WHERE merchant_id = %s AND customer_id = %s",
                (merchant_id, customer.shopify_customer_id),
            )
            return await cursor.fetchone() is not None

    async def erase(self, merchant_id: str, customer_id: str) -> bool:
        """Forgets the customer's key (crypto-shredding); False when there was none. Every
        ciphertext sealed under it is unreadable from the commit on."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM customer_keys WHERE merchant_id = %s AND customer_id = %s",
                (merchant_id, customer_id),
            )
            return cursor.rowcount > 0

    # --- personal data (loyalnest.platform.personal_data) ----------------------------------

    async def export_customer(self, merchant_id: str, customer: CustomerRef) -> CustomerExport:
        """The edge keeps no customer data in clear: only whether a key exists and since when
        (what the key sealed travels in events, which the services that read them export)."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT key_id, created_at FROM customer_keys"
                " WHERE merchant_id = %s AND customer_id = %s",
                (merchant_id, customer.shopify_customer_id),
            )
            row = await cursor.fetchone()
        if row is None:
            return CustomerExport({})
        return CustomerExport({"customer_key": {"key_id": row[0], "created_at": row[1]}})

    async def erase_customer(self, merchant_id: str, customer: CustomerRef) -> int:
        """Crypto-shredding: the key goes (every sealed copy is unreadable), and so do the
        customer's published webhook.received rows of the outbox and the dead letters sealed
        under their key (nothing to replay for them; a backup's copy stays unreadable)."""
        self._known.forget((merchant_id, customer.shopify_customer_id))
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "DELETE FROM webhook_dead_letters WHERE key_id IN (SELECT key_id"
                " FROM customer_keys WHERE merchant_id = %s AND customer_id = %s)",
                (merchant_id, customer.shopify_customer_id),
            )
            dead_letters = cursor.rowcount
            # The pseudonym outlives the key as a tombstone to the erasure's anonymous id
            # (made already if the erasure began with `begin_erasure`).
            await conn.execute(
                _TOMBSTONE,
                (
                    PSEUDONYM_PREFIX,
                    customer.anonymous_id(customer.shopify_customer_id),
                    merchant_id,
                    customer.shopify_customer_id,
                ),
            )
            cursor = await conn.execute(
                "DELETE FROM customer_keys WHERE merchant_id = %s AND customer_id = %s",
                (merchant_id, customer.shopify_customer_id),
            )
            erased = cursor.rowcount + dead_letters
            erased += await personal_data.redact_unsent_events(
                conn, merchant_id, customer.identifiers(), customer.anonymous_id
            )
            erased += await personal_data.forget_sent_events(
                conn, merchant_id, customer.shopify_customer_id
            )
        return erased

    async def erase_merchant(self, merchant_id: str) -> int:
        """Every customer key of the merchant, its webhook records (by the shops its deliveries
        came from), its plan copy and published events."""
        erased = 0
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT DISTINCT shop_domain FROM webhook_idempotency_keys WHERE merchant_id = %s",
                (merchant_id,),
            )
            shops = [shop for (shop,) in await cursor.fetchall()]
            for statement, params in (
                ("DELETE FROM customer_keys WHERE merchant_id = %s", (merchant_id,)),
                # Its customers' pseudonyms then resolve to anonymous ids derived from the
                # pseudonyms alone (pseudonyms.unknown_pseudonym_id): nothing leads back.
                (
                    "DELETE FROM customer_pseudonym_tombstones WHERE merchant_id = %s",
                    (merchant_id,),
                ),
                ("DELETE FROM merchant_plans WHERE merchant_id = %s", (merchant_id,)),
                ("DELETE FROM webhook_idempotency_keys WHERE merchant_id = %s", (merchant_id,)),
                ("DELETE FROM webhook_dead_letters WHERE shop_domain = ANY(%s)", (shops,)),
                ("DELETE FROM webhook_accepted_bodies WHERE shop_domain = ANY(%s)", (shops,)),
            ):
                erased += (await conn.execute(statement, params)).rowcount
            erased += await personal_data.erase_platform_rows(conn, merchant_id)
        return erased
