"""Customers in PostgreSQL: registration (one or a batch), counted against the plan, and the
projections fed by other services' events (accounts, RFM scores, GDPR redactions).

Email and names are sealed by the platform PII vault (bound to merchant, customer and
column); the email also gets a blind index. Every write runs in one transaction with its
idempotency key or processed event, its usage count and its outbox events.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from loyalnest.gen.events.v1 import rfm_pb2
from loyalnest.platform import idempotency, personal_data
from loyalnest.platform.events import inbox, outbox
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.personal_data import CustomerExport, CustomerRef
from loyalnest.platform.pii import PiiVault
from loyalnest.platform.postgres import Database, unique_violations
from loyalnest.platform.validation import is_uuid
from loyalnest.services.core import events
from loyalnest.services.core.domain import (
    CUSTOMERS,
    Customer,
    CustomerNotFound,
    CustomersLimitReached,
    ImportItem,
    ImportOutcome,
    ImportResult,
    NewCustomer,
    PlanLimits,
    ShopifyCustomerTaken,
)
from loyalnest.services.core.store.usage import Count, UsageStore

_SELECT = (
    "SELECT c.customer_id::text, c.merchant_id, c.shopify_customer_id, c.user_id::text,"
    " c.email_ciphertext, c.first_name_ciphertext, c.last_name_ciphertext, c.redacted_at,"
    " c.created_at, a.user_id IS NOT NULL, r.score, r.segment"
    " FROM customers c"
    " LEFT JOIN user_accounts a ON a.merchant_id = c.merchant_id AND a.user_id = c.user_id"
    " LEFT JOIN customer_rfm r ON r.merchant_id = c.merchant_id AND r.customer_id = c.customer_id"
)
_SHOPIFY_ID_CONSTRAINT = "customers_shopify_id"
_PII_COLUMNS = ("email", "first_name", "last_name")
# Every table of Core's schema with merchant rows, children before the rows they reference.
_MERCHANT_TABLES = (
    "customer_rfm",
    "customers",
    "user_accounts",
    "gdpr_redactions",
    "customer_import_logs",
    "rewarded_orders",
    "plan_limit_warnings",
    "usage_counters",
    "plan_billing",
    "plan_subscriptions",
    "program_settings",
)


class CustomerStore:
    def __init__(self, database: Database, vault: PiiVault, usage: UsageStore) -> None:
        self._pool = database.pool
        self._vault = vault
        self._usage = usage

    # --- reads ------------------------------------------------------------------------------

    def _customer(self, row: Sequence[Any]) -> Customer:
        (customer_id, merchant_id, shopify_id, user_id, *sealed, redacted_at, created_at) = row[:9]
        linked, score, segment = row[9:]
        plain = [
            self._vault.open(merchant_id, customer_id, bytes(blob), column=column)
            if blob is not None
            else None
            for column, blob in zip(_PII_COLUMNS, sealed, strict=True)
        ]
        return Customer(
            customer_id=customer_id,
            merchant_id=merchant_id,
            shopify_customer_id=shopify_id,
            user_id=user_id,
            email=plain[0],
            first_name=plain[1],
            last_name=plain[2],
            account_linked=bool(linked),
            rfm_score=json_format.ParseDict(score, rfm_pb2.RfmScore()) if score else None,
            rfm_segment=rfm_pb2.RfmSegment.Value(segment) if segment else 0,
            redacted_at=redacted_at,
            created_at=created_at,
        )

    async def _row(self, conn: AsyncConnection, merchant_id: str, customer_id: str) -> Customer:
        cursor = await conn.execute(
            f"{_SELECT} WHERE c.merchant_id = %s AND c.customer_id = %s",
            (merchant_id, customer_id),
        )
        row = await cursor.fetchone()
        if row is None:
            raise CustomerNotFound(customer_id)
        return self._customer(row)

    async def get(self, merchant_id: str, customer_id: str) -> Customer:
        async with self._pool.connection() as conn:
            return await self._row(conn, merchant_id, customer_id)

    # --- registration -----------------------------------------------------------------------

    async def _insert(
        self, conn: AsyncConnection, merchant_id: str, new: NewCustomer, plan: PlanLimits
    ) -> tuple[Customer, Count]:
        """Registers one customer and counts it; raises (the caller rolls back) when the
        shopify id is taken or the plan's customers limit is exceeded."""
        customer_id = str(uuid.uuid4())
        sealed = {
            column: self._vault.seal(merchant_id, customer_id, value, column=column)
            if value
            else None
            for column, value in zip(
                _PII_COLUMNS, (new.email, new.first_name, new.last_name), strict=True
            )
        }
        taken = {_SHOPIFY_ID_CONSTRAINT: lambda: ShopifyCustomerTaken(new.shopify_customer_id)}
        with unique_violations(taken):
            await conn.execute(
                "INSERT INTO customers (customer_id, merchant_id, shopify_customer_id, user_id,"
                " email_ciphertext, email_index, first_name_ciphertext, last_name_ciphertext)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    customer_id,
                    merchant_id,
                    new.shopify_customer_id,
                    new.user_id,
                    sealed["email"],
                    self._vault.index(merchant_id, new.email, column="email")
                    if new.email
                    else None,
                    sealed["first_name"],
                    sealed["last_name"],
                ),
            )
        count = await self._usage.count(conn, merchant_id, CUSTOMERS, datetime.now(UTC), plan)
        if plan.customers_limit and count.used > plan.customers_limit:
            raise CustomersLimitReached(merchant_id, plan)
        customer = await self._row(conn, merchant_id, customer_id)
        await outbox.enqueue(
            conn, merchant_id, events.customer_created(customer), occurred_at=customer.created_at
        )
        return customer, count

    async def create(self, merchant_id: str, new: NewCustomer, *, key: IdempotencyKey) -> Customer:
        counts: list[Count] = []

        async def register(conn: AsyncConnection) -> tuple[Customer, str]:
            plan = await self._usage.plan_in(conn, merchant_id)
            customer, count = await self._insert(conn, merchant_id, new, plan)
            counts.append(count)
            return customer, customer.customer_id

        customer = await idempotency.write_once(
            self._pool,
            merchant_id,
            key,
            write=register,
            replay=lambda conn, customer_id: self._row(conn, merchant_id, customer_id),
        )
        await self._usage.cache_counts(counts)
        return customer

    async def import_batch(
        self, merchant_id: str, batch_id: str, items: Sequence[ImportItem], *, key: IdempotencyKey
    ) -> ImportResult:
        """Each valid item on its own savepoint: one failure leaves the others in place."""
        counts: list[Count] = []

        async def register_each(conn: AsyncConnection) -> tuple[ImportResult, str]:
            plan = await self._usage.plan_in(conn, merchant_id)
            results = []
            for index, item in enumerate(items):
                outcome, customer_id, error = ImportOutcome.INVALID, "", item.error
                if item.customer is not None:
                    try:
                        async with conn.transaction():
                            customer, count = await self._insert(
                                conn, merchant_id, item.customer, plan
                            )
                        outcome, customer_id = ImportOutcome.CREATED, customer.customer_id
                        counts.append(count)
                    except ShopifyCustomerTaken as taken:
                        outcome, error = ImportOutcome.ALREADY_EXISTS, taken.message
                        customer_id = await self._id_of(conn, merchant_id, item.shopify_customer_id)
                    except CustomersLimitReached as limited:
                        outcome, error = ImportOutcome.LIMIT_REACHED, limited.message
                results.append(
                    {
                        "index": index,
                        "shopify_customer_id": item.shopify_customer_id,
                        "outcome": outcome,
                        "customer_id": customer_id,
                        "error": error,
                    }
                )
            usable = {ImportOutcome.CREATED, ImportOutcome.ALREADY_EXISTS}
            status = "completed" if any(r["outcome"] in usable for r in results) else "failed"
            import_id = str(uuid.uuid4())
            await conn.execute(
                "INSERT INTO customer_import_logs (import_id, merchant_id, batch_id, status,"
                " log_details) VALUES (%s, %s, %s, %s, %s)",
                (import_id, merchant_id, batch_id, status, Jsonb({"items": results})),
            )
            return ImportResult(import_id, status, results), import_id

        result = await idempotency.write_once(
            self._pool,
            merchant_id,
            key,
            write=register_each,
            replay=lambda conn, import_id: self._import_log(conn, merchant_id, import_id),
        )
        await self._usage.cache_counts(counts)
        return result

    async def _id_of(self, conn: AsyncConnection, merchant_id: str, shopify_id: str) -> str:
        cursor = await conn.execute(
            "SELECT customer_id::text FROM customers"
            " WHERE merchant_id = %s AND shopify_customer_id = %s",
            (merchant_id, shopify_id),
        )
        row = await cursor.fetchone()
        return str(row[0]) if row else ""

    async def _import_log(
        self, conn: AsyncConnection, merchant_id: str, import_id: str
    ) -> ImportResult:
        cursor = await conn.execute(
            "SELECT status, log_details FROM customer_import_logs"
            " WHERE merchant_id = %s AND import_id = %s",
            (merchant_id, import_id),
        )
        row = await cursor.fetchone()
        assert row is not None  # written with the idempotency key that names it
        return ImportResult(import_id, row[0], row[1]["items"])

    # --- events -----------------------------------------------------------------------------

    async def apply_account(
        self, event: ConsumedEvent, user_id: str, *, kind: str | None, role_id: str
    ) -> bool:
        """Projects user.created / user.updated; the newest event wins whatever the order.
        A customer naming a newly announced account is linked, announced by customer.updated."""
        if not is_uuid(user_id):
            return True  # not an account this service can reference
        merchant_id = event.merchant_id
        async with self._pool.connection() as conn, conn.transaction():
            if not await inbox.claim(conn, event):
                return False
            cursor = await conn.execute(
                "INSERT INTO user_accounts (merchant_id, user_id, kind, role_id, changed_at)"
                " VALUES (%(m)s, %(u)s, %(kind)s, %(role)s, %(at)s)"
                " ON CONFLICT (merchant_id, user_id) DO UPDATE"
                " SET kind = coalesce(%(new_kind)s, user_accounts.kind),"
                "     role_id = excluded.role_id, changed_at = excluded.changed_at"
                " WHERE user_accounts.changed_at < excluded.changed_at"
                " RETURNING (xmax = 0) AS inserted",
                {
                    "m": merchant_id,
                    "u": user_id,
                    "kind": kind or "unspecified",
                    "new_kind": kind,
                    "role": role_id,
                    "at": event.occurred_at,
                },
            )
            row = await cursor.fetchone()
            if row is not None and row[0]:
                cursor = await conn.execute(
                    "SELECT customer_id::text FROM customers"
                    " WHERE merchant_id = %s AND user_id = %s ORDER BY customer_id FOR UPDATE",
                    (merchant_id, user_id),
                )
                for (customer_id,) in await cursor.fetchall():
                    await outbox.enqueue(
                        conn, merchant_id, events.customer_updated(customer_id, ["account_linked"])
                    )
        return True

    async def apply_rfm(
        self,
        event: ConsumedEvent,
        customer_id: str,
        score: rfm_pb2.RfmScore,
        segment: int,
    ) -> bool:
        """Keeps the newest score of a customer (it may arrive before the customer does).

        The RFM service names customers by their Shopify id (orders carry it): that finds
        Core's customer(s) mirroring it; a score for one Core does not have yet is dropped
        (the next change announces the customer again)."""
        async with self._pool.connection() as conn, conn.transaction():
            if not await inbox.claim(conn, event):
                return False
            if is_uuid(customer_id):
                targets = [customer_id]
            else:
                cursor = await conn.execute(
                    "SELECT customer_id::text FROM customers"
                    " WHERE merchant_id = %s AND shopify_customer_id = %s",
                    (event.merchant_id, customer_id),
                )
                targets = [found for (found,) in await cursor.fetchall()]
            for target in targets:
                await conn.execute(
                    "INSERT INTO customer_rfm (merchant_id, customer_id, score, segment, scored_at)"
                    " VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (merchant_id, customer_id) DO UPDATE"
                    " SET score = excluded.score, segment = excluded.segment,"
                    "     scored_at = excluded.scored_at"
                    " WHERE customer_rfm.scored_at < excluded.scored_at",
                    (
                        event.merchant_id,
                        target,
                        Jsonb(json_format.MessageToDict(score, preserving_proto_field_name=True)),
                        rfm_pb2.RfmSegment.Name(segment),
                        event.occurred_at,
                    ),
                )
        return True

    async def redact(self, event: ConsumedEvent, request_id: str, customer_id: str) -> bool:
        """Erases the customer's PII (email, its index, names) and RFM score; records it.

        The request may name Core's customer id or the Shopify one (Shopify's
        customers/redact carries its own): either finds the customer.
        """
        merchant_id = event.merchant_id
        async with self._pool.connection() as conn, conn.transaction():
            if not await inbox.claim(conn, event):
                return False
            cursor = await conn.execute(
                "UPDATE customers SET email_ciphertext = NULL, email_index = NULL,"
                " first_name_ciphertext = NULL, last_name_ciphertext = NULL,"
                " redacted_at = coalesce(redacted_at, now()), updated_at = now()"
                " WHERE merchant_id = %s AND (shopify_customer_id = %s OR customer_id = %s)"
                " RETURNING customer_id::text",
                (merchant_id, customer_id, customer_id if is_uuid(customer_id) else None),
            )
            redacted = [found for (found,) in await cursor.fetchall()]
            for found in redacted:
                await conn.execute(
                    "DELETE FROM customer_rfm WHERE merchant_id = %s AND customer_id = %s",
                    (merchant_id, found),
                )
                await outbox.enqueue(
                    conn, merchant_id, events.customer_updated(found, _PII_COLUMNS)
                )
            await conn.execute(
                "INSERT INTO gdpr_redactions (merchant_id, request_id, customer_id, outcome)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    merchant_id,
                    request_id,
                    self.customer_digest(merchant_id, customer_id),
                    "redacted" if redacted else "no_data",
                ),
            )
        return True

    def customer_digest(self, merchant_id: str, customer_id: str) -> str:
        """What gdpr_redactions keeps of the customer a request named: a keyed digest, so
        the record of an erasure does not itself name the customer."""
        return self._vault.index(merchant_id, customer_id, column="gdpr_customer").hex()

    # --- personal data (loyalnest.platform.personal_data) -----------------------------------

    async def _customers_of(
        self, conn: AsyncConnection, merchant_id: str, customer: CustomerRef, *, lock: bool
    ) -> list[Customer]:
        core_ids = [c for c in customer.core_customer_ids if is_uuid(c)]
        indexes = [self._vault.index(merchant_id, e, column="email") for e in customer.emails if e]
        cursor = await conn.execute(
            f"{_SELECT} WHERE c.merchant_id = %s AND (c.shopify_customer_id = %s"
            " OR c.customer_id = ANY(%s::uuid[]) OR c.email_index = ANY(%s))"
            + (" ORDER BY c.customer_id FOR UPDATE OF c" if lock else ""),
            (merchant_id, customer.shopify_customer_id, core_ids, indexes),
        )
        return [self._customer(row) for row in await cursor.fetchall()]

    async def export_customer(self, merchant_id: str, customer: CustomerRef) -> CustomerExport:
        async with self._pool.connection() as conn:
            found = await self._customers_of(conn, merchant_id, customer, lock=False)
            cursor = await conn.execute(
                "SELECT batch_id, created_at FROM customer_import_logs"
                " WHERE merchant_id = %s AND log_details -> 'items' @> %s::jsonb"
                " ORDER BY created_at",
                (merchant_id, Jsonb([{"shopify_customer_id": customer.shopify_customer_id}])),
            )
            imports = [{"batch_id": b, "created_at": at} for b, at in await cursor.fetchall()]
        data: dict[str, Any] = {}
        if found:
            data["customers"] = [
                {
                    "customer_id": c.customer_id,
                    "shopify_customer_id": c.shopify_customer_id,
                    "user_id": c.user_id,
                    "email": c.email,
                    "first_name": c.first_name,
                    "last_name": c.last_name,
                    "rfm_score": json_format.MessageToDict(c.rfm_score) if c.rfm_score else None,
                    "rfm_segment": rfm_pb2.RfmSegment.Name(c.rfm_segment),
                    "redacted_at": c.redacted_at,
                    "created_at": c.created_at,
                }
                for c in found
            ]
        if imports:
            data["imports"] = imports
        return CustomerExport(
            data,
            CustomerRef(
                customer.shopify_customer_id,
                user_ids=tuple(c.user_id for c in found if c.user_id),
                emails=tuple(c.email for c in found if c.email),
                core_customer_ids=tuple(c.customer_id for c in found),
            ),
        )

    async def erase_customer(self, merchant_id: str, customer: CustomerRef) -> int:
        """Anonymises the customer's rows: PII and the link to an account nulled, Shopify's id
        replaced by one naming nothing (the row stays: it counted against the plan), RFM score,
        import-log mentions and published events' outbox rows gone."""
        erased = 0
        async with self._pool.connection() as conn, conn.transaction():
            for found in await self._customers_of(conn, merchant_id, customer, lock=True):
                # The erasure's anonymous id for their Shopify id, as every service's (a repeat
                # keeps the one the row has); a row without one: its own id, naming nobody.
                shopify_id = found.shopify_customer_id or ""
                anonymous = (
                    shopify_id
                    if shopify_id.startswith(personal_data.ERASED_PREFIX)
                    else customer.anonymous_id(shopify_id)
                    if shopify_id
                    else f"{personal_data.ERASED_PREFIX}{found.customer_id}"
                )
                taken = await conn.execute(
                    "SELECT 1 FROM customers WHERE merchant_id = %s AND shopify_customer_id = %s"
                    " AND customer_id <> %s",
                    (merchant_id, anonymous, found.customer_id),
                )
                if await taken.fetchone():  # a redacted event consumed meanwhile made one
                    anonymous = f"{personal_data.ERASED_PREFIX}{found.customer_id}"
                await conn.execute(
                    "UPDATE customers SET email_ciphertext = NULL, email_index = NULL,"
                    " first_name_ciphertext = NULL, last_name_ciphertext = NULL, user_id = NULL,"
                    " shopify_customer_id = %s,"
                    " redacted_at = coalesce(redacted_at, now()), updated_at = now()"
                    " WHERE merchant_id = %s AND customer_id = %s",
                    (anonymous, merchant_id, found.customer_id),
                )
                await conn.execute(
                    "DELETE FROM customer_rfm WHERE merchant_id = %s AND customer_id = %s",
                    (merchant_id, found.customer_id),
                )
                # Its unsent events name the erasure's anonymous ids instead, as the row does.
                await personal_data.redact_unsent_events(
                    conn,
                    merchant_id,
                    (*customer.identifiers(), shopify_id, found.user_id or "")
                    if shopify_id != anonymous
                    else (*customer.identifiers(), found.user_id or ""),
                    customer.anonymous_id,
                )
                await personal_data.forget_sent_events(conn, merchant_id, found.customer_id)
                await outbox.enqueue(
                    conn, merchant_id, events.customer_updated(found.customer_id, _PII_COLUMNS)
                )
                erased += 1
            cursor = await conn.execute(
                "UPDATE customer_import_logs SET log_details = jsonb_set(log_details, '{items}',"
                " (SELECT jsonb_agg(CASE WHEN item ->> 'shopify_customer_id' = %(id)s"
                '   THEN item || \'{"shopify_customer_id": "erased"}\'::jsonb ELSE item END'
                "   ORDER BY position)"
                "  FROM jsonb_array_elements(log_details -> 'items')"
                "   WITH ORDINALITY AS items (item, position)))"
                " WHERE merchant_id = %(m)s AND log_details -> 'items' @> %(match)s::jsonb",
                {
                    "id": customer.shopify_customer_id,
                    "m": merchant_id,
                    "match": Jsonb([{"shopify_customer_id": customer.shopify_customer_id}]),
                },
            )
            erased += cursor.rowcount
        return erased

    async def erase_merchant(self, merchant_id: str) -> int:
        """Every row Core holds for the merchant (shop/redact)."""
        erased = 0
        async with self._pool.connection() as conn, conn.transaction():
            for table in _MERCHANT_TABLES:
                erased += (
                    await conn.execute(
                        f"DELETE FROM {table} WHERE merchant_id = %s",
                        (merchant_id,),
                    )
                ).rowcount
            erased += await personal_data.erase_platform_rows(conn, merchant_id)
        return erased
