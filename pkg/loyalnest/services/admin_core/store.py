"""GDPR requests in PostgreSQL (schema `admin_core`): requests, per-service steps, exports.

A request and its steps (one per personal-data holder) are inserted in one transaction with
its idempotency key or its processed webhook event, and its gdpr_request.created event. The
worker (gdpr.py) leases due requests (`claim_due`), records each step's outcome, and
completes a request only once every step has and its announcement has left the outbox; a
completed redaction then forgets whom it was about (customer id and identifiers nulled, the
request's published outbox row deleted) and deletes the customer's export packages.

The customer's identifiers and export packages are sealed under AdminCore's key (PiiVault),
bound to the merchant and request.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from loyalnest.platform import idempotency, personal_data
from loyalnest.platform.events import inbox, outbox
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.personal_data import CustomerRef, new_erasure_key
from loyalnest.platform.pii import PiiVault
from loyalnest.platform.postgres import Database
from loyalnest.services.admin_core import audit_log, events
from loyalnest.services.admin_core.domain import (
    DEADLINE,
    Export,
    ExportExpired,
    ExportNotReady,
    GdprRequest,
    GdprRequestNotFound,
    Merchant,
    NewRequest,
    NotADataRequest,
    RequestType,
    Source,
    Status,
    Step,
)

_SELECT = (
    "SELECT request_id::text, merchant_id, type, customer_id, source, status, created_at,"
    " completed_at FROM gdpr_requests"
)


@dataclass(frozen=True)
class Work:
    """A request the worker leased: what it needs to carry out its pending steps."""

    request_id: str
    merchant_id: str
    type: RequestType
    customer_id: str | None
    identifiers: CustomerRef | None
    pending: tuple[str, ...]
    attempts: int


class GdprStore:
    def __init__(
        self,
        database: Database,
        vault: PiiVault,
        *,
        holders: Sequence[str],
        export_ttl: timedelta,
        events_published: bool = True,
    ) -> None:
        """`events_published`: an outbox relay publishes this schema's events, so a request
        completes only once its announcement has left (False: events are off, nothing waits)."""
        self._pool = database.pool
        self._vault = vault
        self._holders = tuple(holders)
        self._export_ttl = export_ttl
        self._events_published = events_published

    def _digest(self, merchant_id: str, customer_id: str) -> bytes:
        return self._vault.index(merchant_id, customer_id, column="customer")

    # --- filing -----------------------------------------------------------------------------

    async def _insert(self, conn: AsyncConnection, merchant_id: str, new: NewRequest) -> str:
        request_id = str(uuid.uuid4())
        customer_id = new.customer_id if new.type.about_a_customer else None
        await conn.execute(
            "INSERT INTO gdpr_requests (request_id, merchant_id, type, source, customer_id,"
            " customer_digest, identifiers_sealed) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                request_id,
                merchant_id,
                new.type.value,
                new.source.value,
                customer_id,
                self._digest(merchant_id, customer_id) if customer_id else None,
                self._seal_identifiers(
                    merchant_id, request_id, CustomerRef(customer_id, emails=new.emails)
                )
                if customer_id and new.emails
                else None,
            ),
        )
        await conn.execute(
            "INSERT INTO gdpr_request_steps (request_id, service) SELECT %s, unnest(%s::text[])",
            (request_id, list(self._holders)),
        )
        if customer_id:
            await outbox.enqueue(
                conn, merchant_id, events.gdpr_request_created(request_id, customer_id, new.type)
            )
        return request_id

    async def file(self, merchant_id: str, new: NewRequest, *, key: IdempotencyKey) -> GdprRequest:
        """An admin's request, once per idempotency key."""

        async def insert(conn: AsyncConnection) -> tuple[GdprRequest, str]:
            request_id = await self._insert(conn, merchant_id, new)
            return await self._request(conn, merchant_id, request_id), request_id

        return await idempotency.write_once(
            self._pool,
            merchant_id,
            key,
            write=insert,
            replay=lambda conn, request_id: self._request(conn, merchant_id, request_id),
        )

    async def file_from_event(self, event: ConsumedEvent, new: NewRequest) -> bool:
        """A Shopify webhook's request, once per event however often it is delivered."""
        async with self._pool.connection() as conn, conn.transaction():
            if not await inbox.claim(conn, event):
                return False
            await self._insert(conn, event.merchant_id, new)
        return True

    # --- reads ------------------------------------------------------------------------------

    async def _steps(self, conn: AsyncConnection, request_ids: list[str]) -> dict[str, list[Step]]:
        cursor = await conn.execute(
            "SELECT request_id::text, service, status, records, attempts, last_error,"
            " completed_at FROM gdpr_request_steps WHERE request_id = ANY(%s::uuid[])"
            " ORDER BY service",
            (request_ids,),
        )
        steps: dict[str, list[Step]] = {}
        for request_id, service, status, records, attempts, error, done in await cursor.fetchall():
            steps.setdefault(request_id, []).append(
                Step(service, Status(status), records, attempts, error, done)
            )
        return steps

    async def _requests(
        self, conn: AsyncConnection, where: str, params: Sequence[Any]
    ) -> list[GdprRequest]:
        cursor = await conn.execute(f"{_SELECT} WHERE {where}", params)
        rows = await cursor.fetchall()
        steps = await self._steps(conn, [row[0] for row in rows])
        return [
            GdprRequest(
                request_id=request_id,
                merchant_id=merchant_id,
                type=RequestType(kind),
                customer_id=customer_id,
                source=Source(source),
                status=Status(status),
                steps=tuple(steps.get(request_id, ())),
                created_at=created_at,
                completed_at=completed_at,
            )
            for (
                request_id,
                merchant_id,
                kind,
                customer_id,
                source,
                status,
                created_at,
                completed_at,
            ) in rows
        ]

    async def _request(
        self, conn: AsyncConnection, merchant_id: str, request_id: str
    ) -> GdprRequest:
        found = await self._requests(
            conn, "merchant_id = %s AND request_id = %s", (merchant_id, request_id)
        )
        if not found:
            raise GdprRequestNotFound(request_id)
        return found[0]

    async def get(self, merchant_id: str, request_id: str) -> GdprRequest:
        async with self._pool.connection() as conn:
            return await self._request(conn, merchant_id, request_id)

    async def list(
        self, merchant_id: str, *, overdue_only: bool, limit: int, offset: int
    ) -> list[GdprRequest]:
        """Newest first."""
        overdue = " AND status = 'pending' AND created_at < now() - %s" if overdue_only else ""
        params: list[Any] = [merchant_id]
        if overdue_only:
            params.append(DEADLINE)
        async with self._pool.connection() as conn:
            return await self._requests(
                conn,
                f"merchant_id = %s{overdue}"
                " ORDER BY created_at DESC, request_id LIMIT %s OFFSET %s",
                [*params, limit, offset],
            )

    async def overdue_count(self) -> int:
        """Open requests past Shopify's 30 days, every merchant's (the metric)."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM gdpr_requests WHERE status = 'pending'"
                " AND created_at < now() - %s",
                (DEADLINE,),
            )
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    # --- the worker's writes ----------------------------------------------------------------

    async def claim_due(self, lease: timedelta) -> Work | None:
        """Leases the request due longest ago: another worker skips it until the lease ends
        (a crashed worker's request is taken again then)."""
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "UPDATE gdpr_requests SET next_attempt_at = now() + %s, attempts = attempts + 1"
                " WHERE request_id = (SELECT request_id FROM gdpr_requests"
                "   WHERE status = 'pending' AND next_attempt_at <= now()"
                "   ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
                " RETURNING request_id::text, merchant_id, type, customer_id,"
                "   identifiers_sealed, attempts",
                (lease,),
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            request_id, merchant_id, kind, customer_id, sealed, attempts = row
            cursor = await conn.execute(
                "SELECT service FROM gdpr_request_steps"
                " WHERE request_id = %s AND status = 'pending' ORDER BY service",
                (request_id,),
            )
            pending = tuple(service for (service,) in await cursor.fetchall())
        identifiers = (
            self._open_identifiers(merchant_id, request_id, bytes(sealed)) if sealed else None
        )
        return Work(
            request_id, merchant_id, RequestType(kind), customer_id, identifiers, pending, attempts
        )

    def _seal_identifiers(self, merchant_id: str, request_id: str, ref: CustomerRef) -> bytes:
        text = json.dumps(
            {
                "user_ids": ref.user_ids,
                "emails": ref.emails,
                "core_customer_ids": ref.core_customer_ids,
                "erasure_key": base64.b64encode(ref.erasure_key).decode(),
            }
        )
        return self._vault.seal(merchant_id, request_id, text, column="identifiers")

    def _open_identifiers(self, merchant_id: str, request_id: str, sealed: bytes) -> CustomerRef:
        data = json.loads(self._vault.open(merchant_id, request_id, sealed, column="identifiers"))
        return CustomerRef(
            "",
            tuple(data["user_ids"]),
            tuple(data["emails"]),
            tuple(data["core_customer_ids"]),
            # Kept before the erasure key existed: a new one (and per attempt) for those.
            base64.b64decode(data["erasure_key"]) if "erasure_key" in data else new_erasure_key(),
        )

    async def save_identifiers(self, work: Work, ref: CustomerRef) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE gdpr_requests SET identifiers_sealed = %s WHERE request_id = %s",
                (self._seal_identifiers(work.merchant_id, work.request_id, ref), work.request_id),
            )

    async def step_done(self, request_id: str, service: str, records: int) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE gdpr_request_steps SET status = 'completed', records = %s,"
                " attempts = attempts + 1, last_error = '', completed_at = now()"
                " WHERE request_id = %s AND service = %s AND status = 'pending'",
                (records, request_id, service),
            )

    async def step_failed(self, request_id: str, service: str, error: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE gdpr_request_steps SET attempts = attempts + 1, last_error = %s"
                " WHERE request_id = %s AND service = %s",
                (error[:500], request_id, service),
            )

    async def retry_later(self, request_id: str, error: str, delay: timedelta) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE gdpr_requests SET next_attempt_at = now() + %s, last_error = %s"
                " WHERE request_id = %s AND status = 'pending'",
                (delay, error[:500], request_id),
            )

    async def save_export(
        self, work: Work, package: dict[str, Any], records: dict[str, int]
    ) -> None:
        """The package and every step of a data request, in one transaction."""
        assert work.customer_id is not None  # data requests are about a customer
        text = json.dumps(
            {"customer_id": work.customer_id, "package": package}, default=str, sort_keys=True
        )
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO gdpr_exports (request_id, merchant_id, customer_digest,"
                " package_sealed, expires_at) VALUES (%s, %s, %s, %s, now() + %s)"
                " ON CONFLICT (request_id) DO NOTHING",
                (
                    work.request_id,
                    work.merchant_id,
                    self._digest(work.merchant_id, work.customer_id),
                    self._vault.seal(work.merchant_id, work.request_id, text, column="export"),
                    self._export_ttl,
                ),
            )
            for service, count in records.items():
                await conn.execute(
                    "UPDATE gdpr_request_steps SET status = 'completed', records = %s,"
                    " attempts = attempts + 1, last_error = '', completed_at = now()"
                    " WHERE request_id = %s AND service = %s AND status = 'pending'",
                    (count, work.request_id, service),
                )

    async def finish(self, work: Work) -> bool:
        """Completes the request once every step has and gdpr_request.created has left the
        outbox; False (the worker comes back) otherwise. A completed redaction forgets whom
        it was about; a shop redaction leaves nothing of the merchant but the requests."""
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'pending') FROM gdpr_request_steps"
                " WHERE request_id = %s",
                (work.request_id,),
            )
            row = await cursor.fetchone()
            if row is None or row[0]:
                return False
            if work.customer_id and self._events_published:
                cursor = await conn.execute(
                    "SELECT 1 FROM outbox WHERE partition_key = %s AND sent_at IS NULL LIMIT 1",
                    (f"{work.merchant_id}/{work.customer_id}",),
                )
                if await cursor.fetchone() is not None:
                    return False
            if work.type is RequestType.DATA_REQUEST:
                await conn.execute(
                    "UPDATE gdpr_requests SET status = 'completed', completed_at = now(),"
                    " last_error = '' WHERE request_id = %s",
                    (work.request_id,),
                )
                return True
            if work.type is RequestType.CUSTOMER_REDACT:
                assert work.customer_id is not None
                digest = self._digest(work.merchant_id, work.customer_id)
                # Every request about the customer forgets them, their packages go.
                await conn.execute(
                    "DELETE FROM gdpr_exports WHERE merchant_id = %s AND customer_digest = %s",
                    (work.merchant_id, digest),
                )
                await conn.execute(
                    "UPDATE gdpr_requests SET customer_id = NULL, identifiers_sealed = NULL"
                    " WHERE merchant_id = %s AND customer_digest = %s"
                    " AND (status = 'completed' OR request_id = %s)",
                    (work.merchant_id, digest, work.request_id),
                )
                await personal_data.forget_sent_events(conn, work.merchant_id, work.customer_id)
            else:
                await conn.execute(
                    "DELETE FROM gdpr_exports WHERE merchant_id = %s", (work.merchant_id,)
                )
                await conn.execute(
                    "UPDATE gdpr_requests SET customer_id = NULL, identifiers_sealed = NULL"
                    " WHERE merchant_id = %s AND status = 'completed'",
                    (work.merchant_id,),
                )
                await personal_data.erase_platform_rows(conn, work.merchant_id)
                # The mesh's audit log too: the one exception to its immutability.
                await audit_log.erase_merchant(conn, work.merchant_id)
            await conn.execute(
                "UPDATE gdpr_requests SET status = 'completed', completed_at = now(),"
                " last_error = '', identifiers_sealed = NULL,"
                " customer_id = CASE WHEN type = 'data_request' THEN customer_id END"
                " WHERE request_id = %s",
                (work.request_id,),
            )
        return True

    # --- exports ----------------------------------------------------------------------------

    async def export(self, merchant_id: str, request_id: str, now: datetime) -> Export:
        async with self._pool.connection() as conn:
            request = await self._request(conn, merchant_id, request_id)
            if request.type is not RequestType.DATA_REQUEST:
                raise NotADataRequest(request_id)
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                "SELECT package_sealed, created_at, expires_at FROM gdpr_exports"
                " WHERE merchant_id = %s AND request_id = %s",
                (merchant_id, request_id),
            )
            row = await cursor.fetchone()
        if row is None:
            if request.status is Status.PENDING:
                raise ExportNotReady(request_id)
            raise ExportExpired(request_id)
        if row["expires_at"] <= now:
            raise ExportExpired(request_id)
        data = json.loads(
            self._vault.open(merchant_id, request_id, bytes(row["package_sealed"]), column="export")
        )
        return Export(
            request_id, data["customer_id"], data["package"], row["created_at"], row["expires_at"]
        )

    async def purge_expired_exports(self) -> int:
        async with self._pool.connection() as conn:
            cursor = await conn.execute("DELETE FROM gdpr_exports WHERE expires_at <= now()")
            return cursor.rowcount


