"""Users in PostgreSQL, with the Redis read-through cache in front of single-user reads.

Every write runs in one transaction with its idempotency key, its outbox event and (by
trigger) its audit row; the cache entry is dropped once that transaction has committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row

from loyalnest.platform import audit, idempotency, personal_data
from loyalnest.platform.events import inbox, outbox
from loyalnest.platform.events.consumer import PermanentEventError
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.personal_data import CustomerExport, CustomerRef
from loyalnest.platform.pii import PiiVault
from loyalnest.platform.postgres import Database
from loyalnest.platform.validation import is_uuid
from loyalnest.services.users import events
from loyalnest.services.users.domain import (
    EmailTaken,
    User,
    UserChanges,
    UserKind,
    UserNotFound,
    owner_user_id,
)
from loyalnest.services.users.store.birthdays import BirthdayStore
from loyalnest.services.users.store.cache import UserCache, UserRow

_SELECT = (
    "SELECT u.user_id::text AS user_id, u.merchant_id, u.seq, u.kind, u.email_ciphertext,"
    " r.role_id::text AS role_id, u.created_at, u.updated_at"
    " FROM users u LEFT JOIN user_roles r"
    "   ON r.merchant_id = u.merchant_id AND r.user_id = u.user_id"
)
# The partial unique index of users_0001_users.sql: a duplicate email is ALREADY_EXISTS.
_UNIQUE_ERRORS = {"users_email": EmailTaken}


class UserStore:
    def __init__(self, database: Database, vault: PiiVault, cache: UserCache | None) -> None:
        self._pool = database.pool
        self._vault = vault
        self._cache = cache
        # Customers' birthdays: the same schema, exported and erased with the accounts.
        self.birthdays = BirthdayStore(database, vault)

    def _user(self, row: UserRow) -> User:
        email = (
            self._vault.open(row.merchant_id, row.user_id, row.email_ciphertext)
            if row.email_ciphertext is not None
            else None
        )
        return User(
            user_id=row.user_id,
            merchant_id=row.merchant_id,
            seq=row.seq,
            kind=UserKind(row.kind),
            email=email,
            role_id=row.role_id,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    @staticmethod
    async def _select(conn: AsyncConnection, where: str, params: Any) -> list[UserRow]:
        cursor = conn.cursor(row_factory=class_row(UserRow))
        await cursor.execute(f"{_SELECT} WHERE {where}", params, prepare=True)
        return await cursor.fetchall()

    async def _row(self, conn: AsyncConnection, merchant_id: str, user_id: str) -> UserRow:
        rows = await self._select(
            conn, "u.merchant_id = %s AND u.user_id = %s", (merchant_id, user_id)
        )
        if not rows:
            raise UserNotFound(user_id)
        return rows[0]

    # --- reads ------------------------------------------------------------------------------

    async def get(self, merchant_id: str, user_id: str) -> User:
        row = await self._cache.get(user_id) if self._cache else None
        # user:{id} is keyed by id alone: the tenant check must happen here, on every hit.
        if row is None or row.merchant_id != merchant_id:
            async with self._pool.connection() as conn:
                row = await self._row(conn, merchant_id, user_id)
            if self._cache:
                await self._cache.put(row)
        return self._user(row)

    async def lookup(self, merchant_id: str, email: str) -> User:
        async with self._pool.connection() as conn:
            rows = await self._select(
                conn,
                "u.merchant_id = %s AND u.email_index = %s",
                (merchant_id, self._vault.index(merchant_id, email)),
            )
        if not rows:
            raise UserNotFound("(by email)")
        return self._user(rows[0])

    async def list(self, merchant_id: str, *, limit: int, after_seq: int | None) -> list[User]:
        async with self._pool.connection() as conn:
            rows = await self._select(
                conn,
                "u.merchant_id = %s AND u.seq > %s ORDER BY u.seq LIMIT %s",
                (merchant_id, after_seq or 0, limit),
            )
        return [self._user(row) for row in rows]

    # --- changes ----------------------------------------------------------------------------

    async def create(
        self, merchant_id: str, *, kind: UserKind, email: str | None, key: IdempotencyKey
    ) -> User:
        async def insert(conn: AsyncConnection) -> tuple[User, str]:
            user_id = str(uuid.uuid4())
            ciphertext, index = self._seal(merchant_id, user_id, email)
            await conn.execute(
                "INSERT INTO users (user_id, merchant_id, kind, email_ciphertext, email_index)"
                " VALUES (%s, %s, %s, %s, %s)",
                (user_id, merchant_id, kind.value, ciphertext, index),
            )
            user = self._user(await self._row(conn, merchant_id, user_id))
            await outbox.enqueue(
                conn, merchant_id, events.user_created(user), occurred_at=user.created_at
            )
            return user, user_id

        return await idempotency.write_once(
            self._pool,
            merchant_id,
            key,
            write=insert,
            replay=lambda conn, user_id: self._replay(conn, merchant_id, user_id),
            audited=True,
            unique_errors=_UNIQUE_ERRORS,
        )

    async def _replay(self, conn: AsyncConnection, merchant_id: str, user_id: str) -> User:
        return self._user(await self._row(conn, merchant_id, user_id))

    async def update(
        self, merchant_id: str, user_id: str, changes: UserChanges, *, key: IdempotencyKey
    ) -> User:
        changed: list[str] = []

        async def apply(conn: AsyncConnection) -> tuple[User, str]:
            cursor = await conn.execute(
                "SELECT kind, email_index FROM users"
                " WHERE merchant_id = %s AND user_id = %s FOR UPDATE",
                (merchant_id, user_id),
            )
            current = await cursor.fetchone()
            if current is None:
                raise UserNotFound(user_id)
            kind, email_index = current
            assignments: dict[str, Any] = {}
            if changes.kind is not None and changes.kind.value != kind:
                assignments["kind"] = changes.kind.value
                changed.append("kind")
            if changes.email is not None:
                ciphertext, index = self._seal(merchant_id, user_id, changes.email or None)
                if index != (bytes(email_index) if email_index is not None else None):
                    assignments |= {"email_ciphertext": ciphertext, "email_index": index}
                    changed.append("email")
            if changed:
                # Only columns named by the code above: never caller-chosen identifiers.
                columns = ", ".join(f"{column} = %({column})s" for column in assignments)
                await conn.execute(
                    f"UPDATE users SET {columns}, updated_at = now()"
                    " WHERE merchant_id = %(merchant_id)s AND user_id = %(user_id)s",
                    {**assignments, "merchant_id": merchant_id, "user_id": user_id},
                )
            user = self._user(await self._row(conn, merchant_id, user_id))
            if changed:
                await outbox.enqueue(
                    conn,
                    merchant_id,
                    events.user_updated(user, changed),
                    occurred_at=user.updated_at,
                )
            return user, user_id

        user = await idempotency.write_once(
            self._pool,
            merchant_id,
            key,
            write=apply,
            replay=lambda conn, earlier: self._replay(conn, merchant_id, earlier),
            audited=True,
            unique_errors=_UNIQUE_ERRORS,
        )
        # After commit: dropping it earlier would let a concurrent read re-cache the old row.
        if changed and self._cache:
            await self._cache.invalidate(user_id)
        return user

    def _seal(
        self, merchant_id: str, user_id: str, email: str | None
    ) -> tuple[bytes | None, bytes | None]:
        if email is None:
            return None, None
        return (
            self._vault.seal(merchant_id, user_id, email),
            self._vault.index(merchant_id, email),
        )

    # --- events -----------------------------------------------------------------------------

    async def create_owner(self, merchant_id: str, *, event: ConsumedEvent) -> bool:
        """The owner account of a new merchant; once, however often the event arrives."""
        user_id = owner_user_id(merchant_id)
        async with audit.transaction(self._pool, audit.actor_of_event(event)) as conn:
            if not await inbox.claim(conn, event):
                return False
            cursor = await conn.execute(
                "INSERT INTO users (user_id, merchant_id, kind) VALUES (%s, %s, 'staff')"
                " ON CONFLICT (user_id) DO NOTHING RETURNING 1",
                (user_id, merchant_id),
            )
            if await cursor.fetchone() is not None:
                user = self._user(await self._row(conn, merchant_id, user_id))
                await outbox.enqueue(
                    conn, merchant_id, events.user_created(user), occurred_at=user.created_at
                )
        return True

    async def apply_role_assignment(
        self,
        merchant_id: str,
        user_id: str,
        role_id: str,
        *,
        assigned_at: datetime,
        event: ConsumedEvent,
    ) -> bool:
        """Projects role.assigned; the newest assignment wins whatever the arrival order."""
        if not (is_uuid(user_id) and is_uuid(role_id)):
            raise PermanentEventError(f"role.assigned with a malformed id ({event.event_id})")
        async with audit.transaction(self._pool, audit.actor_of_event(event)) as conn:
            if not await inbox.claim(conn, event):
                return False
            # Lock the user first (if it exists yet) so its user.updated events stay ordered.
            cursor = await conn.execute(
                "SELECT 1 FROM users WHERE merchant_id = %s AND user_id = %s FOR UPDATE",
                (merchant_id, user_id),
            )
            user_exists = await cursor.fetchone() is not None
            cursor = await conn.execute(
                "INSERT INTO user_roles (merchant_id, user_id, role_id, assigned_at)"
                " VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (merchant_id, user_id) DO UPDATE"
                " SET role_id = excluded.role_id, assigned_at = excluded.assigned_at"
                " WHERE user_roles.assigned_at < excluded.assigned_at"
                "   AND user_roles.role_id <> excluded.role_id"
                " RETURNING 1",
                (merchant_id, user_id, role_id, assigned_at),
            )
            applied = await cursor.fetchone() is not None
            if applied and user_exists:
                user = self._user(await self._row(conn, merchant_id, user_id))
                await outbox.enqueue(conn, merchant_id, events.user_updated(user, ["role_id"]))
        if applied and self._cache:
            await self._cache.invalidate(user_id)
        return True

    # --- personal data (loyalnest.platform.personal_data) -----------------------------------

    async def _customer_rows(
        self, conn: AsyncConnection, merchant_id: str, customer: CustomerRef, *, lock: bool
    ) -> Sequence[UserRow]:
        """The customer accounts of `customer`: by the ids others linked, or by email (blind
        index). Staff accounts are never a Shopify customer's, whatever their email."""
        ids = [user_id for user_id in customer.user_ids if is_uuid(user_id)]
        indexes = [self._vault.index(merchant_id, email) for email in customer.emails if email]
        return await self._select(
            conn,
            "u.merchant_id = %s AND u.kind = 'customer'"
            " AND (u.user_id = ANY(%s::uuid[]) OR u.email_index = ANY(%s))"
            + (" ORDER BY u.user_id FOR UPDATE OF u" if lock else ""),
            (merchant_id, ids, indexes),
        )

    async def export_customer(self, merchant_id: str, customer: CustomerRef) -> CustomerExport:
        async with self._pool.connection() as conn:
            rows = await self._customer_rows(conn, merchant_id, customer, lock=False)
            birthday = (
                await self.birthdays.of_customer(conn, merchant_id, customer.shopify_customer_id)
                if customer.shopify_customer_id
                else None
            )
        users = [self._user(row) for row in rows]
        data: dict[str, Any] = {}
        if users:
            data["users"] = [
                {
                    "user_id": user.user_id,
                    "kind": user.kind.value,
                    "email": user.email,
                    "role_id": user.role_id,
                    "created_at": user.created_at,
                    "updated_at": user.updated_at,
                }
                for user in users
            ]
        if birthday is not None:
            data["birthday"] = {
                "birthday": birthday.birthday.text,
                "consent_at": birthday.consent_at,
            }
        return CustomerExport(
            data=data,
            found=CustomerRef(
                customer.shopify_customer_id,
                user_ids=tuple(user.user_id for user in users),
                emails=tuple(user.email for user in users if user.email),
            ),
        )

    async def erase_customer(self, merchant_id: str, customer: CustomerRef) -> int:
        """Deletes the customer's accounts (the audit row of a delete keeps no email) and
        their published events' outbox rows."""
        async with audit.transaction(self._pool) as conn:
            rows = await self._customer_rows(conn, merchant_id, customer, lock=True)
            user_ids = [row.user_id for row in rows]
            erased = 0
            if customer.shopify_customer_id:
                erased += await self.birthdays.erase_customer(
                    conn, merchant_id, customer.shopify_customer_id
                )
            await personal_data.redact_unsent_events(
                conn, merchant_id, (*customer.identifiers(), *user_ids), customer.anonymous_id
            )
            for user_id in user_ids:
                await personal_data.forget_sent_events(conn, merchant_id, user_id)
            if user_ids:
                await conn.execute(
                    "DELETE FROM user_roles WHERE merchant_id = %s AND user_id = ANY(%s::uuid[])",
                    (merchant_id, user_ids),
                )
                erased += (
                    await conn.execute(
                        "DELETE FROM users WHERE merchant_id = %s AND user_id = ANY(%s::uuid[])",
                        (merchant_id, user_ids),
                    )
                ).rowcount
        if self._cache:
            for user_id in user_ids:
                await self._cache.invalidate(user_id)
        return erased

    async def erase_merchant(self, merchant_id: str) -> int:
        async with audit.transaction(self._pool) as conn:
            cursor = await conn.execute(
                "DELETE FROM users WHERE merchant_id = %s RETURNING user_id::text", (merchant_id,)
            )
            user_ids = [user_id for (user_id,) in await cursor.fetchall()]
            erased = len(user_ids)
            erased += (
                await conn.execute("DELETE FROM user_roles WHERE merchant_id = %s", (merchant_id,))
            ).rowcount
            erased += await self.birthdays.erase_merchant(conn, merchant_id)
            # After the deletes: their audit rows go too (shop/redact erases everything).
            erased += await personal_data.erase_platform_rows(conn, merchant_id)
        if self._cache:
            for user_id in user_ids:
                await self._cache.invalidate(user_id)
        return erased
