"""Event Tracking's queue_tasks in PostgreSQL (schema `event_tracking`).

A task is queued with its `task.created` event in one statement's transaction; the shipper
claims due tasks with a lease (`FOR UPDATE SKIP LOCKED`, so workers share the queue), and
marks them completed or failed with `task.completed`, again in one transaction. Rows hold
pseudonymous distinct ids only (domain.Pseudonyms); export and erasure of a person find the
rows by the pseudonym of the id they are given.

`posthog_persons` remembers every pseudonym an event was sent to PostHog under (past the
queue's retention): erasing a customer or a merchant marks theirs in the erasing
transaction, and the deleter (person_deletion.py) deletes those persons, with their events,
at PostHog. The erasure succeeds only once PostHog has: until then it raises UNAVAILABLE
(AdminCore's step stays pending with the reason and is retried), then it drops the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import Counter
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from loyalnest.platform import idempotency
from loyalnest.platform.errors import FailedPrecondition, Unavailable
from loyalnest.platform.events import outbox
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.observability import get_logger
from loyalnest.platform.personal_data import CustomerExport, CustomerRef, erase_platform_rows
from loyalnest.platform.postgres import Database
from loyalnest.services.event_tracking import events
from loyalnest.services.event_tracking.domain import (
    Counts,
    NewTask,
    Pseudonyms,
    Queued,
    Task,
    TaskNotFound,
    TaskStatus,
)

log = get_logger(__name__)

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
# Marks persons for deletion at PostHog (once: a second erasure changes nothing), not before
# %(after)s (a batch still leased may be on its way there), in the one lock order.
_MARK_FOR_ERASURE = (
    "UPDATE posthog_persons SET erase_requested_at = now(),"
    " next_attempt_at = greatest(now(), %(after)s::timestamptz)"
    " WHERE (merchant_id, distinct_id) IN"
    " (SELECT merchant_id, distinct_id FROM posthog_persons"
    "  WHERE merchant_id = %(merchant)s AND erase_requested_at IS NULL"
    "  AND (%(subjects)s::text[] IS NULL OR distinct_id = ANY(%(subjects)s::text[]))"
    "  ORDER BY merchant_id, distinct_id FOR UPDATE)"
)
# Queues a task unless its person was erased (a tombstone in erased_persons) or it occurred
# before its merchant's erasure (erased_merchants, shop/redact); answers whether it was new
# and what was erased ('merchant', 'person' or NULL), in one round trip.
_INSERT = (
    "WITH erased AS (SELECT 'person' AS what FROM erased_persons WHERE merchant_id = %(m)s"
    "  AND subject = %(subject)s"
    "  UNION ALL SELECT 'merchant' FROM erased_merchants WHERE merchant_id = %(m)s"
    "  AND %(at)s::timestamptz < erased_at),"
    " queued AS (INSERT INTO queue_tasks (task_id, merchant_id, event_type, source, subject,"
    "  payload, occurred_at) SELECT %(id)s::uuid, %(m)s, %(type)s, %(source)s, %(subject)s,"
    "  %(payload)s::jsonb, %(at)s::timestamptz WHERE NOT EXISTS (SELECT 1 FROM erased)"
    "  ON CONFLICT (merchant_id, task_id) DO NOTHING RETURNING 1)"
    " SELECT EXISTS (SELECT 1 FROM queued), (SELECT min(what) FROM erased)"
)
# Not a task of an erased person, nor one of an erased merchant from before its erasure (one
# queued while the erasure committed is never shipped).
_NOT_ERASED = (
    "(NOT EXISTS (SELECT 1 FROM erased_persons e WHERE e.merchant_id = queue_tasks.merchant_id"
    " AND e.subject = queue_tasks.subject)"
    " AND NOT EXISTS (SELECT 1 FROM erased_merchants em"
    " WHERE em.merchant_id = queue_tasks.merchant_id AND queue_tasks.occurred_at < em.erased_at))"
)
ERASED_PERSON_EVENTS = Counter(
    "loyalnest_event_tracking_erased_person_events_total",
    "Events about an erased person dropped instead of shipped, by source.",
    ["source"],
)
ERASED_MERCHANT_EVENTS = Counter(
    "loyalnest_event_tracking_erased_merchant_events_total",
    "Events of an erased merchant (shop/redact) from before its erasure, dropped instead of"
    " shipped, by source.",
    ["source"],
)


def _task(row: dict[str, Any]) -> Task:
    return Task(**{**row, "status": TaskStatus(row["status"])})


class TaskStore:
    def __init__(self, database: Database, pseudonyms: Pseudonyms) -> None:
        self._pool = database.pool
        self.pseudonyms = pseudonyms

    # ---- queueing ------------------------------------------------------------------------

    @staticmethod
    async def queue_in(conn: AsyncConnection, task: NewTask) -> Queued:
        """Queues `task` inside the caller's transaction, announcing it (task.created):
        NEW; DUPLICATE when it was queued before (a resend, a redelivered event); ERASED,
        and dropped (counted, logged without the person), when its person was erased."""
        cursor = await conn.execute(
            _INSERT,
            {
                "id": task.task_id,
                "m": task.merchant_id,
                "type": task.event_type,
                "source": task.source.value,
                "subject": task.subject,
                "payload": Jsonb(task.properties),
                "at": task.occurred_at,
            },
            prepare=True,
        )
        row = await cursor.fetchone()
        assert row is not None  # a SELECT of two EXISTS always returns a row
        queued, erased = row
        if erased:
            counter = ERASED_MERCHANT_EVENTS if erased == "merchant" else ERASED_PERSON_EVENTS
            counter.labels(task.source.value).inc()
            log.info(
                "event about an erased person or merchant dropped",
                erased=erased,
                merchant_id=task.merchant_id,
                event_type=task.event_type,
                source=task.source.value,
            )
            return Queued.ERASED
        if not queued:
            return Queued.DUPLICATE
        await outbox.enqueue(conn, task.merchant_id, events.task_created(task))
        return Queued.NEW

    async def queue_all(self, tasks: Sequence[NewTask]) -> Counts:
        """Queues every task not queued before, all or none; how many were new, duplicates
        and about erased persons (dropped)."""
        async with self._pool.connection() as conn, conn.transaction():
            outcomes = [await self.queue_in(conn, task) for task in tasks]
        return Counts(*(outcomes.count(outcome) for outcome in Queued))

    async def create(self, task: NewTask, key: IdempotencyKey) -> Task:
        """A task, once per idempotency key: a retry gets the first call's task."""

        async def insert(conn: AsyncConnection) -> tuple[Task, str]:
            if await self.queue_in(conn, task) is Queued.ERASED:
                raise FailedPrecondition(
                    "the person this task is about was erased (GDPR): nothing is sent about them",
                    violation_type="PERSON_ERASED",
                    subject="distinct_id",
                )
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
        # The batch's persons are registered in the claim's own statement: from now on PostHog
        # may know them (even a send that seems to fail may have landed), and an erasure
        # must be able to name them. An erased person's row, if still there, is armed again.
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                "WITH claimed AS ("
                " UPDATE queue_tasks q SET next_attempt_at = now() + make_interval(secs => %s)"
                " FROM (SELECT merchant_id, task_id FROM queue_tasks"
                "       WHERE status = 'pending' AND next_attempt_at <= now()"
                f"      AND {_NOT_ERASED}"
                "       ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED) due"
                " WHERE q.merchant_id = due.merchant_id AND q.task_id = due.task_id"
                f" RETURNING {_Q_COLUMNS}),"
                " persons AS (INSERT INTO posthog_persons (merchant_id, distinct_id)"
                "  SELECT DISTINCT merchant_id, subject FROM claimed ORDER BY 1, 2"
                "  ON CONFLICT (merchant_id, distinct_id) DO UPDATE SET deleted_at = NULL"
                "  WHERE posthog_persons.deleted_at IS NOT NULL)"
                " SELECT * FROM claimed",
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

    async def purge_finished(self, older_than_seconds: float, limit: int = 5_000) -> int:
        """Deletes up to `limit` completed or failed tasks finished more than
        `older_than_seconds` ago; returns how many. Rows another transaction holds (an
        erasure, a completion) are skipped, not waited for: the next round takes them."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM queue_tasks WHERE (merchant_id, task_id) IN"
                " (SELECT merchant_id, task_id FROM queue_tasks"
                "  WHERE status <> 'pending'"
                "  AND completed_at < now() - make_interval(secs => %s)"
                "  LIMIT %s FOR UPDATE SKIP LOCKED)",
                (older_than_seconds, limit),
            )
            purged = cursor.rowcount
            # Pending tasks of erased persons: queued while their erasure committed (the
            # shippers never claim them).
            cursor = await conn.execute(
                "DELETE FROM queue_tasks WHERE (merchant_id, task_id) IN"
                " (SELECT merchant_id, task_id FROM queue_tasks"
                f"  WHERE status = 'pending' AND NOT {_NOT_ERASED}"
                "  LIMIT %s FOR UPDATE SKIP LOCKED)",
                (limit,),
            )
            return purged + cursor.rowcount

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
        """Deletes every event about the customer, shipped or not, and marks their persons for
        deletion at PostHog in the same transaction; idempotent."""
        subjects = self._subjects(merchant_id, customer)
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "DELETE FROM queue_tasks WHERE (merchant_id, task_id) IN"
                " (SELECT merchant_id, task_id FROM queue_tasks"
                "  WHERE merchant_id = %s AND subject = ANY(%s)"
                f"  {_LOCK_ORDER}) RETURNING status, next_attempt_at",
                (merchant_id, subjects),
            )
            deleted = await cursor.fetchall()
            # The tombstones: whatever arrives about them from now on is dropped.
            await conn.execute(
                "INSERT INTO erased_persons (merchant_id, subject)"
                " SELECT %s, subject FROM unnest(%s::text[]) AS subject ORDER BY subject"
                " ON CONFLICT DO NOTHING",
                (merchant_id, subjects),
            )
            await _mark_for_erasure(conn, merchant_id, subjects, deleted)
            forgotten, waiting = await _settle_erasure(conn, merchant_id, subjects)
        _raise_while_posthog_has(waiting)
        return len(deleted) + forgotten

    async def erase_merchant(self, merchant_id: str) -> int:
        """Everything of `merchant_id`: its events and the platform's rows, and all its persons
        marked for deletion at PostHog (their rows go once PostHog has deleted them)."""
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "DELETE FROM queue_tasks WHERE (merchant_id, task_id) IN"
                " (SELECT merchant_id, task_id FROM queue_tasks WHERE merchant_id = %s"
                f"  {_LOCK_ORDER}) RETURNING status, next_attempt_at",
                (merchant_id,),
            )
            deleted = await cursor.fetchall()
            await conn.execute("DELETE FROM erased_persons WHERE merchant_id = %s", (merchant_id,))
            # The merchant's tombstone: its events from before now, arriving later, are dropped.
            await conn.execute(
                "INSERT INTO erased_merchants (merchant_id) VALUES (%s)"
                " ON CONFLICT (merchant_id) DO UPDATE SET erased_at = now()",
                (merchant_id,),
            )
            await _mark_for_erasure(conn, merchant_id, None, deleted)
            forgotten, waiting = await _settle_erasure(conn, merchant_id, None)
            platform_rows = await erase_platform_rows(conn, merchant_id)
        _raise_while_posthog_has(waiting)
        return len(deleted) + forgotten + platform_rows

    # ---- PostHog persons to delete (person_deletion.PersonDeleter) -------------------------

    async def claim_person_deletions(
        self, limit: int, lease_seconds: float
    ) -> list[PersonDeletion]:
        """Up to `limit` persons due for deletion at PostHog, leased as claim_due's tasks."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "UPDATE posthog_persons p"
                " SET next_attempt_at = now() + make_interval(secs => %s)"
                " FROM (SELECT merchant_id, distinct_id FROM posthog_persons"
                "       WHERE erase_requested_at IS NOT NULL AND deleted_at IS NULL"
                "       AND next_attempt_at <= now()"
                "       ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED) due"
                " WHERE p.merchant_id = due.merchant_id AND p.distinct_id = due.distinct_id"
                " RETURNING p.merchant_id, p.distinct_id, p.attempts",
                (lease_seconds, limit),
            )
            return [PersonDeletion(*row) for row in await cursor.fetchall()]

    async def release_person_deletions(self, persons: Sequence[PersonDeletion]) -> None:
        """Claimed persons this process will not get to: due again at once."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE posthog_persons SET next_attempt_at = now()"
                " WHERE (merchant_id, distinct_id) IN"
                " (SELECT * FROM unnest(%s::text[], %s::text[]))"
                " AND erase_requested_at IS NOT NULL",
                ([p.merchant_id for p in persons], [p.distinct_id for p in persons]),
            )

    async def person_deleted(self, person: PersonDeletion) -> None:
        """PostHog no longer has the person: the erasure, asked again, drops the row."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE posthog_persons SET deleted_at = now(), last_error = NULL"
                " WHERE merchant_id = %s AND distinct_id = %s"
                " AND erase_requested_at IS NOT NULL",
                (person.merchant_id, person.distinct_id),
            )

    async def person_deletion_failed(
        self, person: PersonDeletion, error: str, *, retry_in_seconds: float
    ) -> None:
        """Tried again after `retry_in_seconds`: an erasure is never given up on."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE posthog_persons SET attempts = attempts + 1, last_error = %s,"
                " next_attempt_at = now() + make_interval(secs => %s)"
                " WHERE merchant_id = %s AND distinct_id = %s",
                (error, retry_in_seconds, person.merchant_id, person.distinct_id),
            )

    async def persons_to_delete(self, merchant_id: str | None = None) -> list[PersonDeletion]:
        """The persons still to be deleted at PostHog (all merchants' when None)."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT merchant_id, distinct_id, attempts, last_error FROM posthog_persons"
                " WHERE erase_requested_at IS NOT NULL AND deleted_at IS NULL"
                " AND (%s::text IS NULL OR merchant_id = %s)"
                " ORDER BY merchant_id, distinct_id",
                (merchant_id, merchant_id),
            )
            return [PersonDeletion(*row) for row in await cursor.fetchall()]