class MerchantDirectory:
    """The merchants projection (merchants table), fed by Auth's and Core's events, each
    applied once; a late event never undoes a newer one."""

    def __init__(self, database: Database) -> None:
        self._pool = database.pool

    async def _apply(self, event: ConsumedEvent, statement: str, params: dict[str, Any]) -> bool:
        async with self._pool.connection() as conn, conn.transaction():
            if not await inbox.claim(conn, event):
                return False
            await conn.execute(
                statement, {"m": event.merchant_id, "at": event.occurred_at, **params}
            )
        return True

    async def created(self, event: ConsumedEvent, shop_domain: str) -> bool:
        return await self._apply(
            event,
            "INSERT INTO merchants (merchant_id, shop_domain, created_at, updated_at)"
            " VALUES (%(m)s, %(shop)s, %(at)s, %(at)s)"
            " ON CONFLICT (merchant_id) DO UPDATE SET shop_domain = excluded.shop_domain,"
            " created_at = least(merchants.created_at, excluded.created_at)",
            {"shop": shop_domain},
        )

    async def installed(self, event: ConsumedEvent, shop_domain: str, *, installed: bool) -> bool:
        """merchant.uninstalled / merchant.reinstalled (one topic, in order per merchant)."""
        return await self._apply(
            event,
            "INSERT INTO merchants (merchant_id, shop_domain, status, uninstalled_at, created_at,"
            " updated_at) VALUES (%(m)s, %(shop)s, %(status)s, %(gone)s, %(at)s, %(at)s)"
            " ON CONFLICT (merchant_id) DO UPDATE SET shop_domain = excluded.shop_domain,"
            " status = excluded.status, uninstalled_at = excluded.uninstalled_at,"
            " updated_at = greatest(merchants.updated_at, excluded.updated_at)",
            {
                "shop": shop_domain,
                "status": "installed" if installed else "uninstalled",
                "gone": None if installed else event.occurred_at,
            },
        )

    async def plan(self, event: ConsumedEvent, plan: str, version: int) -> bool:
        return await self._apply(
            event,
            "INSERT INTO merchants (merchant_id, plan, settings_version, created_at, updated_at)"
            " VALUES (%(m)s, %(plan)s, %(version)s, %(at)s, %(at)s)"
            " ON CONFLICT (merchant_id) DO UPDATE SET plan = excluded.plan,"
            " settings_version = excluded.settings_version,"
            " updated_at = greatest(merchants.updated_at, excluded.updated_at)"
            " WHERE merchants.settings_version < excluded.settings_version",
            {"plan": plan, "version": version},
        )

    async def list(
        self, *, merchant_id: str | None, query: str, limit: int, offset: int
    ) -> list[Merchant]:
        """Newest first; only `merchant_id` when given (a merchant-bound caller)."""
        pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT merchant_id, shop_domain, plan, status, created_at, uninstalled_at,"
                " updated_at FROM merchants"
                " WHERE (%(m)s::text IS NULL OR merchant_id = %(m)s)"
                " AND shop_domain ILIKE %(q)s"
                " ORDER BY created_at DESC, merchant_id LIMIT %(limit)s OFFSET %(offset)s",
                {"m": merchant_id, "q": pattern, "limit": limit, "offset": offset},
            )
            return [Merchant(*row) for row in await cursor.fetchall()]


def utc_now() -> datetime:
    return datetime.now(UTC)
