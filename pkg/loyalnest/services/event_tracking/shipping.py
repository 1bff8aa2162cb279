"""Shipping queued tasks to PostHog (domain sub-area: the capture API's batch contract).

A loop claims due tasks (leased, so several processes share the queue) and posts them as one
`POST /batch/` (gzip; the project key in the body; each event's `uuid` is its task id, which
PostHog deduplicates on, so a resend after a lost answer is harmless). A 5xx, 408, 429 or a
network error is retried at once with tenacity, waiting what `Retry-After` says (else
exponential backoff with jitter); when those attempts run out the tasks are retried on a
later round, and after `posthog_task_max_attempts` rounds they fail for good with the reason
kept (`last_error`, task.completed FAILED). Any other 4xx is PostHog refusing the batch's
content, which no retry changes: those tasks fail at once. A 401/403 is this service's key,
not the events: they stay pending (counted as attempts) until the key is fixed.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from prometheus_client import Counter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from loyalnest.platform.observability import get_logger
from loyalnest.services.event_tracking.domain import Task
from loyalnest.services.event_tracking.store import TaskStore

log = get_logger(__name__)

SHIPPED = Counter(
    "loyalnest_event_tracking_shipped_total",
    "Analytics events PostHog took.",
)
SEND_FAILURES = Counter(
    "loyalnest_event_tracking_send_failures_total",
    "Batches PostHog did not take, by HTTP status (0: no answer).",
    ["status"],
)
FAILED_TASKS = Counter(
    "loyalnest_event_tracking_failed_tasks_total",
    "Tasks given up on.",
)
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
KEY_STATUSES = frozenset({401, 403})
_MAX_ERROR_LENGTH = 500


@dataclass(frozen=True)
class PosthogConfig:
    host: str
    api_key: str
    batch_size: int = 100
    poll_interval_seconds: float = 1.0
    # Attempts of one batch within a round (tenacity), and rounds before a task fails.
    send_attempts: int = 3
    task_max_attempts: int = 5
    retry_initial_seconds: float = 0.5
    retry_max_seconds: float = 30.0
    # A later round retries a batch after this long (times the attempts so far).
    round_backoff_seconds: float = 5.0
    timeout_seconds: float = 10.0

    @property
    def lease_seconds(self) -> float:
        # Longer than a round can take, so a live shipper's batch is never taken by another.
        per_send = self.timeout_seconds + self.retry_max_seconds
        return self.send_attempts * per_send + 30.0


class SendFailed(Exception):
    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status in RETRYABLE_STATUSES


class RetryableSend(SendFailed):
    """A failure tenacity retries (5xx, 408, 429, no answer)."""


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` in seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def honour_retry_after(
    state: RetryCallState, *, initial_seconds: float, max_seconds: float
) -> float:
    """tenacity's wait: what `Retry-After` asked for (capped), else exponential backoff with
    jitter."""
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, SendFailed) and error.retry_after is not None:
        return min(error.retry_after, max_seconds)
    backoff = wait_exponential_jitter(
        multiplier=initial_seconds, max=max_seconds, jitter=initial_seconds
    )
    return float(backoff(state))


def batch_body(api_key: str, tasks: Sequence[Task], sent_at: datetime) -> bytes:
    """The gzip'd `/batch/` body: PostHog's SDK shape, one event per task."""
    batch: list[dict[str, Any]] = [
        {
            "uuid": task.task_id,
            "event": task.event_type,
            "distinct_id": task.subject,
            "timestamp": task.occurred_at.isoformat(),
            "properties": {
                **task.properties,
                "merchant_id": task.merchant_id,
                # A pseudonym is no person PostHog should build a profile of by itself.
                "$lib": "loyalnest-event-tracking",
            },
        }
        for task in tasks
    ]
    body = {"api_key": api_key, "batch": batch, "sent_at": sent_at.isoformat()}
    return gzip.compress(json.dumps(body, separators=(",", ":")).encode())


class PosthogShipper:
    def __init__(
        self, store: TaskStore, config: PosthogConfig, client: httpx.AsyncClient | None = None
    ) -> None:
        self._store = store
        self._config = config
        self._client = client or httpx.AsyncClient(timeout=config.timeout_seconds)

    async def close(self) -> None:
        await self._client.aclose()

    async def _post(self, body: bytes) -> None:
        try:
            response = await self._client.post(
                self._config.host.rstrip("/") + "/batch/",
                content=body,
                headers={"content-type": "application/json", "content-encoding": "gzip"},
            )
        except httpx.HTTPError as exc:
            SEND_FAILURES.labels("0").inc()
            raise RetryableSend(0, f"no answer from PostHog: {type(exc).__name__}") from exc
        if response.status_code == 200:
            return
        SEND_FAILURES.labels(str(response.status_code)).inc()
        message = f"PostHog answered {response.status_code}: {response.text[:200]}"
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        if response.status_code in RETRYABLE_STATUSES:
            raise RetryableSend(response.status_code, message, retry_after)
        raise SendFailed(response.status_code, message)

    def _wait(self, state: RetryCallState) -> float:
        return honour_retry_after(
            state,
            initial_seconds=self._config.retry_initial_seconds,
            max_seconds=self._config.retry_max_seconds,
        )

    async def send(self, tasks: Sequence[Task]) -> None:
        """One batch to PostHog, retried on what may pass; raises SendFailed otherwise."""
        body = batch_body(self._config.api_key, tasks, datetime.now(UTC))
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(RetryableSend),
            stop=stop_after_attempt(self._config.send_attempts),
            wait=self._wait,
            reraise=True,
        ):
            with attempt:
                await self._post(body)

    async def ship_once(self) -> int:
        """Claims one batch of due tasks and ships it; returns how many were claimed."""
        config = self._config
        tasks = await self._store.claim_due(config.batch_size, config.lease_seconds)
        if not tasks:
            return 0
        try:
            await self.send(tasks)
        except SendFailed as failure:
            error = str(failure)[:_MAX_ERROR_LENGTH]
            attempts = max(task.attempts for task in tasks) + 1
            failed = await self._store.attempt_failed(
                tasks,
                error,
                retry_in_seconds=config.round_backoff_seconds * attempts,
                # A key problem is no reason to give up on the events.
                max_attempts=(
                    2**31 - 1 if failure.status in KEY_STATUSES else config.task_max_attempts
                ),
                final=not failure.retryable and failure.status not in KEY_STATUSES,
            )
            FAILED_TASKS.inc(failed)
            log.warning("posthog batch not shipped", tasks=len(tasks), error=error, failed=failed)
        else:
            await self._store.complete(tasks)
            SHIPPED.inc(len(tasks))
        return len(tasks)

    async def run(self) -> None:
        """The background loop: ships while there is work, then polls."""
        while True:
            try:
                claimed = await self.ship_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: health says so; try later
                log.warning("posthog shipping round failed", error=repr(exc))
                claimed = 0
            if claimed < self._config.batch_size:
                await asyncio.sleep(self._config.poll_interval_seconds)
