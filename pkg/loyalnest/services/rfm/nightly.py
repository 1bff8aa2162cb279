"""The nightly rescore and what triggers it: `loyalnest rfm rescore [--merchant]` (the chart's
CronJob, `0 1 * * *`), a consumer when a merchant's customer count moved past the threshold,
and the upkeep of the time series' partitions (created ahead, dropped past retention)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from loyalnest.platform.observability import get_logger
from loyalnest.services.rfm.store.live import Live
from loyalnest.services.rfm.store.rescore import Rescorer, RescoreResult
from loyalnest.services.rfm.store.scores import ScoreStore

log = get_logger(__name__)

# Partitions exist this many months ahead, so an insert never lacks one between upkeeps.
MONTHS_AHEAD = 2


class Nightly:
    def __init__(
        self,
        rescorer: Rescorer,
        scores: ScoreStore,
        live: Live,
        *,
        retention_months: int,
        clock: Callable[[], datetime],
    ) -> None:
        self._rescorer = rescorer
        self._scores = scores
        self._live = live
        self._retention_months = retention_months
        self._clock = clock

    async def rescore_merchant(self, merchant_id: str) -> RescoreResult:
        result = await self._rescorer.rescore(merchant_id, self._clock())
        # Previews answered before the rescore count the old scores.
        await self._live.drop_previews(merchant_id)
        log.info(
            "rfm rescored",
            merchant_id=merchant_id,
            customers=result.customers,
            changed=result.changed,
            seconds=round(result.seconds, 3),
        )
        return result

    async def run(self, merchant_id: str | None = None) -> list[RescoreResult]:
        """Rescores one merchant, or every merchant one after the other; then partitions."""
        await self._scores.ensure_partitions(MONTHS_AHEAD)
        merchants = [merchant_id] if merchant_id else await self._rescorer.merchants()
        results = [await self.rescore_merchant(merchant) for merchant in merchants]
        dropped = await self._scores.drop_partitions(self._retention_months)
        if dropped:
            log.info("rfm partitions dropped", partitions=dropped)
        return results

    async def upkeep(self, interval_seconds: float) -> None:
        """Background loop of each service process: partitions ahead, whatever the CronJob
        does (idempotent, cheap)."""
        while True:
            try:
                await self._scores.ensure_partitions(MONTHS_AHEAD)
            except Exception as exc:
                log.warning("rfm partition upkeep failed", error=repr(exc))
                await asyncio.sleep(min(60.0, interval_seconds))
                continue
            await asyncio.sleep(interval_seconds)
