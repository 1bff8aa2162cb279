"""Deleting erased customers' persons at PostHog (domain sub-area: PostHog's persons API).

An erasure marks the customer's (or the merchant's) pseudonyms in `posthog_persons` in the
erasing transaction (store._mark_for_erasure), so the deletion survives a crash. This loop
claims marked persons with a lease (`SKIP LOCKED`: processes share the work) and, for each,
follows PostHog's documented deletion (external-contracts §1.4, posthog.com/docs/privacy/
data-deletion) on the private API with a personal API key (`Authorization: Bearer phx_...`,
scope person:write):

1. `GET /api/projects/{project}/persons/?distinct_id=<pseudonym>` finds the person;
2. `DELETE /api/projects/{project}/persons/{uuid}/?delete_events=true` deletes it with its
   events (204).

Requests are paced under PostHog's per-key limit on the persons endpoints (240/min, ⚠ a
third-party figure; `requests_per_minute`, per process), so a merchant's erasure of
thousands of persons queues behind the pacer instead of meeting 429s.

Idempotent: no person found, or a 404 on the delete (deleted meanwhile), is success. A 5xx,
408, 429 or no answer is retried at once with tenacity, waiting what `Retry-After` says
(PostHog throttles its persons endpoints per key); when those attempts run out, and on any
other answer (401/403: a wrong key or scope), the person stays marked with `last_error` and
is tried again with exponential backoff (capped), never given up: GDPR has no "failed".
When PostHog has no person left, the row goes (nothing of the person is kept).
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
    batch_size: int = 20
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
        # One person is at most two requests of `send_attempts` each; a batch is sequential.
        per_send = self.timeout_seconds + self.retry_max_seconds
        return self.batch_size * 2 * self.send_attempts * per_send + 30.0


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

    async def _once(self, method: str, url: str, params: dict[str, str]) -> httpx.Response:
        await self._pace()
        try:
            response = await self._client.request(
                method,
                url,
                params=params,
                headers={"authorization": f"Bearer {self._config.personal_api_key}"},
            )
        except httpx.HTTPError as exc:
            raise RetryableSend(0, f"no answer from PostHog: {type(exc).__name__}") from exc
        if response.status_code in (200, 204, 404):
            return response
        message = f"PostHog answered {response.status_code} to {method}: {response.text[:200]}"
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

    async def _request(self, method: str, url: str, params: dict[str, str]) -> httpx.Response:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(RetryableSend),
            stop=stop_after_attempt(self._config.send_attempts),
            wait=self._wait,
            reraise=True,
        ):
            with attempt:
                return await self._once(method, url, params)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def delete(self, distinct_id: str) -> int:
        """Deletes the person holding `distinct_id`, with its events; returns how many persons
        PostHog deleted (0: none was there, which is success too)."""
        found = await self._request("GET", self._persons, {"distinct_id": distinct_id})
        if found.status_code == 404:
            # The persons list itself is not there: the project id is wrong, not the person.
            raise SendFailed(404, f"PostHog has no project {self._config.project_id!r}")
        body: dict[str, Any] = found.json()
        deleted = 0
        for person in body.get("results") or []:
            if distinct_id not in person.get("distinct_ids", [distinct_id]):
                continue
            gone = await self._request(
                "DELETE", f"{self._persons}{person['uuid']}/", {"delete_events": "true"}
            )
            deleted += gone.status_code == 204
        return deleted

    async def delete_once(self) -> int:
        """Claims due persons and deletes each at PostHog; returns how many were claimed."""
        config = self._config
        persons = await self._store.claim_person_deletions(config.batch_size, config.lease_seconds)
        for done, person in enumerate(persons):
            try:
                await self._delete_one(person)
            except asyncio.CancelledError:
                # Stopping (a deploy): the claims not carried out are released for another
                # process now, not after the lease (which a crash still waits for).
                await asyncio.shield(self._store.release_person_deletions(persons[done:]))
                raise
        return len(persons)

    async def _delete_one(self, person: PersonDeletion) -> None:
        config = self._config
        try:
            deleted = await self.delete(person.distinct_id)
        except SendFailed as failure:
            backoff = min(
                config.round_backoff_seconds * 2**person.attempts, config.max_backoff_seconds
            )
            await self._store.person_deletion_failed(
                person,
                str(failure)[:_MAX_ERROR_LENGTH],
                retry_in_seconds=max(backoff, failure.retry_after or 0.0),
            )
            PERSON_DELETIONS.labels("retry").inc()
            log.warning(
                "posthog person not deleted yet",
                merchant_id=person.merchant_id,
                attempts=person.attempts + 1,
                error=str(failure),
            )
            return
        await self._store.person_deleted(person)
        PERSON_DELETIONS.labels("deleted" if deleted else "absent").inc()

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