@dataclass(frozen=True)
class PersonDeletion:
    """A person (a pseudonym) PostHog is to forget."""

    merchant_id: str
    distinct_id: str
    attempts: int
    last_error: str | None = None


async def _mark_for_erasure(
    conn: AsyncConnection,
    merchant_id: str,
    subjects: list[str] | None,
    deleted_tasks: Sequence[tuple[Any, ...]],
) -> int:
    """Marks the persons (all of the merchant's when `subjects` is None) for deletion at
    PostHog. A deleted task still pending with a lease in the future may be in a batch on its
    way to PostHog right now (claims are leased longer than a send can take): deleting the
    person before it lands would leave that event there, so the deletion waits for the lease."""
    in_flight = [at for status, at in deleted_tasks if status == TaskStatus.PENDING]
    cursor = await conn.execute(
        _MARK_FOR_ERASURE,
        {"merchant": merchant_id, "subjects": subjects, "after": max(in_flight, default=None)},
    )
    return cursor.rowcount


async def _settle_erasure(
    conn: AsyncConnection, merchant_id: str, subjects: list[str] | None
) -> tuple[int, list[tuple[str, str | None]]]:
    """The erased persons PostHog has not deleted yet (with their attempts' last errors);
    once there are none, drops the rows of those it has and returns how many. All at once:
    the call that succeeds reports every person, not the last few."""
    scope = "merchant_id = %(m)s AND (%(s)s::text[] IS NULL OR distinct_id = ANY(%(s)s::text[]))"
    params = {"m": merchant_id, "s": subjects}
    cursor = await conn.execute(
        f"SELECT distinct_id, last_error FROM posthog_persons WHERE {scope}"
        " AND erase_requested_at IS NOT NULL AND deleted_at IS NULL ORDER BY distinct_id",
        params,
    )
    waiting = [(row[0], row[1]) for row in await cursor.fetchall()]
    if waiting:
        return 0, waiting
    cursor = await conn.execute(
        f"DELETE FROM posthog_persons WHERE {scope} AND deleted_at IS NOT NULL", params
    )
    return cursor.rowcount, []


def _raise_while_posthog_has(waiting: Sequence[tuple[str, str | None]]) -> None:
    """An erasure is not done while PostHog still has one of the persons: UNAVAILABLE, with
    the reason, so AdminCore keeps the step pending and asks again (it is idempotent)."""
    if not waiting:
        return
    errors = sorted({error for _, error in waiting if error})
    reason = f"; last error: {errors[0]}" if errors else ""
    raise Unavailable(
        f"{len(waiting)} person(s) still to be deleted at PostHog (queued){reason}",
        retry_after_seconds=5.0,
    )


# Every statement that touches several tasks locks them in this one order, so the shipper's
# completions and an erasure running at the same time wait for each other, not deadlock.
_LOCK_ORDER = "ORDER BY merchant_id, task_id FOR UPDATE"


def _in_lock_order(tasks: Sequence[Task]) -> list[Task]:
    return sorted(tasks, key=lambda task: (task.merchant_id, task.task_id))


def _iso(value: datetime) -> str:
    return value.isoformat()
