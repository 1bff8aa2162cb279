"""Per-merchant rate limits: Envoy's rate-limit service over Redis token buckets.

Envoy's `ratelimit` filter asks `ShouldRateLimit` before routing a request, with one
descriptor `[merchant_id, endpoint]` built from the verified JWT (never from client headers)
and the gRPC method (DESIGN §8). Each descriptor is a token bucket in Redis at
`rate_limit:{merchant_id}:{endpoint}`, sized by the merchant's plan, taken in one atomic
script run: one Redis round trip per request, because this check sits in front of every call.

Redis unreachable: fail open by default (the request passes and the failure is counted), or
closed (`rate_limit_fail_open=false`, every merchant is refused with 429) when protecting the
backends matters more than availability.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
from prometheus_client import Counter

from loyalnest.gen.xds.envoy.config.core.v3 import base_pb2
from loyalnest.gen.xds.envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from loyalnest.platform.cache import ProcessMemo
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.observability import get_logger
from loyalnest.services.edge.settings import EdgeSettings, PlanRateLimit
from loyalnest.services.edge.store import EdgeStore

log = get_logger(__name__)

MERCHANT_KEY = "merchant_id"
ENDPOINT_KEY = "endpoint"
KEY_PREFIX = "rate_limit"

DECISIONS = Counter(
    "loyalnest_rate_limit_decisions_total",
    "Rate-limit checks by plan and decision (ok, over_limit, unlimited).",
    ["plan", "decision"],
)
REDIS_FAILURES = Counter(
    "loyalnest_rate_limit_redis_failures_total",
    "Checks Redis could not answer, by the decision taken instead (fail_open, fail_closed).",
    ["decision"],
)

# KEYS[1] the bucket; ARGV burst, refill per second, cost. Returns {allowed, tokens left,
# seconds until one token, seconds until full} (floats as strings: Redis truncates numbers).
# Time comes from the Redis server, so every gateway process shares one clock.
TOKEN_BUCKET_LUA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst / rate) * 1000) + 1000)
local wait = 0
if tokens < cost then wait = (cost - tokens) / rate end
return {allowed, tostring(tokens), tostring(wait), tostring((burst - tokens) / rate)}
"""

# The current level of a bucket without taking from it (GetRateLimits).
PEEK_LUA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
if not state[1] then return false end
local refilled = tonumber(state[1]) + math.max(0, now - tonumber(state[2])) * tonumber(ARGV[2])
return tostring(math.min(tonumber(ARGV[1]), refilled))
"""


def bucket_key(merchant_id: str, endpoint: str) -> str:
    return f"{KEY_PREFIX}:{merchant_id}:{endpoint}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: PlanRateLimit
    remaining: int
    retry_after_seconds: float
    reset_seconds: float


class TokenBuckets:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._take = client.register_script(TOKEN_BUCKET_LUA)
        self._peek = client.register_script(PEEK_LUA)

    @classmethod
    def from_url(cls, url: str) -> TokenBuckets:
        # Short timeouts: a slow limiter delays every request it guards.
        return cls(redis.Redis.from_url(url, socket_timeout=0.1, socket_connect_timeout=0.1))

    async def take(self, key: str, limit: PlanRateLimit, cost: int = 1) -> Decision:
        allowed, tokens, wait, reset = await self._take(
            keys=[key], args=[limit.burst, limit.requests_per_second, cost]
        )
        return Decision(
            allowed=bool(allowed),
            limit=limit,
            remaining=math.floor(float(tokens)),
            retry_after_seconds=float(wait),
            reset_seconds=float(reset),
        )

    async def levels(self, merchant_id: str, limit: PlanRateLimit) -> dict[str, int]:
        """Tokens left per endpoint the merchant used within a bucket's lifetime."""
        prefix = bucket_key(merchant_id, "")
        levels: dict[str, int] = {}
        async for raw in self._client.scan_iter(match=f"{prefix}*", count=500):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            level = await self._peek(keys=[key], args=[limit.burst, limit.requests_per_second])
            if level is not None:
                levels[key.removeprefix(prefix)] = math.floor(float(level))
        return levels

    async def close(self) -> None:
        await self._client.aclose()


