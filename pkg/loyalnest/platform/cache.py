"""Versioned cache entries in Redis, shared by every service that caches rows it owns.

An entry is a hash `{version, value}`. Writers store the state they committed together with
its version (a row's sequence number); `put_if_newer` replaces the entry only when the stored
version is older, in one Lua call, so a slow reader filling the cache with what it read
before a write cannot overwrite the newer state the writer stored after it. The same call can
PUBLISH the value on a channel (`channel`), so subscribers of a row see every change that
reaches the cache, in any process.

Redis is an optimisation: every failure is logged, counted and treated as a miss, so reads
go to the database while Redis is away. Entries expire after `ttl_seconds` regardless.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

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

# KEYS[1] entry; ARGV: version, value, ttl ms, channel ('' = none). 1 if stored, else 0.
_PUT_IF_NEWER = """
local current = redis.call('HGET', KEYS[1], 'version')
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[2]) end
if current and tonumber(current) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'value', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

REDIS_ERRORS = (redis.RedisError, OSError)


def key_part(value: str) -> str:
    """`value` made safe as one `:`-separated segment of a key (ids may contain `:`)."""
    return value.replace("%", "%25").replace(":", "%3A")


def client_from_url(url: str, *, timeout_seconds: float = 0.25) -> redis.Redis:
    """Short timeouts: a slow Redis must cost a call little more than a miss."""
    return redis.Redis.from_url(
        url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
    )


class VersionedCache:
    def __init__(self, client: redis.Redis, *, name: str, ttl_seconds: float) -> None:
        self._client = client
        self._name = name
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._put = client.register_script(_PUT_IF_NEWER)

    @property
    def client(self) -> redis.Redis:
        return self._client

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._client.hget(key, "value")
        except REDIS_ERRORS as exc:
            CACHE_ERRORS.labels(self._name, "get").inc()
            log.debug("cache read failed", cache=self._name, error=repr(exc))
            return None
        CACHE_LOOKUPS.labels(self._name, "miss" if value is None else "hit").inc()
        return value.encode() if isinstance(value, str) else value

    async def put_if_newer(
        self, key: str, version: int, value: bytes, *, channel: str | None = None
    ) -> bool:
        """Stores `value` unless the entry holds `version` or newer; publishes it on `channel`
        either way. On a Redis error the entry is dropped (best effort) so it cannot stay
        older than what the caller committed; False then."""
        try:
            stored = await self._put(keys=[key], args=[version, value, self._ttl_ms, channel or ""])
        except REDIS_ERRORS as exc:
            CACHE_ERRORS.labels(self._name, "put").inc()
            log.warning(
                "cache update failed; dropping the entry", cache=self._name, error=repr(exc)
            )
            await self.delete(key)
            return False
        return bool(stored)

    async def delete(self, key: str) -> None:
        try:
            await self._client.delete(key)
        except REDIS_ERRORS as exc:
            # The entry may now be served stale until it expires: worth a warning.
            CACHE_ERRORS.labels(self._name, "delete").inc()
            log.warning("cache invalidation failed", cache=self._name, key=key, error=repr(exc))

    async def close(self) -> None:
        await self._client.aclose()


@contextlib.asynccontextmanager
async def subscription(client: redis.Redis, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
    """Messages published on `channel` from the moment this returns (subscribed already on
    entry, so a caller can read the current state next without missing a change). One Redis
    connection per subscription, released on exit."""
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)

    async def messages() -> AsyncIterator[bytes]:
        while True:
            # A read timeout of its own: the client's socket timeout is short (see above).
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            if message is not None and message["type"] == "message":
                data = message["data"]
                yield data.encode() if isinstance(data, str) else data

    try:
        yield messages()
    finally:
        with contextlib.suppress(*REDIS_ERRORS):
            await pubsub.unsubscribe(channel)
        await pubsub.aclose()  # type: ignore[no-untyped-call]
