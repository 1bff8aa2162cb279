"""Deleting erased customers' persons at PostHog (domain sub-area: PostHog's persons API).

An erasure marks the customer's (or the merchant's) pseudonyms in `posthog_persons` in the
erasing transaction (store._mark_for_erasure), so the deletion survives a crash. This loop
claims marked persons with a lease (`SKIP LOCKED`: processes share the work) and deletes a
claimed batch with one request to PostHog's bulk deletion on the private API, with a
personal API key (`Authorization: Bearer phx_...`, scope person:write):

    POST /api/projects/{project}/persons/bulk_delete/
    {"distinct_ids": [...at most 1000], "delete_events": true}
    -> 202 {"persons_found", "persons_deleted", "events_queued_for_deletion", ...,
            "deletion_errors": [{"person_uuid"}]}

(posthog/api/person.py `bulk_delete`; the per-person alternative in external-contracts §1.4,
`GET ?distinct_id=` then `DELETE /persons/{uuid}/?delete_events=true`, costs two requests a
person: a shop/redact of 50,000 customers would take 100,000 requests, over 8 hours at
PostHog's 240/min, where the bulk endpoint takes 500 at the default batch of 100.) Only
events captured before the request are deleted, as with the single delete: the claim comes
after the erasure, which already stopped shipping for these persons (tombstones).

Requests are paced under PostHog's per-key limit on the persons endpoints (240/min, ⚠ a
third-party figure; `requests_per_minute`, per process).

Idempotent: a distinct id PostHog has no person for is just not found (success). A 5xx,
408, 429 or no answer is retried at once with tenacity, waiting what `Retry-After` says;
when those attempts run out, on any other answer (400: a malformed batch; 401/403: a wrong
key or scope; 404: a wrong project), and when PostHog reports `deletion_errors` (it does
not say for which distinct ids), the batch's persons stay marked with `last_error` and are
tried again with exponential backoff (capped), never given up: GDPR has no "failed". When
PostHog has no person left, the row goes (nothing of the person is kept).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import Counter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from loyalnest.platform.observability import get_logger
from loyalnest.services.event_tracking.shipping import (
    RETRYABLE_STATUSES,
    RetryableSend,
    SendFailed,
    honour_retry_after,
    retry_after_seconds,
)
from loyalnest.services.event_tracking.store import PersonDeletion, TaskStore

log = get_logger(__name__)

PERSON_DELETIONS = Counter(
    "loyalnest_event_tracking_person_deletions_total",
    "Erased persons handled at PostHog, by outcome (deleted, absent, retry).",
    ["outcome"],
)
_MAX_ERROR_LENGTH = 500


@dataclass(frozen=True)
class PersonsApiConfig:
    # PostHog's private API host (US cloud: https://us.posthog.com; EU: eu.posthog.com), not
    # the ingest host.
    host: str
    personal_api_key: str
    project_id: str
    # Persons per bulk request (PostHog takes at most 1000).
    batch_size: int = 100
    poll_interval_seconds: float = 1.0
    send_attempts: int = 3
    retry_initial_seconds: float = 0.5
    retry_max_seconds: float = 30.0
    # A person whose round failed is tried again after this times 2^attempts, at most
    # `max_backoff_seconds` (or what Retry-After asked for, if longer).
    round_backoff_seconds: float = 5.0
    max_backoff_seconds: float = 3600.0
    timeout_seconds: float = 10.0
    # Below PostHog's 240/min per key, leaving room for people using the same key.
    requests_per_minute: float = 200.0

    @property
    def lease_seconds(self) -> float:
        # A batch is one request of `send_attempts` tries (and the pacer's wait before it).
        per_send = self.timeout_seconds + self.retry_max_seconds
        return self.send_attempts * per_send + 60.0 / self.requests_per_minute + 30.0


@dataclass(frozen=True)
class BulkDeleted:
    """PostHog's answer to a bulk deletion."""

    found: int
    deleted: int
    errors: int


