"""Per-merchant rate limits as Redis token buckets.

Each `[merchant_id, endpoint]` descriptor Envoy asks about is a bucket at
`rate_limit:{merchant_id}:{endpoint}`, sized by the merchant's plan, taken in one atomic
script run: one Redis round trip per request, because this check sits in front of every call.
"""

from __future__ import annotations

import math

import redis.asyncio as redis

from loyalnest.services.edge.domain import Decision, PlanRateLimit

KEY_PREFIX = "rate_limit"

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
