"""Event Tracking's queue_tasks in PostgreSQL (schema `event_tracking`).

A task is queued with its `task.created` event in one statement's transaction; the shipper
claims due tasks with a lease (`FOR UPDATE SKIP LOCKED`, so workers share the queue), and
marks them completed or failed with `task.completed`, again in one transaction. Rows hold
pseudonymous distinct ids only (domain.Pseudonyms); export and erasure of a person find the
rows by the pseudonym of the id they are given.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from loyalnest.platform import idempotency
from loyalnest.platform.events import outbox
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.personal_data import CustomerExport, CustomerRef, erase_platform_rows
from loyalnest.platform.postgres import Database
from loyalnest.services.event_tracking import events
from loyalnest.services.event_tracking.domain import (
    NewTask,
    Pseudonyms,
    Task,
    TaskNotFound,
    TaskStatus,
)

_COLUMNS = (
    "task_id::text AS task_id, merchant_id, event_type, source, subject, status,"
    " payload AS properties, occurred_at, attempts, last_error, created_at, completed_at"
)
# The same, qualified, for a statement joining queue_tasks (q) with itself.
_Q_COLUMNS = (
    "q.task_id::text AS task_id, q.merchant_id, q.event_type, q.source, q.subject, q.status,"
    " q.payload AS properties, q.occurred_at, q.attempts, q.last_error, q.created_at,"
    " q.completed_at"
)
_INSERT = (
    "INSERT INTO queue_tasks (task_id, merchant_id, event_type, source, subject, payload,"
    " occurred_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (merchant_id, task_id) DO NOTHING RETURNING 1"
)


def _task(row: dict[str, Any]) -> Task:
    return Task(**{**row, "status": TaskStatus(row["status"])})


class TaskStore:
    def __init__(self, database: Database, pseudonyms: Pseudonyms) -> None:
        self._pool = database.pool
        self.pseudonyms = pseudonyms

    # ---- queueing ------------------------------------------------------------------------

    @staticmethod
    async def queue_in(conn: AsyncConnection, task: NewTask) -> bool:
        """Queues `task` inside the caller's transaction, announcing it (task.created); False
        when it was queued before (a resend, a redelivered event)."""
        cursor = await conn.execute(
            _INSERT,
            (
                task.task_id,
                task.merchant_id,
                task.event_type,
                task.source.value,
                task.subject,
                Jsonb(task.properties),
                task.occurred_at,
            ),
            prepare=True,
        )
        if await cursor.fetchone() is None:
            return False
        await outbox.enqueue(conn, task.merchant_id, events.task_created(task))
        return True

    async def queue_all(self, tasks: Sequence[NewTask]) -> int:
        """Queues every task not queued before, all or none; returns how many were new."""
        async with self._pool.connection() as conn, conn.transaction():
            return sum([await self.queue_in(conn, task) for task in tasks])

    async def create(self, task: NewTask, key: IdempotencyKey) -> Task:
        """A task, once per idempotency key: a retry gets the first call's task."""

        async def insert(conn: AsyncConnection) -> tuple[Task, str]:
            await self.queue_in(conn, task)
            return await self._get(conn, task.merchant_id, task.task_id), task.task_id

        return await idempotency.write_once(
            self._pool,
            task.merchant_id,
            key,
            write=insert,
            replay=lambda conn, task_id: self._get(conn, task.merchant_id, task_id),
        )

    # ---- reading -------------------------------------------------------------------------

    @staticmethod
    async def _get(conn: AsyncConnection, merchant_id: str, task_id: str) -> Task:
        # Always by merchant and id: another merchant's task is NOT_FOUND, like a missing one.
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(
            f"SELECT {_COLUMNS} FROM queue_tasks WHERE merchant_id = %s AND task_id = %s",
            (merchant_id, task_id),
            prepare=True,
        )
        row = await cursor.fetchone()
        if row is None:
            raise TaskNotFound(task_id)
        return _task(row)

    async def get(self, merchant_id: str, task_id: str) -> Task:
        async with self._pool.connection() as conn:
            return await self._get(conn, merchant_id, task_id)

    # ---- shipping ------------------------------------------------------------------------

    async def claim_due(self, limit: int, lease_seconds: float) -> list[Task]:
        """Up to `limit` due tasks, leased for `lease_seconds`: no other shipper takes them
        meanwhile, and a shipper that dies leaves them to be taken again after the lease."""
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                "UPDATE queue_tasks q SET next_attempt_at = now() + make_interval(secs => %s)"
                " FROM (SELECT merchant_id, task_id FROM queue_tasks"
                "       WHERE status = 'pending' AND next_attempt_at <= now()"
                "       ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED) due"
                " WHERE q.merchant_id = due.merchant_id AND q.task_id = due.task_id"
                f" RETURNING {_Q_COLUMNS}",
                (lease_seconds, limit),
            )
            return [_task(row) for row in await cursor.fetchall()]

    async def complete(self, tasks: Sequence[Task]) -> None:
        """PostHog took `tasks`: completed, each announced (task.completed)."""
        async with self._pool.connection() as conn, conn.transaction():
            for task in _in_lock_order(tasks):
                cursor = await conn.execute(
                    "UPDATE queue_tasks SET status = 'completed', completed_at = now(),"
                    " attempts = attempts + 1, last_error = NULL"
                    " WHERE merchant_id = %s AND task_id = %s AND status = 'pending'"
                    " RETURNING 1",
                    (task.merchant_id, task.task_id),
                    prepare=True,
                )
                if await cursor.fetchone() is not None:  # not erased meanwhile
                    await outbox.enqueue(conn, task.merchant_id, events.task_completed(task))

    async def attempt_failed(
        self,
        tasks: Sequence[Task],
        error: str,
        *,
        retry_in_seconds: float,
        max_attempts: int,
        final: bool = False,
    ) -> int:
        """An attempt at `tasks` failed: each is retried after `retry_in_seconds`, or failed
        for good (announced) once it has had `max_attempts`, or at once when `final`.
        Returns how many failed for good."""
        failed = 0
        async with self._pool.connection() as conn, conn.transaction():
            for task in _in_lock_order(tasks):
                cursor = await conn.execute(
                    "UPDATE queue_tasks SET attempts = attempts + 1, last_error = %s,"
                    " next_attempt_at = now() + make_interval(secs => %s),"
                    " status = CASE WHEN %s OR attempts + 1 >= %s THEN 'failed' ELSE status END,"
                    " completed_at = CASE WHEN %s OR attempts + 1 >= %s THEN now() END"
                    " WHERE merchant_id = %s AND task_id = %s AND status = 'pending'"
                    " RETURNING status",
                    (
                        error,
                        retry_in_seconds,
                        final,
                        max_attempts,
                        final,
                        max_attempts,
                        task.merchant_id,
                        task.task_id,
                    ),
                    prepare=True,
                )
                row = await cursor.fetchone()
                if row is not None and row[0] == TaskStatus.FAILED:
                    failed += 1
                    await outbox.enqueue(
                        conn, task.merchant_id, events.task_completed(task, error=error)
                    )
        return failed

    async def pending_count(self) -> int:
        async with self._pool.connection() as conn:
            cursor = await conn.execute("SELECT count(*) FROM queue_tasks WHERE status = 'pending'")
            row = await cursor.fetchone()
            return int(row[0]) if row else 0

    # ---- personal data (the platform's contract, loyalnest.platform.personal_data) --------

    def _subjects(self, merchant_id: str, customer: CustomerRef) -> list[str]:
        """The pseudonyms the customer's events carry: client and Points events name the
        Shopify customer id, Users' and Roles' events the customer's user ids."""
        ids = {customer.shopify_customer_id, *customer.user_ids} - {""}
        return sorted(self.pseudonyms.of(merchant_id, person) for person in ids)

    async def export_customer(self, merchant_id: str, customer: CustomerRef) -> CustomerExport:
        """Every event kept about the customer (by pseudonym), and the pseudonyms: PostHog
        knows the person by them (erasing the events there is deleting those persons)."""
        subjects = self._subjects(merchant_id, customer)
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"SELECT {_COLUMNS} FROM queue_tasks WHERE merchant_id = %s"
                " AND subject = ANY(%s) ORDER BY occurred_at, task_id",
                (merchant_id, subjects),
            )
            rows = await cursor.fetchall()
        events = [
            {
                "task_id": row["task_id"],
                "event_type": row["event_type"],
                "status": row["status"],
                "properties": row["properties"],
                "occurred_at": _iso(row["occurred_at"]),
            }
            for row in rows
        ]
        return CustomerExport(data={"posthog_distinct_ids": subjects, "events": events})

    async def erase_customer(self, merchant_id: str, customer: CustomerRef) -> int:
        """Deletes every event about the customer, shipped or not; idempotent."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM queue_tasks WHERE (merchant_id, task_id) IN"
                " (SELECT merchant_id, task_id FROM queue_tasks"
                "  WHERE merchant_id = %s AND subject = ANY(%s)"
                f"  {_LOCK_ORDER})",
                (merchant_id, self._subjects(merchant_id, customer)),
            )
            return cursor.rowcount

    async def erase_merchant(self, merchant_id: str) -> int:
        """Everything of `merchant_id`: its events and the platform's rows."""
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "DELETE FROM queue_tasks WHERE (merchant_id, task_id) IN"
                " (SELECT merchant_id, task_id FROM queue_tasks WHERE merchant_id = %s"
                f"  {_LOCK_ORDER})",
                (merchant_id,),
            )
            return cursor.rowcount + await erase_platform_rows(conn, merchant_id)


# Every statement that touches several tasks locks them in this one order, so the shipper's
# completions and an erasure running at the same time wait for each other, not deadlock.
_LOCK_ORDER = "ORDER BY merchant_id, task_id FOR UPDATE"


def _in_lock_order(tasks: Sequence[Task]) -> list[Task]:
    return sorted(tasks, key=lambda task: (task.merchant_id, task.task_id))


def _iso(value: datetime) -> str:
    return value.isoformat()
