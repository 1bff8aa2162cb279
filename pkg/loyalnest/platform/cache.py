"""Redis caches in front of PostgreSQL, shared by every service that caches.

Redis is an optimisation, never the record: every operation here swallows Redis errors
(counted in `loyalnest_cache_errors_total`) so that a slow or absent Redis costs a request a
cache miss, not a failure. Timeouts are short for the same reason.

`RedisCache` is a plain key/value cache invalidated after a change commits:

    cache = RedisCache.from_url(settings.redis_url, name="users", ttl_seconds=300)
    row = await cache.get(f"user:{user_id}", UserRow.from_json)  # None: miss, error, old shape
    await cache.put(f"user:{user_id}", row.to_json())
    await cache.invalidate(f"user:{user_id}")         # after the change has committed
    await cache.run("usage_put", script(keys=[...]))  # any other command, same tolerance

`VersionedCache` holds entries as a hash `{version, value}`. Writers store the state they
committed together with its version (a row's sequence number); `put_if_newer` replaces the
entry only when the stored version is older, in one Lua call, so a slow reader filling the
cache with what it read before a write cannot overwrite the newer state the writer stored
after it. The same call can PUBLISH the value on a channel, so subscribers of a row see every
change that reaches the cache, in any process (`SharedSubscriber`: one connection per process
for all of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import redis.asyncio as redis
from prometheus_client import Counter
from redis.exceptions import NoScriptError

from loyalnest.platform.errors import Unavailable
from loyalnest.platform.observability import get_logger

log = get_logger(__name__)

CACHE_LOOKUPS = Counter(
    "loyalnest_cache_lookups_total", "Cache lookups by cache and result.", ["cache", "result"]
)
CACHE_ERRORS = Counter(
    "loyalnest_cache_errors_total", "Redis errors of a cache by operation.", ["cache", "operation"]
)
T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

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


class RedisCache:
    def __init__(self, client: redis.Redis, *, name: str, ttl_seconds: int) -> None:
        self.client = client
        self.name = name
        self.ttl_seconds = ttl_seconds

    @classmethod
    def from_url(cls, url: str, *, name: str, ttl_seconds: int) -> RedisCache:
        return cls(client_from_url(url), name=name, ttl_seconds=ttl_seconds)

    async def run(self, operation: str, call: Awaitable[T]) -> T | None:
        """Awaits a Redis command; None (and a counted error) when Redis failed."""
        try:
            return await call
        except REDIS_ERRORS as exc:
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
        except REDIS_ERRORS as exc:
            # The entry may now be served stale until it expires: worth a warning.
            CACHE_ERRORS.labels(self.name, "invalidate").inc()
            log.warning("cache invalidation failed", cache=self.name, key=key, error=repr(exc))

    async def close(self) -> None:
        await self.client.aclose()


@dataclass(frozen=True)
class VersionedEntry:
    """What `VersionedCache.put_many_if_newer` stores, as `put_if_newer`'s arguments."""

    key: str
    version: int
    value: bytes
    channel: str | None = None


class VersionedCache:
    def __init__(self, client: redis.Redis, *, name: str, ttl_seconds: float) -> None:
        self._client = client
        self._name = name
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._put = client.register_script(_PUT_IF_NEWER)
        # Bound once: a lookup per read is on the hot path (`labels` locks and validates).
        self._hits = CACHE_LOOKUPS.labels(name, "hit")
        self._misses = CACHE_LOOKUPS.labels(name, "miss")

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
        if value is None:
            self._misses.inc()
            return None
        self._hits.inc()
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

    async def put_many_if_newer(self, entries: Sequence[VersionedEntry]) -> None:
        """`put_if_newer` for each entry, in one round trip (a pipeline); on a Redis error
        every entry is dropped, as `put_if_newer` drops its one."""
        if not entries:
            return
        try:
            try:
                await self._put_pipelined(entries)
            except NoScriptError:
                # Redis restarted or flushed its scripts: load it, then put again (an entry
                # put twice is stored once; its subscribers may see it twice, as a newest).
                await self._client.script_load(_PUT_IF_NEWER)
                await self._put_pipelined(entries)
        except REDIS_ERRORS as exc:
            CACHE_ERRORS.labels(self._name, "put").inc()
            log.warning(
                "cache update failed; dropping the entries", cache=self._name, error=repr(exc)
            )
            for entry in entries:
                await self.delete(entry.key)

    async def _put_pipelined(self, entries: Sequence[VersionedEntry]) -> None:
        # EVALSHA by hand: a pipeline given the script object asks Redis whether it has the
        # script (SCRIPT EXISTS) before every execute, a second round trip per batch.
        async with self._client.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.evalsha(
                    self._put.sha,
                    1,
                    entry.key,
                    entry.version,
                    entry.value,
                    self._ttl_ms,
                    entry.channel or "",
                )
            await pipe.execute()

    async def delete(self, key: str) -> None:
        try:
            await self._client.delete(key)
        except REDIS_ERRORS as exc:
            # The entry may now be served stale until it expires: worth a warning.
            CACHE_ERRORS.labels(self._name, "delete").inc()
            log.warning("cache invalidation failed", cache=self._name, key=key, error=repr(exc))

    async def close(self) -> None:
        await self._client.aclose()


# What a subscriber reads: a message, or RESYNC when the shared connection was lost and
# messages may have been missed (the subscriber re-reads the state it follows).
RESYNC = None
_SUBSCRIBER_QUEUE = 8
_IDLE_SECONDS = 5.0


