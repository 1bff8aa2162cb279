"""Roles and role assignments in PostgreSQL.

Every write runs in one transaction with its idempotency key, its outbox event and (by
trigger) its audit row.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

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


def _name_taken(name: str) -> dict[str, Callable[[], Exception]]:
    """A taken name is ALREADY_EXISTS, naming it."""
    return {_NAME_CONSTRAINT: lambda: RoleNameTaken(name)}


def _role(row: dict[str, Any]) -> Role:
    return Role(**{**row, "permissions": tuple(row["permissions"])})


class RoleStore:
    def __init__(self, database: Database) -> None:
        self._pool = database.pool

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

    async def _assignment(
        self, conn: AsyncConnection, merchant_id: str, user_id: str
    ) -> Assignment:
        cursor = await conn.execute(
            "SELECT user_id::text, role_id::text, assigned_at FROM role_assignments"
            " WHERE merchant_id = %s AND user_id = %s",
            (merchant_id, user_id),
        )
        row = await cursor.fetchone()
        if row is None:
            raise AssignmentNotFound(user_id)
        return Assignment(*row)

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
            assignment = await self._assignment(conn, merchant_id, user_id)
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
    ) -> Role:
        async def insert(conn: AsyncConnection) -> tuple[Role, str]:
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
            return role, role_id

        return await idempotency.write_once(
            self._pool,
            merchant_id,
            key,
            write=insert,
            replay=lambda conn, role_id: self._role(conn, merchant_id, role_id),
            audited=True,
            unique_errors=_name_taken(name),
        )

    async def update(
        self, merchant_id: str, role_id: str, changes: RoleChanges, *, key: IdempotencyKey
    ) -> Role:
        async def apply(conn: AsyncConnection) -> tuple[Role, str]:
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
            return role, role_id

        return await idempotency.write_once(
            self._pool,
            merchant_id,
            key,
            write=apply,
            replay=lambda conn, earlier: self._role(conn, merchant_id, earlier),
            audited=True,
            unique_errors=_name_taken(changes.name or ""),
        )

    async def assign(
        self, merchant_id: str, user_id: str, role_id: str, *, key: IdempotencyKey
    ) -> Assignment:
        async def apply(conn: AsyncConnection) -> tuple[Assignment, str]:
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
            return await self._assignment(conn, merchant_id, user_id), user_id

        return await idempotency.write_once(
            self._pool,
            merchant_id,
            key,
            write=apply,
            replay=lambda conn, earlier: self._assignment(conn, merchant_id, earlier),
            audited=True,
        )

    # --- events -----------------------------------------------------------------------------

    async def create_default_roles(self, merchant_id: str, *, event: ConsumedEvent) -> bool:
        """The roles a new merchant starts with; once, however often the event arrives."""
        async with audit.transaction(self._pool, audit.actor_of_event(event)) as conn:
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
