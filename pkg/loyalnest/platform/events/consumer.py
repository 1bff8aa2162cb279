"""ConsumerRunner: a consumer group member applying events. A `ServiceComponents.background` loop.

Per record: decode the envelope, continue the producer's trace, run the handler for its
event type. Offsets are committed only after the handlers' effects have committed, so a
crash redelivers; handlers record each event id with its effect (inbox.py), so redelivery
is harmless. A failing record is retried with backoff; after `consumer_max_attempts` it goes
to `<topic>.dlq` with the error in its headers and the partition moves on. Failures of the
database or broker are not the record's fault: they are retried without limit, since
dead-lettering during an outage would empty the topic into the dead-letter queue.

Records of one partition are applied one after another, in order; partitions in parallel,
except that a small poll's partitions whose events all go to one batch handler are applied
as one run (each partition's events still in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

import structlog
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from loyalnest.platform.config import EventSettings
from loyalnest.platform.events.clients import (
    Backoff,
    CommitRejected,
    GroupMember,
    KafkaThread,
    OutgoingRecord,
    Partition,
    PartitionRecords,
    Publisher,
    new_group_member,
    new_publisher,
    quiet_kafka_logging,
)
from loyalnest.platform.events.envelope import (
    EVENT_TYPE_HEADER,
    ConsumedEvent,
    InvalidEvent,
    RecordLike,
    decode,
    record_headers,
)
from loyalnest.platform.events.inbox import BatchHandler, Handler
from loyalnest.platform.events.metrics import (
    CONSUMER_LAG,
    EVENT_DELIVERY_SECONDS,
    EVENTS_FAILED,
    EVENTS_PROCESSED,
)
from loyalnest.platform.events.pseudonyms import Resolver
from loyalnest.platform.events.topics import DEAD_LETTER_SUFFIX, spec_for_type
from loyalnest.platform.observability import get_logger
from loyalnest.platform.outages import unavailable_errors

log = get_logger(__name__)
tracer = trace.get_tracer(__name__)

Outcome = Literal["applied", "duplicate", "ignored", "dead_lettered"]

# Dead-letter headers (the original record's headers are kept as well).
DLQ_REASON = "dlq.reason"
DLQ_ERROR_TYPE = "dlq.error_type"
DLQ_ATTEMPTS = "dlq.attempts"
DLQ_GROUP = "dlq.consumer_group"
DLQ_SOURCE = "dlq.source"  # topic/partition/offset of the original record
DLQ_FAILED_AT = "dlq.failed_at"
_MAX_REASON_LENGTH = 2000
POLL_TIMEOUT_MS = 250
# The lag gauges are scraped every 15-30 s: refreshing them once a second, not after every
# poll, saves a round trip through the Kafka thread per poll.
LAG_REFRESH_SECONDS = 1.0


class PermanentEventError(Exception):
    """A handler's verdict that no retry can apply this event: dead-letter it at once."""


class DeadLetterSink(Protocol):
    async def send(self, record: RecordLike, error: BaseException, attempts: int) -> None: ...


def dead_letter_record(
    record: RecordLike, error: BaseException, attempts: int, group: str
) -> OutgoingRecord:
    reason = f"{type(error).__name__}: {error}"[:_MAX_REASON_LENGTH]
    headers = [(name, value or b"") for name, value in record.headers or ()]
    headers += [
        (DLQ_REASON, reason.encode()),
        (DLQ_ERROR_TYPE, type(error).__qualname__.encode()),
        (DLQ_ATTEMPTS, str(attempts).encode()),
        (DLQ_GROUP, group.encode()),
        (DLQ_SOURCE, f"{record.topic}/{record.partition}/{record.offset}".encode()),
        (DLQ_FAILED_AT, datetime.now(UTC).isoformat().encode()),
    ]
    return OutgoingRecord(
        record.topic + DEAD_LETTER_SUFFIX, record.key, record.value or b"", headers
    )


class KafkaDeadLetters:
    """Publishes to `<topic>.dlq`, retrying until the broker takes it: a dead letter is
    the record's last copy once its offset is committed."""

    def __init__(self, publisher: Publisher, group: str, backoff: Backoff) -> None:
        self._publisher = publisher
        self._group = group
        self._backoff = backoff

    async def send(self, record: RecordLike, error: BaseException, attempts: int) -> None:
        dead = dead_letter_record(record, error, attempts, self._group)
        while True:
            (failure,) = await self._publisher.publish([dead])
            if failure is None:
                self._backoff.reset()
                return
            delay = self._backoff.next_delay()
            log.warning(
                "dead letter not published; retrying",
                topic=dead.topic,
                retry_in_seconds=round(delay, 2),
                error=repr(failure),
            )
            await asyncio.sleep(delay)