class SharedSubscriber:
    """One Redis pub/sub connection per process for every subscriber of channels matching
    `pattern` (PSUBSCRIBE), fanned out in-process by channel.

    A connection per subscriber (a StreamPoints call each) let one client open as many Redis
    connections as it had calls: the pool is unbounded, and so Redis' and the process' file
    descriptors were anyone's to exhaust. Here the count of connections is one, however many
    subscribers; they cost a queue each. Every process receives every message of the
    pattern, a fair price for balance changes, which are small and few per customer.

        shared = SharedSubscriber(client, "points:stream:*", name="points_stream")
        async with shared.subscription("points:stream:m:c") as messages:
            ...  # subscribed on entry: read the current state now, then follow `messages`
        await shared.close()

    Each subscriber's queue keeps the newest `_SUBSCRIBER_QUEUE` messages: a reader that
    falls behind loses the oldest, which suits channels of snapshots (the newest wins). When
    the connection is lost, every subscriber gets RESYNC, and the connection is re-opened
    with backoff; new subscribers wait for it up to `ready_timeout_seconds`, then Unavailable.
    """

    def __init__(
        self,
        client: redis.Redis,
        pattern: str,
        *,
        name: str,
        ready_timeout_seconds: float = 2.0,
    ) -> None:
        self._client = client
        self._pattern = pattern
        self._name = name
        self._ready_timeout = ready_timeout_seconds
        self._subscribers: dict[str, set[asyncio.Queue[bytes | None]]] = {}
        self._followers: dict[str, list[Callable[[bytes | None], None]]] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def subscribers(self) -> int:
        return sum(map(len, self._subscribers.values()))

    @property
    def connected(self) -> bool:
        """Subscribed now: whatever is published from here on reaches this process."""
        return self._ready.is_set()

    def follow(self, channel: str, on_message: Callable[[bytes | None], None]) -> None:
        """Calls `on_message` with every message on `channel`, in order and none dropped (no
        queue: it runs on the subscription's task, so it must not block), and with RESYNC when
        the connection was lost. For followers that keep state from the messages (a mirror),
        which a snapshot queue's drops would corrupt. Opens the connection if needed; must be
        called from the running loop."""
        self._followers.setdefault(channel, []).append(on_message)
        self._start()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    @contextlib.asynccontextmanager
    async def subscription(self, channel: str) -> AsyncIterator[AsyncIterator[bytes | None]]:
        """Messages published on `channel` from the moment this returns (RESYNC after a lost
        connection). Raises Unavailable when Redis cannot be reached."""
        self._start()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(_SUBSCRIBER_QUEUE)
        self._subscribers.setdefault(channel, set()).add(queue)
        try:
            try:
                await asyncio.wait_for(self._ready.wait(), self._ready_timeout)
            except TimeoutError:
                raise Unavailable(
                    "the live updates' Redis is unreachable; retry later", retry_after_seconds=1
                ) from None

            async def messages() -> AsyncIterator[bytes | None]:
                while True:
                    yield await queue.get()

            yield messages()
        finally:
            queue_set = self._subscribers.get(channel)
            if queue_set is not None:
                queue_set.discard(queue)
                if not queue_set:
                    del self._subscribers[channel]

    def _deliver(self, channel: str, message: bytes | None) -> None:
        for on_message in self._followers.get(channel, ()):
            on_message(message)
        for queue in self._subscribers.get(channel, ()):
            if queue.full():
                queue.get_nowait()  # the oldest goes: a newer snapshot follows
            queue.put_nowait(message)

    async def _run(self) -> None:
        delay = 0.1
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.psubscribe(self._pattern)
                unanswered_pings = 0
                while True:
                    # A read timeout of its own: the client's socket timeout is short.
                    message = await pubsub.get_message(timeout=_IDLE_SECONDS)
                    if message is None:
                        # A connection cut without a FIN (a partition) just goes quiet, and
                        # followers would trust it for ever: ask, and drop it unanswered.
                        if unanswered_pings >= 2:
                            raise redis.ConnectionError("the subscription stopped answering")
                        unanswered_pings += 1
                        await pubsub.ping()
                        continue
                    unanswered_pings = 0
                    if message["type"] == "psubscribe":
                        self._ready.set()
                        delay = 0.1
                    elif message["type"] == "pmessage":
                        channel, data = message["channel"], message["data"]
                        self._deliver(
                            channel.decode() if isinstance(channel, bytes) else channel,
                            data.encode() if isinstance(data, str) else data,
                        )
            except REDIS_ERRORS as exc:
                CACHE_ERRORS.labels(self._name, "subscribe").inc()
                log.warning("shared subscription lost", cache=self._name, error=repr(exc))
                if self._ready.is_set():
                    self._ready.clear()
                    for channel in {*self._subscribers, *self._followers}:
                        self._deliver(channel, RESYNC)
            finally:
                with contextlib.suppress(*REDIS_ERRORS):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class ProcessMemo(Generic[K, T]):
    """Values this process remembers for `ttl_seconds`: for data read on a hot path that
    another process may change (a copy of Core's settings), where staleness up to the TTL
    is acceptable and the writer in this process calls `forget`. Unbounded: keys are few
    (merchants), not per request."""

    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: dict[K, tuple[float, T]] = {}

    def get(self, key: K) -> T | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def put(self, key: K, value: T) -> None:
        self._entries[key] = (self._clock() + self._ttl, value)

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)