class PersonDeleter:
    def __init__(
        self, store: TaskStore, config: PersonsApiConfig, client: httpx.AsyncClient | None = None
    ) -> None:
        self._store = store
        self._config = config
        self._client = client or httpx.AsyncClient(timeout=config.timeout_seconds)
        self._persons = f"{config.host.rstrip('/')}/api/projects/{config.project_id}/persons/"
        # When the next request may go (the loop's clock): requests are spaced evenly.
        self._next_slot = 0.0

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(now, self._next_slot)
        self._next_slot = slot + 60.0 / self._config.requests_per_minute
        if slot > now:
            await asyncio.sleep(slot - now)

    async def close(self) -> None:
        await self._client.aclose()

    async def _once(self, distinct_ids: list[str]) -> httpx.Response:
        await self._pace()
        try:
            response = await self._client.post(
                f"{self._persons}bulk_delete/",
                json={"distinct_ids": distinct_ids, "delete_events": True},
                headers={"authorization": f"Bearer {self._config.personal_api_key}"},
            )
        except httpx.HTTPError as exc:
            raise RetryableSend(0, f"no answer from PostHog: {type(exc).__name__}") from exc
        if response.status_code in (200, 202):
            return response
        message = f"PostHog answered {response.status_code} to bulk_delete: {response.text[:200]}"
        if response.status_code == 404:  # the persons API itself is not there
            message = f"PostHog has no project {self._config.project_id!r}: {message}"
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        if response.status_code in RETRYABLE_STATUSES:
            raise RetryableSend(response.status_code, message, retry_after)
        raise SendFailed(response.status_code, message, retry_after)

    def _wait(self, state: RetryCallState) -> float:
        return honour_retry_after(
            state,
            initial_seconds=self._config.retry_initial_seconds,
            max_seconds=self._config.retry_max_seconds,
        )

    async def delete(self, distinct_ids: list[str]) -> BulkDeleted:
        """Deletes the persons holding `distinct_ids` (at most 1000), with their events."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(RetryableSend),
            stop=stop_after_attempt(self._config.send_attempts),
            wait=self._wait,
            reraise=True,
        ):
            with attempt:
                response = await self._once(distinct_ids)
        try:
            body: dict[str, Any] = response.json()
            summary = BulkDeleted(
                int(body["persons_found"]),
                int(body["persons_deleted"]),
                len(body.get("deletion_errors") or []),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SendFailed(
                response.status_code, f"unexpected bulk_delete answer: {exc!r}"
            ) from exc
        if summary.errors:
            # PostHog names the persons it could not delete by its uuid, not by distinct id:
            # the whole batch is asked again (those deleted are then just not found).
            raise SendFailed(
                response.status_code,
                f"PostHog could not delete {summary.errors} person(s) of the batch",
            )
        return summary

    async def delete_once(self) -> int:
        """Claims due persons and deletes them at PostHog in one request; returns how many
        were claimed."""
        config = self._config
        persons = await self._store.claim_person_deletions(config.batch_size, config.lease_seconds)
        if not persons:
            return 0
        try:
            await self._delete_batch(persons)
        except asyncio.CancelledError:
            # Stopping (a deploy): the claims are released for another process now, not
            # after the lease (which a crash still waits for).
            await asyncio.shield(self._store.release_person_deletions(persons))
            raise
        return len(persons)

    async def _delete_batch(self, persons: list[PersonDeletion]) -> None:
        config = self._config
        try:
            summary = await self.delete(sorted({p.distinct_id for p in persons}))
        except SendFailed as failure:
            for person in persons:
                backoff = min(
                    config.round_backoff_seconds * 2**person.attempts, config.max_backoff_seconds
                )
                await self._store.person_deletion_failed(
                    person,
                    str(failure)[:_MAX_ERROR_LENGTH],
                    retry_in_seconds=max(backoff, failure.retry_after or 0.0),
                )
            PERSON_DELETIONS.labels("retry").inc(len(persons))
            log.warning(
                "posthog persons not deleted yet",
                persons=len(persons),
                attempts=max(p.attempts for p in persons) + 1,
                error=str(failure),
            )
            return
        for person in persons:
            await self._store.person_deleted(person)
        PERSON_DELETIONS.labels("deleted").inc(summary.deleted)
        PERSON_DELETIONS.labels("absent").inc(max(0, len(persons) - summary.found))

    async def run(self) -> None:
        """The background loop: deletes while there is work, then polls."""
        while True:
            try:
                claimed = await self.delete_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: health says so; try later
                log.warning("posthog person deletion round failed", error=repr(exc))
                claimed = 0
            if claimed < self._config.batch_size:
                await asyncio.sleep(self._config.poll_interval_seconds)