class PlanDirectory:
    """Which plan each merchant is on, from the gateway's copy of Core's settings events,
    remembered per process for a while (the limiter must not query PostgreSQL per request)."""

    def __init__(self, settings: EdgeSettings, store: EdgeStore) -> None:
        self._plans = settings.rate_limit_plans
        self._default = settings.rate_limit_default_plan
        self._store = store
        self._cache: ProcessMemo[str, str] = ProcessMemo(settings.rate_limit_plan_cache_seconds)
        if self._default not in self._plans:
            raise ValueError(f"rate_limit_default_plan {self._default!r} has no limits configured")

    async def plan_of(self, merchant_id: str) -> str:
        cached = self._cache.get(merchant_id)
        if cached is not None:
            return cached
        plan = await self._store.plan_of(merchant_id)
        if plan not in self._plans:
            # No settings seen yet, or a plan without configured limits: the default tier.
            plan = self._default
        self._cache.put(merchant_id, plan)
        return plan

    def limit_of(self, plan: str) -> PlanRateLimit:
        return self._plans.get(plan) or self._plans[self._default]

    def forget(self, merchant_id: str) -> None:
        self._cache.forget(merchant_id)


def _entries(descriptor: Any) -> Mapping[str, str]:
    return {entry.key: entry.value for entry in descriptor.entries}


def _header(name: str, value: str | int) -> base_pb2.HeaderValue:
    return base_pb2.HeaderValue(key=name, value=str(value))


def rate_limit_headers(decision: Decision) -> list[base_pb2.HeaderValue]:
    """IETF draft RateLimit headers (x-ratelimit-*) and, when refused, Retry-After (Envoy adds
    none by itself)."""
    limit = decision.limit
    window = max(1, math.ceil(limit.burst / limit.requests_per_second))
    headers = [
        _header("x-ratelimit-limit", f"{limit.burst}, {limit.burst};w={window}"),
        _header("x-ratelimit-remaining", decision.remaining),
        _header("x-ratelimit-reset", math.ceil(decision.reset_seconds)),
    ]
    if not decision.allowed:
        headers.append(_header("retry-after", max(1, math.ceil(decision.retry_after_seconds))))
    return headers


class RateLimitServicer(rls_pb2_grpc.RateLimitServiceServicer):
    """envoy.service.ratelimit.v3.RateLimitService for the gateway's `ratelimit` filter."""

    def __init__(self, settings: EdgeSettings, buckets: TokenBuckets, plans: PlanDirectory) -> None:
        self._fail_open = settings.rate_limit_fail_open
        self._buckets = buckets
        self._plans = plans

    async def ShouldRateLimit(  # noqa: N802 - the gRPC method's name
        self, request: Any, context: Context
    ) -> Any:
        cost = max(1, request.hits_addend)
        statuses: list[Any] = []
        headers: list[base_pb2.HeaderValue] = []
        refused = False
        for descriptor in request.descriptors:
            entries = _entries(descriptor)
            merchant_id, endpoint = entries.get(MERCHANT_KEY), entries.get(ENDPOINT_KEY)
            if not merchant_id or not endpoint:
                # Not a descriptor this service defines: no limit from us.
                statuses.append(
                    rls_pb2.RateLimitResponse.DescriptorStatus(code=rls_pb2.RateLimitResponse.OK)
                )
                DECISIONS.labels("none", "unlimited").inc()
                continue
            try:
                plan = await self._plans.plan_of(merchant_id)
                decision = await self._buckets.take(
                    bucket_key(merchant_id, endpoint), self._plans.limit_of(plan), cost
                )
            except (redis.RedisError, OSError) as exc:
                return self._without_redis(exc)
            DECISIONS.labels(plan, "ok" if decision.allowed else "over_limit").inc()
            refused |= not decision.allowed
            statuses.append(
                rls_pb2.RateLimitResponse.DescriptorStatus(
                    code=rls_pb2.RateLimitResponse.OK
                    if decision.allowed
                    else rls_pb2.RateLimitResponse.OVER_LIMIT,
                    limit_remaining=max(0, decision.remaining),
                )
            )
            # One descriptor per request in our configuration; with several, the last wins.
            headers = rate_limit_headers(decision)
        return rls_pb2.RateLimitResponse(
            overall_code=rls_pb2.RateLimitResponse.OVER_LIMIT
            if refused
            else rls_pb2.RateLimitResponse.OK,
            statuses=statuses,
            response_headers_to_add=headers,
        )

    def _without_redis(self, exc: BaseException) -> Any:
        decision = "fail_open" if self._fail_open else "fail_closed"
        REDIS_FAILURES.labels(decision).inc()
        log.warning("rate limiter without Redis", decision=decision, error=str(exc))
        code = (
            rls_pb2.RateLimitResponse.OK
            if self._fail_open
            else rls_pb2.RateLimitResponse.OVER_LIMIT
        )
        return rls_pb2.RateLimitResponse(overall_code=code)
