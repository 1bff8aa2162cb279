"""OutboxRelay: publishes a schema's outbox to Kafka. A `ServiceComponents.background` loop.

Delivery is at least once: rows are marked sent only after Kafka acknowledged them
(acks=all), so a crash in between publishes them again, and consumers skip the duplicates
by event id. Several processes may relay one schema at once (lanes: see outbox.py, and
mongo_outbox.py for MongoDB's leases).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar

from loyalnest.platform.config import EventSettings
from loyalnest.platform.events.clients import Backoff, OutgoingRecord, new_publisher
from loyalnest.platform.events.metrics import (
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_PENDING,
    OUTBOX_PUBLISH_FAILURES,
    OUTBOX_PUBLISHED,
)
from loyalnest.platform.events.outbox import Backlog, PendingRow
from loyalnest.platform.events.pseudonyms import Pseudonymizer
from loyalnest.platform.observability import get_logger

log = get_logger(__name__)

# Backlog metrics and purging run at most this often, not on every poll.
HOUSEKEEPING_INTERVAL_SECONDS = 1.0
PURGE_INTERVAL_SECONDS = 300.0


# What a source marks its events sent by: PostgreSQL row ids, MongoDB event ids.
RowId = TypeVar("RowId")


class ClaimLike(Protocol[RowId]):
    @property
    def rows(self) -> Sequence[PendingRow[RowId]]: ...
    async def mark_sent(self, ids: Sequence[RowId]) -> None: ...


class OutboxSource(Protocol[RowId]):
    """Where pending events come from (PostgresOutbox, MongoOutbox; fakes in unit tests).

    A claim holds its lanes until it exits: no other relay publishes them meanwhile, and
    its rows are each lane's oldest pending events in commit order.
    """

    @property
    def name(self) -> str: ...
    def claim(
        self, limit: int, lanes: int
    ) -> contextlib.AbstractAsyncContextManager[ClaimLike[RowId]]: ...
    async def backlog(self) -> Backlog: ...
    async def purge_sent(self, older_than_seconds: float) -> int: ...


class Publisher(Protocol):
    async def publish(self, records: Sequence[OutgoingRecord]) -> list[Exception | None]: ...
    async def close(self) -> None: ...


class RelayBatchFailed(Exception):
    def __init__(self, failed: int, total: int, cause: Exception) -> None:
        super().__init__(f"{failed} of {total} events not published: {cause!r}")
        self.cause = cause


class OutboxRelay(Generic[RowId]):
    def __init__(
        self,
        source: OutboxSource[RowId],
        settings: EventSettings,
        *,
        client_id: str,
        publisher: Publisher | None = None,
        pseudonymizer: Pseudonymizer | None = None,
    ) -> None:
        """`pseudonymizer`: replaces Shopify customer ids with pseudonyms in what is
        published (the outbox rows keep them: the service's database is erasable)."""
        self._source = source
        self._pseudonymizer = pseudonymizer
        self._settings = settings
        self._publisher = publisher or new_publisher(settings, client_id)
        self._backoff = Backoff.from_settings(settings)
        self._next_housekeeping = 0.0
        self._next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS

    async def run(self) -> None:
        """Relays until cancelled; transient failures are retried with backoff forever."""
        try:
            while True:
                try:
                    published = await self._relay_batch_to_completion()
                except Exception as exc:
                    OUTBOX_PUBLISH_FAILURES.labels(self._source.name).inc()
                    delay = self._backoff.next_delay()
                    log.warning(
                        "outbox relay failed; retrying",
                        schema=self._source.name,
                        attempt=self._backoff.failures,
                        retry_in_seconds=round(delay, 2),
                        error=repr(exc),
                    )
                    await self._housekeeping()
                    await asyncio.sleep(delay)
                    continue
                if self._backoff.failures:
                    # Failures are logged one by one; say when they are over, too.
                    log.info(
                        "outbox relay recovered",
                        schema=self._source.name,
                        failed_attempts=self._backoff.failures,
                    )
                self._backoff.reset()
                await self._housekeeping()
                if not published:
                    await asyncio.sleep(self._settings.outbox_poll_interval_seconds)
                elif published < self._settings.outbox_batch_size:
                    await asyncio.sleep(self._settings.outbox_linger_seconds)
        finally:
            await self._publisher.close()
            if self._pseudonymizer is not None:
                await self._pseudonymizer.close()

    async def _relay_batch_to_completion(self) -> int:
        batch = asyncio.ensure_future(self.relay_batch())
        try:
            return await asyncio.shield(batch)
        except asyncio.CancelledError:
            # Shutting down: let the batch in flight finish so what Kafka acknowledged is
            # marked sent rather than published again. A healthy broker acknowledges in
            # milliseconds; a batch still waiting after the grace waits on a broker that is
            # away, and is rolled back (its rows stay pending).
            with contextlib.suppress(Exception):
                await asyncio.wait_for(batch, self._settings.events_shutdown_step_seconds)
            raise

    async def relay_batch(self) -> int:
        """Publishes one batch; returns how many events were published.

        Raises RelayBatchFailed after marking the acknowledged part of a batch sent.
        """
        settings = self._settings
        async with self._source.claim(
            settings.outbox_batch_size, settings.outbox_lanes_per_batch
        ) as claim:
            rows = claim.rows
            if not rows:
                return 0
            records = [row.record for row in rows]
            if self._pseudonymizer is not None:
                # Fails as a whole (the edge away): the rows stay pending, retried with backoff.
                records = await self._pseudonymizer.records(records)
            results = await self._publisher.publish(records)
            # Only acknowledged rows are marked; the others go again with the next batch. This
            # keeps each key's order because an idempotent producer writes a partition's
            # batches in order: none lands after an earlier one of its partition failed.
            sent = [row for row, error in zip(rows, results, strict=True) if error is None]
            await claim.mark_sent([row.id for row in sent])
        for topic, count in Counter(row.record.topic for row in sent).items():
            OUTBOX_PUBLISHED.labels(self._source.name, topic).inc(count)
        errors = [error for error in results if error is not None]
        if errors:
            raise RelayBatchFailed(len(errors), len(rows), errors[0])
        return len(rows)

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if now < self._next_housekeeping:
            return
        self._next_housekeeping = now + HOUSEKEEPING_INTERVAL_SECONDS
        try:
            await report_backlog(self._source)
            if now >= self._next_purge:
                self._next_purge = now + PURGE_INTERVAL_SECONDS
                purged = await self._source.purge_sent(self._settings.outbox_retention_seconds)
                if purged:
                    log.info("outbox purged", schema=self._source.name, rows=purged)
        except Exception as exc:  # the database is away: the relay loop reports it too
            log.debug("outbox housekeeping failed", error=repr(exc))


async def report_backlog(source: OutboxSource[Any]) -> None:
    """Sets the outbox's backlog gauges (pending rows, the oldest one's age)."""
    backlog = await source.backlog()
    OUTBOX_BACKLOG.labels(source.name).set(backlog.pending)
    OUTBOX_OLDEST_PENDING.labels(source.name).set(backlog.oldest_age_seconds)


async def report_backlog_forever(source: OutboxSource[Any]) -> None:
    """The backlog gauges of an outbox this process does not relay (`loyalnest relay` does, in
    a process of its own): the outbox alert then follows the rows, whether a relay runs or
    not. A background loop; the relay's own housekeeping reports them too."""
    while True:
        try:
            await report_backlog(source)
        except Exception as exc:  # the database is away: the readiness check says so
            log.debug("outbox backlog not read", schema=source.name, error=repr(exc))
        await asyncio.sleep(HOUSEKEEPING_INTERVAL_SECONDS)
