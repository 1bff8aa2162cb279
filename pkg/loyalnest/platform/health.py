"""grpc.health.v1 driven by the service's real dependencies.

Everything starts NOT_SERVING. Start-up steps (e.g. migrations) run first, retried with
backoff until they succeed; afterwards readiness checks are probed periodically and the
status follows them, so a lost database flips the service to NOT_SERVING and back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial

from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from loyalnest.platform.observability import get_logger

log = get_logger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True)
class Check:
    name: str
    probe: Callable[[], Awaitable[None]]


def _log_retry(step: str, state: RetryCallState) -> None:
    log.warning(
        "start-up step failed; retrying",
        step=step,
        attempt=state.attempt_number,
        error=repr(state.outcome.exception()) if state.outcome else None,
    )


class HealthMonitor:
    def __init__(
        self,
        servicer: health_aio.HealthServicer,
        service_names: Sequence[str],
        *,
        startup: Sequence[Check],
        readiness: Sequence[Check],
        interval: float,
        timeout: float,
    ) -> None:
        self._servicer = servicer
        self._names = ("", *service_names)
        self._startup = startup
        self._readiness = readiness
        self._interval = interval
        self._timeout = timeout
        self._stopped = asyncio.Event()
        self._serving: bool | None = None
        self._failing: set[str] = set()
        self.started = asyncio.Event()

    async def _set(self, serving: bool) -> None:
        if serving == self._serving:
            return
        self._serving = serving
        for name in self._names:
            await self._servicer.set(name, SERVING if serving else NOT_SERVING)
        log.info("health changed", status="SERVING" if serving else "NOT_SERVING")

    async def _run_startup(self) -> None:
        for check in self._startup:
            async for attempt in AsyncRetrying(
                wait=wait_exponential_jitter(multiplier=0.2, max=5, jitter=0.2),
                retry=retry_if_exception_type(Exception),
                before_sleep=partial(_log_retry, check.name),
            ):
                with attempt:
                    await check.probe()
        self.started.set()

    async def _probe_all(self) -> bool:
        healthy = True
        for check in self._readiness:
            try:
                await asyncio.wait_for(check.probe(), self._timeout)
            except Exception as exc:
                healthy = False
                if check.name not in self._failing:
                    log.warning("readiness check failing", check=check.name, error=repr(exc))
                self._failing.add(check.name)
            else:
                self._failing.discard(check.name)
        return healthy

    async def run(self) -> None:
        await self._set(False)
        await self._run_startup()
        while not self._stopped.is_set():
            await self._set(await self._probe_all())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self._interval)

    async def stop(self) -> None:
        self._stopped.set()
        await self._servicer.enter_graceful_shutdown()
