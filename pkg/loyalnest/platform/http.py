"""Calls to third-party HTTP APIs (Shopify, email/SMS providers): one client, same rules.

A timeout on every call; retries with exponential backoff and jitter (tenacity), honouring
`Retry-After` up to the backoff cap. A repeatable call (a query, an idempotent write) is sent
again after any transport error, 429 and 502-504; one that is not (a mutation without an
idempotency key) only after what cannot have taken effect: a connection that never opened and
429. Other answers, 4xx and 500 included, go back to the caller as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from prometheus_client import Counter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    wait_random_exponential,
)

from loyalnest.platform.observability import get_logger

log = get_logger(__name__)

HTTP_CALLS = Counter(
    "loyalnest_http_client_calls_total",
    "Outgoing HTTP calls by API and outcome.",
    ["api", "outcome"],
)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Refused before anything ran: safe to send again whatever the call does.
NOT_RUN_STATUSES = frozenset({429})
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class HttpClient:
    def __init__(
        self,
        *,
        api: str,
        timeout_seconds: float = 5.0,
        attempts: int = 3,
        backoff_initial_seconds: float = 0.2,
        backoff_max_seconds: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`api` names the remote API in metrics and logs."""
        self._api = api
        self._attempts = attempts
        self._initial = backoff_initial_seconds
        self._max = backoff_max_seconds
        self._client = httpx.AsyncClient(timeout=timeout_seconds, transport=transport)

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_random_exponential(multiplier=self._initial, max=self._max)(state)
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            retry_after = outcome.result().headers.get("retry-after", "")
            if retry_after.isdigit():
                return min(float(retry_after), self._max)
        return backoff

    async def post_json(
        self,
        url: str,
        payload: Any,
        *,
        headers: Mapping[str, str] | None = None,
        repeatable: bool = True,
    ) -> httpx.Response:
        """The last response; raises httpx.TransportError once the attempts are spent.
        `repeatable=False`: the call may have taken effect even without an answer (a read
        timeout, a 504), so only what never ran is sent again."""
        errors = httpx.TransportError if repeatable else NOT_SENT_ERRORS
        statuses = RETRY_STATUSES if repeatable else NOT_RUN_STATUSES
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=self._wait,
            retry=retry_if_exception_type(errors)
            | retry_if_result(lambda r: r.status_code in statuses),
            # Attempts spent: the last response, or its exception raised again.
            retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]
        )
        try:
            response: httpx.Response = await retrying(
                self._client.post, url, json=payload, headers=headers
            )
        except httpx.TransportError as exc:
            HTTP_CALLS.labels(self._api, "transport_error").inc()
            log.warning("HTTP call failed", api=self._api, error=repr(exc))
            raise
        HTTP_CALLS.labels(self._api, str(response.status_code)).inc()
        return response

    async def close(self) -> None:
        await self._client.aclose()
