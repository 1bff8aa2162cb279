"""A best-effort Redis cache in front of PostgreSQL, shared by every service that caches.

Redis is an optimisation, never the record: every operation here swallows Redis errors
(counted in `loyalnest_cache_errors_total`) so that a slow or absent Redis costs a request a
cache miss, not a failure. Timeouts are short for the same reason.

    cache = RedisCache.from_url(settings.redis_url, name="users", ttl_seconds=300)
    row = await cache.get(f"user:{user_id}", UserRow.from_json)  # None: miss, error, old shape
    await cache.put(f"user:{user_id}", row.to_json())
    await cache.invalidate(f"user:{user_id}")         # after the change has committed
    await cache.run("usage_put", script(keys=[...]))  # any other command, same tolerance
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as redis
from prometheus_client import Counter

from loyalnest.platform.observability import get_logger

log = get_logger(__name__)

CACHE_LOOKUPS = Counter(
    "loyalnest_cache_lookups_total", "Cache lookups by cache and result.", ["cache", "result"]
)
CACHE_ERRORS = Counter(
    "loyalnest_cache_errors_total", "Redis errors of a cache by operation.", ["cache", "operation"]
)
T = TypeVar("T")


class RedisCache:
    def __init__(self, client: redis.Redis, *, name: str, ttl_seconds: int) -> None:
        self.client = client
        self.name = name
        self.ttl_seconds = ttl_seconds

    @classmethod
    def from_url(cls, url: str, *, name: str, ttl_seconds: int) -> RedisCache:
        # Short timeouts: a slow Redis must cost a read little more than a miss.
        client = redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
        return cls(client, name=name, ttl_seconds=ttl_seconds)

    async def run(self, operation: str, call: Awaitable[T]) -> T | None:
        """Awaits a Redis command; None (and a counted error) when Redis failed."""
        try:
            return await call
        except (redis.RedisError, OSError) as exc:
            CACHE_ERRORS.labels(self.name, operation).inc()
            log.debug("cache operation failed", cache=self.name, op=operation, error=repr(exc))
            return None

    async def get(self, key: str, decode: Callable[[bytes], T]) -> T | None:
        """The decoded entry; None on a miss, a Redis error or an entry `decode` rejects."""
        raw = await self.run("get", self.client.get(key))
        if raw is None:
            CACHE_LOOKUPS.labels(self.name, "miss").inc()
            return None
        try:
            value = decode(raw.encode() if isinstance(raw, str) else raw)
        except (ValueError, KeyError, TypeError):
            # Written by an older release with another shape: treat as a miss.
            CACHE_LOOKUPS.labels(self.name, "invalid").inc()
            return None
        CACHE_LOOKUPS.labels(self.name, "hit").inc()
        return value

    async def put(self, key: str, value: bytes | str) -> None:
        await self.run("put", self.client.set(key, value, ex=self.ttl_seconds))

    async def invalidate(self, key: str) -> None:
        try:
            await self.client.delete(key)
        except (redis.RedisError, OSError) as exc:
            # The entry may now be served stale until it expires: worth a warning.
            CACHE_ERRORS.labels(self.name, "invalidate").inc()
            log.warning("cache invalidation failed", cache=self.name, key=key, error=repr(exc))

    async def close(self) -> None:
        await self.client.aclose()