@dataclass(frozen=True)
class _Skipped:
    """A record not for this consumer: an event type it does not handle."""

    event_type: str


@dataclass(frozen=True)
class _Invalid:
    event_type: str
    error: InvalidEvent


class EventProcessor:
    """Applies records: decode, trace, handle with retries, dead-letter. No Kafka here."""

    def __init__(
        self,
        group: str,
        handlers: Mapping[str, Handler],
        dead_letters: DeadLetterSink,
        settings: EventSettings,
        resolver: Resolver | None = None,
    ) -> None:
        """`resolver`: resolves customer pseudonyms in events before their handlers see them
        (dead letters keep the record as it came, pseudonyms and all)."""
        for event_type in handlers:
            spec_for_type(event_type)  # fail at start-up on a typo, not at the first event
        self._group = group
        self._handlers = dict(handlers)
        self._dead_letters = dead_letters
        self._settings = settings
        self._resolver = resolver

    def _count(self, topic: str, event_type: str, outcome: Outcome) -> Outcome:
        EVENTS_PROCESSED.labels(self._group, topic, event_type, outcome).inc()
        return outcome

    async def _dead_letter(
        self, record: RecordLike, event_type: str, error: BaseException, attempts: int
    ) -> Outcome:
        log.error(
            "event dead-lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            event_type=event_type,
            attempts=attempts,
            error=repr(error),
        )
        await self._dead_letters.send(record, error, attempts)
        return self._count(record.topic, event_type, "dead_lettered")

    def _classify(self, record: RecordLike) -> ConsumedEvent | _Skipped | _Invalid:
        declared = record_headers(record).get(EVENT_TYPE_HEADER)
        if declared is not None and declared not in self._handlers:
            # Topics carry several event types; skip others without decoding them.
            return _Skipped(declared)
        try:
            event = decode(record, self._group)
        except InvalidEvent as exc:
            return _Invalid(declared or "unknown", exc)
        if event.event_type not in self._handlers:
            return _Skipped(event.event_type)
        return event

    async def classify(
        self, records: Sequence[RecordLike]
    ) -> list[ConsumedEvent | _Skipped | _Invalid]:
        """Decodes `records`, their pseudonyms resolved (one call for all); raises when they
        cannot be resolved now (the owner away): the caller tries the records again."""
        items = [self._classify(record) for record in records]
        if self._resolver is not None:
            await self._resolver.events(item for item in items if isinstance(item, ConsumedEvent))
        return items

    async def process(self, record: RecordLike) -> Outcome:
        """Applies one record, with retries; dead-letters it if it cannot be applied."""
        (item,) = await self.classify([record])
        return await self._process(record, item)

    async def process_many(
        self,
        records: Sequence[RecordLike],
        done: Callable[[RecordLike], None],
        stopping: Callable[[], bool] = lambda: False,
        classified: Sequence[ConsumedEvent | _Skipped | _Invalid] | None = None,
    ) -> None:
        """Applies one partition's records in order, calling `done` for each in turn.

        Consecutive events whose handlers share a batch key (inbox.BatchHandler: e.g.
        transactional on one database) are applied at once (up to
        `consumer_batch_max_events`); if that fails, one at a time. Returns early, between
        records, once `stopping()`.
        """
        run: list[tuple[RecordLike, ConsumedEvent, BatchHandler]] = []
        limit = self._settings.consumer_batch_max_events
        items = classified if classified is not None else await self.classify(records)
        for record, item in zip(records, items, strict=True):
            if stopping():
                return  # the records of an unapplied run are not done: redelivered
            handler = self._handlers[item.event_type] if isinstance(item, ConsumedEvent) else None
            if isinstance(item, ConsumedEvent) and isinstance(handler, BatchHandler):
                if run and (run[0][2].batch_key != handler.batch_key or len(run) >= limit):
                    await self._apply_run(run, done)
                    run = []
                run.append((record, item, handler))
                continue
            if run:
                await self._apply_run(run, done)
                run = []
            await self._process(record, item)
            done(record)
        if run:
            await self._apply_run(run, done)

    def run_key(self, items: Sequence[ConsumedEvent | _Skipped | _Invalid]) -> Hashable | None:
        """The batch key of `items` when they may all go in one run (each an event whose
        handler is a BatchHandler, all of that key); None otherwise."""
        keys = set()
        for item in items:
            if not isinstance(item, ConsumedEvent):
                return None
            handler = self._handlers[item.event_type]
            if not isinstance(handler, BatchHandler):
                return None
            keys.add(handler.batch_key)
        return keys.pop() if len(keys) == 1 else None

    @property
    def run_limit(self) -> int:
        return self._settings.consumer_batch_max_events

    async def apply_together(
        self,
        records: Sequence[RecordLike],
        items: Sequence[ConsumedEvent | _Skipped | _Invalid],
        done: Callable[[RecordLike], None],
    ) -> None:
        """Applies the items of several partitions that share a `run_key` as one run (each
        partition's in its order); one at a time in the same order if the run fails."""
        run = []
        for record, item in zip(records, items, strict=True):
            assert isinstance(item, ConsumedEvent)
            handler = self._handlers[item.event_type]
            assert isinstance(handler, BatchHandler)
            run.append((record, item, handler))
        await self._apply_run(run, done)

    async def _process(
        self, record: RecordLike, item: ConsumedEvent | _Skipped | _Invalid
    ) -> Outcome:
        if isinstance(item, _Skipped):
            return self._count(record.topic, item.event_type, "ignored")
        if isinstance(item, _Invalid):
            EVENTS_FAILED.labels(self._group, record.topic, "invalid").inc()
            return await self._dead_letter(record, item.event_type, item.error, 1)
        return await self._apply_one(record, item, self._handlers[item.event_type])

    async def _apply_run(
        self,
        run: Sequence[tuple[RecordLike, ConsumedEvent, BatchHandler]],
        done: Callable[[RecordLike], None],
    ) -> None:
        if len(run) > 1:
            try:
                results = await run[0][2].apply_many(
                    [(event, handler) for _, event, handler in run],
                    lambda event: self._scope(event),
                )
            except Exception as exc:
                # Each event of the run is applied or not (BatchHandler). One at a time, each
                # gets its own retries and, if it is the culprit, its own dead letter.
                log.info("batch failed; applying its events one by one", error=repr(exc))
            else:
                for (record, event, _), applied in zip(run, results, strict=True):
                    self._applied(event, applied)
                    done(record)
                return
        for record, event, handler in run:
            await self._apply_one(record, event, handler)
            done(record)

    def _applied(self, event: ConsumedEvent, applied: bool) -> Outcome:
        if not applied:
            return self._count(event.topic, event.event_type, "duplicate")
        delivery = (datetime.now(UTC) - event.occurred_at).total_seconds()
        EVENT_DELIVERY_SECONDS.labels(self._group, event.topic).observe(max(0.0, delivery))
        return self._count(event.topic, event.event_type, "applied")

    @contextlib.contextmanager
    def _scope(self, event: ConsumedEvent) -> Iterator[Span]:
        """The event's span, a child of the producer's, and its ids in every log line."""
        attributes: dict[str, AttributeValue] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": event.topic,
            "messaging.destination.partition.id": str(event.partition),
            "messaging.kafka.offset": event.offset,
            "messaging.consumer.group.name": self._group,
            "messaging.message.id": event.event_id,
            "loyalnest.event_type": event.event_type,
            "loyalnest.merchant_id": event.merchant_id,
        }
        with (
            structlog.contextvars.bound_contextvars(
                event_id=event.event_id, event_type=event.event_type
            ),
            tracer.start_as_current_span(
                f"process {event.event_type}",
                context=event.trace_parent(),
                kind=SpanKind.CONSUMER,
                attributes=attributes,
            ) as span,
        ):
            yield span

    async def _apply_one(
        self, record: RecordLike, event: ConsumedEvent, handler: Handler
    ) -> Outcome:
        with self._scope(event) as span:
            backoff = Backoff.from_settings(self._settings)
            attempts = 0
            while True:
                try:
                    applied = await handler(event)
                except PermanentEventError as exc:
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, str(exc)))
                    EVENTS_FAILED.labels(self._group, record.topic, "error").inc()
                    return await self._dead_letter(record, event.event_type, exc, attempts + 1)
                # Errors of the infrastructure, not of the event: retried until they pass.
                except unavailable_errors() as exc:
                    EVENTS_FAILED.labels(self._group, record.topic, "unavailable").inc()
                    delay = backoff.next_delay()
                    log.warning(
                        "event handler: dependency unavailable; retrying",
                        retry_in_seconds=round(delay, 2),
                        error=repr(exc),
                    )
                    await asyncio.sleep(delay)
                except Exception as exc:
                    attempts += 1
                    EVENTS_FAILED.labels(self._group, record.topic, "error").inc()
                    if attempts >= self._settings.consumer_max_attempts:
                        span.record_exception(exc)
                        span.set_status(Status(StatusCode.ERROR, str(exc)))
                        return await self._dead_letter(record, event.event_type, exc, attempts)
                    delay = backoff.next_delay()
                    log.warning(
                        "event handler failed; retrying",
                        attempt=attempts,
                        retry_in_seconds=round(delay, 2),
                        error=repr(exc),
                    )
                    await asyncio.sleep(delay)
                else:
                    return self._applied(event, applied)


