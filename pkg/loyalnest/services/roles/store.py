"""Roles and role assignments in PostgreSQL.

Every write runs in one transaction with its idempotency key, its outbox event and (by
trigger) its audit row.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from loyalnest.platform import audit, idempotency
from loyalnest.platform.events import inbox, outbox
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.postgres import Database
from loyalnest.services.roles import events
from loyalnest.services.roles.domain import (
    DEFAULT_ROLES,
    Assignment,
    AssignmentNotFound,
    Role,
    RoleChanges,
    RoleNameTaken,
    RoleNotFound,
    default_role_id,
)

_SELECT_ROLE = (
    "SELECT role_id::text AS role_id, merchant_id, seq, name, description, permissions,"
    " created_at, updated_at FROM roles"
)
# The unique index of roles_0001_roles.sql on (merchant_id, lower(name)).
_NAME_CONSTRAINT = "roles_name"


def _role(row: dict[str, Any]) -> Role:
    return Role(**{**row, "permissions": tuple(row["permissions"])})


class RoleStore:
    def __init__(self, database: Database) -> None:
        self._pool = database.pool

    @asynccontextmanager
    async def _writing(self, actor: str, name: str | None) -> AsyncIterator[AsyncConnection]:
        """A transaction whose audit rows name `actor`; a taken name is ALREADY_EXISTS."""
        try:
            async with self._pool.connection() as conn, conn.transaction():
                await audit.set_actor(conn, actor)
                yield conn
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == _NAME_CONSTRAINT:
                raise RoleNameTaken(name or "") from exc
            raise

    @staticmethod
    async def _select(conn: AsyncConnection, where: str, params: Any) -> list[Role]:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(f"{_SELECT_ROLE} WHERE {where}", params, prepare=True)
        return [_role(row) for row in await cursor.fetchall()]

    async def _role(
        self, conn: AsyncConnection, merchant_id: str, role_id: str, *, lock: bool = False
    ) -> Role:
        roles = await self._select(
            conn,
            "merchant_id = %s AND role_id = %s" + (" FOR UPDATE" if lock else ""),
            (merchant_id, role_id),
        )
        if not roles:
            raise RoleNotFound(role_id)
        return roles[0]

    # --- reads ------------------------------------------------------------------------------

    async def get(self, merchant_id: str, role_id: str) -> Role:
        async with self._pool.connection() as conn:
            return await self._role(conn, merchant_id, role_id)

    async def list(self, merchant_id: str, *, limit: int, after_seq: int | None) -> list[Role]:
        async with self._pool.connection() as conn:
            return await self._select(
                conn,
                "merchant_id = %s AND seq > %s ORDER BY seq LIMIT %s",
                (merchant_id, after_seq or 0, limit),
            )

    async def user_role(self, merchant_id: str, user_id: str) -> tuple[Assignment, Role]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT user_id::text, role_id::text, assigned_at FROM role_assignments"
                " WHERE merchant_id = %s AND user_id = %s",
                (merchant_id, user_id),
            )
            row = await cursor.fetchone()
            if row is None:
                raise AssignmentNotFound(user_id)
            assignment = Assignment(*row)
            return assignment, await self._role(conn, merchant_id, assignment.role_id)

    # --- changes ----------------------------------------------------------------------------

    async def create(
        self,
        merchant_id: str,
        *,
        name: str,
        description: str,
        permissions: tuple[str, ...],
        key: IdempotencyKey,
        actor: str,
    ) -> Role:
        async with self._writing(actor, name) as conn:
            earlier = await idempotency.claim(conn, merchant_id, key)
            if earlier is not None:
                return await self._role(conn, merchant_id, earlier)
            role_id = str(uuid.uuid4())
            await conn.execute(
                "INSERT INTO roles (role_id, merchant_id, name, description, permissions)"
                " VALUES (%s, %s, %s, %s, %s)",
                (role_id, merchant_id, name, description, Jsonb(list(permissions))),
            )
            role = await self._role(conn, merchant_id, role_id)
            await outbox.enqueue(
                conn, merchant_id, events.role_updated(role), occurred_at=role.created_at
            )
            await idempotency.record(conn, merchant_id, key, role_id)
        return role

    async def update(
        self,
        merchant_id: str,
        role_id: str,
        changes: RoleChanges,
        *,
        key: IdempotencyKey,
        actor: str,
    ) -> Role:
        async with self._writing(actor, changes.name) as conn:
            earlier = await idempotency.claim(conn, merchant_id, key)
            if earlier is not None:
                return await self._role(conn, merchant_id, earlier)
            current = await self._role(conn, merchant_id, role_id, lock=True)
            assignments: dict[str, Any] = {}
            if changes.name is not None and changes.name != current.name:
                assignments["name"] = changes.name
            if changes.description is not None and changes.description != current.description:
                assignments["description"] = changes.description
            if changes.permissions is not None and changes.permissions != current.permissions:
                assignments["permissions"] = Jsonb(list(changes.permissions))
            role = current
            if assignments:
                # Only columns named by the code above: never caller-chosen identifiers.
                columns = ", ".join(f"{column} = %({column})s" for column in assignments)
                await conn.execute(
                    f"UPDATE roles SET {columns}, updated_at = now()"
                    " WHERE merchant_id = %(merchant_id)s AND role_id = %(role_id)s",
                    {**assignments, "merchant_id": merchant_id, "role_id": role_id},
                )
                role = await self._role(conn, merchant_id, role_id)
            # role.updated announces permission sets; a rename changes no one's access.
            if "permissions" in assignments:
                await outbox.enqueue(
                    conn, merchant_id, events.role_updated(role), occurred_at=role.updated_at
                )
            await idempotency.record(conn, merchant_id, key, role_id)
        return role

    async def assign(
        self, merchant_id: str, user_id: str, role_id: str, *, key: IdempotencyKey, actor: str
    ) -> Assignment:
        async with self._writing(actor, None) as conn:
            earlier = await idempotency.claim(conn, merchant_id, key)
            if earlier is None:
                # Locks the role: its role.updated and role.assigned events keep their order.
                await self._role(conn, merchant_id, role_id, lock=True)
                cursor = await conn.execute(
                    "INSERT INTO role_assignments (merchant_id, user_id, role_id)"
                    " VALUES (%s, %s, %s)"
                    " ON CONFLICT (merchant_id, user_id) DO UPDATE"
                    " SET role_id = excluded.role_id, assigned_at = now()"
                    " WHERE role_assignments.role_id <> excluded.role_id"
                    " RETURNING user_id::text, role_id::text, assigned_at",
                    (merchant_id, user_id, role_id),
                )
                row = await cursor.fetchone()
                if row is not None:  # None: the user had this role already, nothing changed
                    assignment = Assignment(*row)
                    await outbox.enqueue(
                        conn,
                        merchant_id,
                        events.role_assigned(assignment),
                        occurred_at=assignment.assigned_at,
                    )
                await idempotency.record(conn, merchant_id, key, user_id)
            cursor = await conn.execute(
                "SELECT user_id::text, role_id::text, assigned_at FROM role_assignments"
                " WHERE merchant_id = %s AND user_id = %s",
                (merchant_id, earlier or user_id),
            )
            current = await cursor.fetchone()
            assert current is not None  # written above or by the call that holds the key
        return Assignment(*current)

    # --- events -----------------------------------------------------------------------------

    async def create_default_roles(self, merchant_id: str, *, event: ConsumedEvent) -> bool:
        """The roles a new merchant starts with; once, however often the event arrives."""
        async with self._writing(f"event:{event.event_type}:{event.event_id}", None) as conn:
            if not await inbox.claim(conn, event):
                return False
            for name, permissions in DEFAULT_ROLES.items():
                role_id = default_role_id(merchant_id, name)
                # No conflict target: an existing id (a replay) or name (made by hand) both
                # mean there is nothing to do.
                cursor = await conn.execute(
                    "INSERT INTO roles (role_id, merchant_id, name, permissions)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                    (role_id, merchant_id, name, Jsonb(list(permissions))),
                )
                if await cursor.fetchone() is not None:
                    role = await self._role(conn, merchant_id, role_id)
                    await outbox.enqueue(
                        conn, merchant_id, events.role_updated(role), occurred_at=role.created_at
                    )
        return True
