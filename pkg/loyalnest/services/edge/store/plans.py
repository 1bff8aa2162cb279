"""Which plan each merchant is on, as the rate limiter asks it on every request."""

from __future__ import annotations

from collections.abc import Mapping

from loyalnest.platform.cache import ProcessMemo
from loyalnest.services.edge.domain import PlanRateLimit
from loyalnest.services.edge.store.postgres import EdgeStore


class PlanDirectory:
    """Which plan each merchant is on, from the gateway's copy of Core's settings events,
    remembered per process for a while (the limiter must not query PostgreSQL per request)."""

    def __init__(
        self,
        store: EdgeStore,
        *,
        plans: Mapping[str, PlanRateLimit],
        default_plan: str,
        cache_seconds: float,
    ) -> None:
        self._plans = plans
        self._default = default_plan
        self._store = store
        self._cache: ProcessMemo[str, str] = ProcessMemo(cache_seconds)
        if self._default not in self._plans:
            raise ValueError(f"rate_limit_default_plan {self._default!r} has no limits configured")

    async def plan_of(self, merchant_id: str) -> str:
        cached = self._cache.get(merchant_id)
        if cached is not None:
            return cached
        plan = await self._store.plan_of(merchant_id)
        if plan is None or plan not in self._plans:
            # No settings seen yet, or a plan without configured limits: the default tier.
            plan = self._default
        self._cache.put(merchant_id, plan)
        return plan

    def limit_of(self, plan: str) -> PlanRateLimit:
        return self._plans.get(plan) or self._plans[self._default]

    def forget(self, merchant_id: str) -> None:
        self._cache.forget(merchant_id)