class ConsumerRunner:
    """One member of consumer group `group`, applying `handlers` (event type -> handler).

    `run` is the background loop; it ends when cancelled (service shutdown) or after
    `stop()`, in both cases committing what was applied and leaving the group, so the
    partitions move to the other members at once instead of after the session timeout.
    The Kafka client is the one `settings.kafka_consumer` names (clients.GroupMember).
    """

    def __init__(
        self,
        settings: EventSettings,
        *,
        group: str,
        handlers: Mapping[str, Handler],
        client_id: str,
        resolver: Resolver | None = None,
    ) -> None:
        quiet_kafka_logging()
        self.group = group
        self.topics = sorted({spec_for_type(t).topic.name for t in handlers})
        self._settings = settings
        self._client_id = client_id
        self._thread = KafkaThread(f"kafka-consumer-{group}")
        self._publisher = new_publisher(settings, f"{client_id}-dlq")
        self._processor = EventProcessor(
            group,
            handlers,
            KafkaDeadLetters(self._publisher, group, Backoff.from_settings(settings)),
            settings,
            resolver,
        )
        self._resolver = resolver
        self._member: GroupMember | None = None
        self._stopping = asyncio.Event()
        # Next offset per partition: applied, not yet committed / last applied (for lag).
        self._uncommitted: dict[Partition, int] = {}
        self._positions: dict[Partition, int] = {}
        self._lag_labels: set[Partition] = set()
        self._next_commit = 0.0
        self._next_lag = 0.0

    def stop(self) -> None:
        """Asks `run` to finish the batch in hand, commit and return."""
        self._stopping.set()

    async def run(self) -> None:
        backoff = Backoff.from_settings(self._settings)
        try:
            member = await self._connect(backoff)
            while member is not None and not self._stopping.is_set():
                batch: PartitionRecords = {}
                try:
                    batch, reassigned = await self._thread.run(member.poll, POLL_TIMEOUT_MS)
                    if reassigned:
                        # Noted under the previous assignment: offsets in a log that may be
                        # gone, or of partitions that are another member's now. Committing
                        # them could move the group past records nobody applied.
                        self._uncommitted.clear()
                        self._positions.clear()
                    if batch:
                        await self._apply(batch)
                    now = time.monotonic()
                    if now >= self._next_commit:
                        # Offsets at most every interval, if one is set: each commit is a
                        # round trip through the Kafka thread to the broker. A crash before
                        # the commit redelivers what was applied since, which handlers skip
                        # as duplicates (the inbox).
                        self._next_commit = now + self._settings.consumer_commit_interval_seconds
                        await self._commit()
                    if now >= self._next_lag:
                        self._next_lag = now + LAG_REFRESH_SECONDS
                        await self._update_lag()
                except Exception as exc:
                    if batch:
                        # Only a bug gets here (handler errors are dealt with per record):
                        # read the unapplied records again rather than skip them.
                        await self._rewind(member, batch)
                    delay = backoff.next_delay()
                    log.warning(
                        "consumer loop failed; retrying",
                        group=self.group,
                        retry_in_seconds=round(delay, 2),
                        error=repr(exc),
                    )
                    await asyncio.sleep(delay)
                else:
                    backoff.reset()
        finally:
            await self._shutdown()

    async def _connect(self, backoff: Backoff) -> GroupMember | None:
        dead_letters = [topic + DEAD_LETTER_SUFFIX for topic in self.topics]
        while not self._stopping.is_set():
            try:
                member = await self._thread.run(
                    new_group_member,
                    self._settings,
                    self._client_id,
                    self.group,
                    self.topics,
                    dead_letters,
                )
                self._member = member
                log.info("consumer started", group=self.group, topics=self.topics)
                backoff.reset()
                return member
            except Exception as exc:
                delay = backoff.next_delay()
                log.warning(
                    "consumer cannot reach Kafka; retrying",
                    group=self.group,
                    retry_in_seconds=round(delay, 2),
                    error=repr(exc),
                )
                await asyncio.sleep(delay)
        return None

    async def _apply(self, batch: PartitionRecords) -> None:
        # Every partition's records decoded first, so their pseudonyms are resolved in one
        # call; if that fails, the loop reads the batch again after a backoff.
        partitions = list(batch.items())
        flat = [record for _, records in partitions for record in records]
        items = await self._processor.classify(flat)
        # Per partition: its records and their classification.
        parts: list[tuple[Sequence[RecordLike], Sequence[ConsumedEvent | _Skipped | _Invalid]]]
        parts, start = [], 0
        for _, records in partitions:
            parts.append((records, items[start : start + len(records)]))
            start += len(records)
        # A poll of a few events on each of several partitions (moderate rates): the
        # partitions whose events all go to one batch handler are applied as one run, one
        # transaction and statement instead of one per partition, each partition's events
        # in order. A bigger poll keeps its partitions' runs side by side.
        together: dict[Hashable, list[int]] = {}
        for index, (_, classified) in enumerate(parts):
            key = self._processor.run_key(classified)
            if key is not None:
                together.setdefault(key, []).append(index)
        async with asyncio.TaskGroup() as group:
            alone = set(range(len(parts)))
            for indexes in together.values():
                size = sum(len(parts[i][0]) for i in indexes)
                if len(indexes) < 2 or size > self._processor.run_limit:
                    continue
                alone.difference_update(indexes)
                group.create_task(
                    self._processor.apply_together(
                        [r for i in indexes for r in parts[i][0]],
                        [c for i in indexes for c in parts[i][1]],
                        self._done,
                    )
                )
            for index in sorted(alone):
                records, classified = parts[index]
                group.create_task(
                    self._processor.process_many(
                        records, self._done, self._stopping.is_set, classified
                    )
                )

    def _done(self, record: RecordLike) -> None:
        """`record` applied: the partition's next commit and position are past it."""
        partition = Partition(record.topic, record.partition)
        self._uncommitted[partition] = self._positions[partition] = record.offset + 1

    async def _commit(self) -> None:
        if self._member is None or not self._uncommitted:
            return
        offsets = dict(self._uncommitted)
        try:
            await self._thread.run(self._member.commit, offsets)
        except CommitRejected as exc:
            # The group rebalanced meanwhile: these partitions may be another member's now,
            # which reads them from the last committed offset (duplicates are skipped).
            log.warning("offset commit rejected after a rebalance", error=repr(exc))
        for tp, offset in offsets.items():
            if self._uncommitted.get(tp) == offset:
                del self._uncommitted[tp]

    async def _rewind(self, member: GroupMember, batch: PartitionRecords) -> None:
        for tp, records in batch.items():
            position = max(records[0].offset, self._positions.get(tp, 0))
            with contextlib.suppress(Exception):  # no longer assigned: nothing to rewind
                await self._thread.run(member.seek, tp, position)

    async def _update_lag(self) -> None:
        member = self._member
        if member is None:
            return
        current = await self._thread.run(member.lags, dict(self._positions))
        for tp, lag in current.items():
            CONSUMER_LAG.labels(self.group, tp.topic, str(tp.partition)).set(lag)
        for tp in self._lag_labels - current.keys():
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self.group, tp.topic, str(tp.partition))
        self._lag_labels = set(current)

    async def _shutdown(self) -> None:
        # Bounded: a thread stuck on a broker that is away must not hold up the shutdown.
        step = self._settings.events_shutdown_step_seconds
        if self._member is not None:
            try:
                await asyncio.wait_for(self._commit(), step)
            except Exception as exc:  # the group takes them back: they are redelivered
                log.warning("final offset commit failed", group=self.group, error=repr(exc))
            try:
                await asyncio.wait_for(self._thread.run(self._member.close, step), step + 1)
            except Exception as exc:
                log.warning("consumer close failed", group=self.group, error=repr(exc))
            self._member = None
        self._thread.shutdown()
        await self._publisher.close()
        if self._resolver is not None:
            await self._resolver.close()
        log.info("consumer stopped", group=self.group)
