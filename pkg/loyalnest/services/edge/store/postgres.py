"""The edge service's PostgreSQL state: webhook records, accepted bodies, dead letters (sealed,
purged after their retention), merchants' plans. Customer keys: customer_keys.py."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import overload

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from loyalnest.gen.events.v1 import gateway_pb2 as gateway_events
from loyalnest.platform.crypto import FieldCipher
from loyalnest.platform.events import outbox
from loyalnest.platform.postgres import Database
from loyalnest.platform.shopify_payloads import compatible_topics
from loyalnest.platform.tenancy import merchant_id_for_shop
from loyalnest.services.edge.dead_letters import customer_named
from loyalnest.services.edge.domain import Outcome
from loyalnest.services.edge.store.customer_keys import CustomerKey, CustomerKeys, KeyNotStored
from loyalnest.services.edge.webhooks import Delivery

# In one statement (atomic, one round trip: every new event comes here): the body's hash
# (refused if the same bytes were accepted under an incompatible topic), the idempotency key and,
# only if both are new, the event's outbox row. Answers the topic the bytes were first accepted
# under and whether the event was published now.
_BODY = (
    " body AS ("
    " INSERT INTO webhook_accepted_bodies (shop_domain, body_sha256, topic)"
    " SELECT %s, %s, %s{guard} ON CONFLICT (shop_domain, body_sha256)"
    # A no-op update: it returns (and locks) the row another delivery stored first.
    " DO UPDATE SET topic = webhook_accepted_bodies.topic RETURNING topic),"
)
_CLAIM_AND_PUBLISH = (
    " claim AS ("
    " INSERT INTO webhook_idempotency_keys"
    " (shop_domain, event_id, merchant_id, topic, webhook_id, outcome)"
    " SELECT %s, %s, %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM body WHERE topic = ANY(%s))"
    " ON CONFLICT DO NOTHING RETURNING 1),"
    " published AS ("
    f" INSERT INTO outbox {outbox.COLUMNS} SELECT {outbox.VALUES}"
    " WHERE EXISTS (SELECT 1 FROM claim) RETURNING 1)"
    " SELECT (SELECT topic FROM body), EXISTS (SELECT 1 FROM published)"
)
_ACCEPT = "WITH" + _BODY.format(guard="") + _CLAIM_AND_PUBLISH
# The same, for a delivery sealed under a key made for it (a customer seen for the first time):
# the key is stored first (as customer_keys._GET_OR_CREATE would: not for an event recorded
# before), and the rest only if it was: one round trip instead of two. When the customer has a
# key already, nothing is written, and the answer carries that key, to seal with it and
# accept as above.
_ACCEPT_WITH_NEW_KEY = (
    "WITH recorded AS (SELECT EXISTS (SELECT 1 FROM webhook_idempotency_keys"
    " WHERE shop_domain = %s AND event_id = %s) AS yes),"
    " created AS ("
    " INSERT INTO customer_keys (merchant_id, customer_id, key_id, wrapped_key)"
    " SELECT %s, %s, %s, %s WHERE NOT (SELECT yes FROM recorded)"
    " ON CONFLICT (merchant_id, customer_id) DO NOTHING RETURNING key_id),"
    " existing AS (SELECT key_id, wrapped_key FROM customer_keys"
    " WHERE merchant_id = %s AND customer_id = %s),"
    + _BODY.format(guard=" WHERE EXISTS (SELECT 1 FROM created)")
    + _CLAIM_AND_PUBLISH
    + ", EXISTS (SELECT 1 FROM created), (SELECT yes FROM recorded),"
    " (SELECT key_id FROM existing), (SELECT wrapped_key FROM existing)"
)
# Rows deleted per statement by the purge: short transactions, no long locks.
PURGE_BATCH = 5000


class BodyReused(Exception):
    """The same body bytes were accepted under another topic (a replay across topics)."""

    def __init__(self, first_topic: str) -> None:
        super().__init__(first_topic)
        self.first_topic = first_topic


def _dead_letter_context(shop_domain: str, event_id: str) -> str:
    return f"edge.webhook_dead_letters.body:{shop_domain}:{event_id}"


class EdgeStore:
    def __init__(self, database: Database, cipher: FieldCipher | None = None) -> None:
        """`cipher`: the edge's master key, which wraps the customer keys sealing dead letters
        (store/customer_keys.py) and seals those naming no customer; without it nothing can
        be dead-lettered."""
        self._pool = database.pool
        self._cipher = cipher
        self._keys = CustomerKeys(database, cipher) if cipher is not None else None

    async def _claim(
        self, conn: AsyncConnection, delivery: Delivery, merchant_id: str, outcome: Outcome
    ) -> bool:
        """Records the event's first delivery; False when it was recorded before. A concurrent
        delivery of the same event waits on the key until the first one's transaction ends."""
        cursor = await conn.execute(
            "INSERT INTO webhook_idempotency_keys"
            " (shop_domain, event_id, merchant_id, topic, webhook_id, outcome)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
            (
                delivery.shop_domain,
                delivery.event_id,
                merchant_id,
                delivery.topic,
                delivery.webhook_id,
                outcome.value,
            ),
            prepare=True,
        )
        return await cursor.fetchone() is not None

    @overload
    async def accept(
        self, delivery: Delivery, merchant_id: str, event: gateway_events.WebhookReceived
    ) -> Outcome: ...

    @overload
    async def accept(
        self,
        delivery: Delivery,
        merchant_id: str,
        event: gateway_events.WebhookReceived,
        new_key: CustomerKey,
    ) -> Outcome | KeyNotStored: ...

    async def accept(
        self,
        delivery: Delivery,
        merchant_id: str,
        event: gateway_events.WebhookReceived,
        new_key: CustomerKey | None = None,
    ) -> Outcome | KeyNotStored:
        """Records the delivery and its webhook.received event together, once; BodyReused when
        the same bytes were accepted under a topic this one is not compatible with.

        A concurrent delivery of the same event waits on the key until ours commits, then
        inserts neither row: DUPLICATE.

        `new_key`: the key `event`'s customer data is sealed under, made for this delivery
        and stored with it. KeyNotStored when it was not (the customer has a key, or the event
        was recorded before): then nothing was written."""
        row = outbox.row(merchant_id, event, occurred_at=delivery.triggered_at)
        accepted = (
            delivery.shop_domain,
            hashlib.sha256(delivery.body).digest(),
            delivery.topic,
            delivery.shop_domain,
            delivery.event_id,
            merchant_id,
            delivery.topic,
            delivery.webhook_id,
            Outcome.ACCEPTED.value,
            sorted(compatible_topics(delivery.topic)),
            *row.params,
        )
        if new_key is None:
            statement, params = _ACCEPT, accepted
        else:
            statement = _ACCEPT_WITH_NEW_KEY
            params = (
                delivery.shop_domain,
                delivery.event_id,
                new_key.merchant_id,
                new_key.customer_id,
                new_key.key_id,
                new_key.wrapped,
                new_key.merchant_id,
                new_key.customer_id,
                *accepted,
            )
        async with self._pool.connection() as conn:
            cursor = await conn.execute(statement, params, prepare=True)
            answer = await cursor.fetchone()
        assert answer is not None  # the final SELECT always answers one row
        if new_key is not None and not answer[2]:
            _, _, _, recorded, key_id, wrapped = answer
            found = None if key_id is None else (str(key_id), bytes(wrapped))
            return KeyNotStored(new_key, recorded=bool(recorded), found=found)
        first_topic, published = str(answer[0]), bool(answer[1])
        if published:
            return Outcome.ACCEPTED
        if first_topic not in compatible_topics(delivery.topic):
            raise BodyReused(first_topic)
        return Outcome.DUPLICATE

    async def dead_letter(self, delivery: Delivery, merchant_id: str, reason: str) -> Outcome:
        """Keeps an unusable (but signed) delivery for an operator, once per event, its body
        sealed under the key of the customer it names (dead_letters.py: erasing them makes it
        unreadable), else under the master key: `dead_letter_body` opens it; the purge drops
        it after the retention."""
        if self._cipher is None or self._keys is None:
            raise RuntimeError("the edge store has no key to seal dead letters with")
        context = _dead_letter_context(delivery.shop_domain, delivery.event_id)
        customer_id = customer_named(delivery.topic, delivery.body)
        key_id: str | None = None
        if customer_id is not None:
            found = await self._keys.seal_bytes(
                merchant_id,
                customer_id,
                delivery.body,
                context=context,
                delivery=(delivery.shop_domain, delivery.event_id),
            )
            if found is None:
                # Recorded before, its customer erased since: no key is made again.
                return Outcome.DUPLICATE
            key_id, sealed = found
        else:
            sealed = self._cipher.encrypt(delivery.body, context=context)
        async with self._pool.connection() as conn, conn.transaction():
            if not await self._claim(conn, delivery, merchant_id, Outcome.DEAD_LETTERED):
                return Outcome.DUPLICATE
            await conn.execute(
                "INSERT INTO webhook_dead_letters (shop_domain, event_id, topic, webhook_id,"
                " headers, body, body_sealed, reason, key_id)"
                " VALUES (%s, %s, %s, %s, %s, %s, true, %s, %s)",
                (
                    delivery.shop_domain,
                    delivery.event_id,
                    delivery.topic,
                    delivery.webhook_id,
                    Jsonb(dict(delivery.headers)),
                    sealed,
                    reason,
                    key_id,
                ),
            )
        return Outcome.DEAD_LETTERED

    async def dead_letter_body(self, dead_letter_id: int) -> bytes | None:
        """The body of a dead letter as received (for an operator, to replay it); None once
        purged; CustomerErased when it was sealed under an erased customer's key (a copy
        restored from a backup)."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT shop_domain, event_id, body, body_sealed, key_id"
                " FROM webhook_dead_letters WHERE dead_letter_id = %s",
                (dead_letter_id,),
            )
            row = await cursor.fetchone()
        if row is None:
            return None
        shop_domain, event_id, body, body_sealed, key_id = row
        if not body_sealed:
            return bytes(body)  # written before sealing existed
        if self._cipher is None or self._keys is None:
            raise RuntimeError("the edge store has no key to open dead letters with")
        context = _dead_letter_context(shop_domain, event_id)
        if key_id is not None:
            return await self._keys.open_bytes(
                merchant_id_for_shop(shop_domain), key_id, bytes(body), context=context
            )
        return self._cipher.decrypt(bytes(body), context=context)

    # --- retention ---------------------------------------------------------------------------

    async def purge(
        self, *, idempotency_before: datetime, dead_letters_before: datetime
    ) -> dict[str, int]:
        """Deletes idempotency keys and accepted-body hashes older than `idempotency_before`
        (Shopify retries no more by then) and dead letters older than `dead_letters_before`;
        how many rows of each went. Safe to run from several processes at once."""
        deleted: dict[str, int] = {}
        for table, column, before in (
            ("webhook_idempotency_keys", "received_at", idempotency_before),
            ("webhook_accepted_bodies", "accepted_at", idempotency_before),
            ("webhook_dead_letters", "received_at", dead_letters_before),
        ):
            total = 0
            while True:
                async with self._pool.connection() as conn:
                    cursor = await conn.execute(
                        f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("
                        f" SELECT ctid FROM {table} WHERE {column} < %s LIMIT {PURGE_BATCH}))",
                        (before,),
                    )
                    total += cursor.rowcount
                if cursor.rowcount < PURGE_BATCH:
                    break
            deleted[table] = total
        return deleted

    # --- merchants' plans (rate-limit tiers) -----------------------------------------------

    async def plan_of(self, merchant_id: str) -> str | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT plan FROM merchant_plans WHERE merchant_id = %s",
                (merchant_id,),
                prepare=True,
            )
            row = await cursor.fetchone()
            return None if row is None else str(row[0])

    @staticmethod
    async def set_plan(conn: AsyncConnection, merchant_id: str, plan: str, version: int) -> None:
        """Keeps the plan of the newest settings version seen (events may arrive late)."""
        await conn.execute(
            "INSERT INTO merchant_plans (merchant_id, plan, settings_version)"
            " VALUES (%s, %s, %s) ON CONFLICT (merchant_id) DO UPDATE"
            " SET plan = excluded.plan, settings_version = excluded.settings_version,"
            " updated_at = now()"
            " WHERE merchant_plans.settings_version < excluded.settings_version",
            (merchant_id, plan, version),
        )
