"""Revoked token ids in Redis (`revoked_jti:{jti}`), kept until the token would expire.

Every authenticated call asks whether its token was revoked. Asking Redis each time was a
round trip per call, ~90 µs of the caller's CPU (redis-py is pure Python): a sixth of a
cheap read's cost in every service. A service's interceptor therefore keeps a **mirror**:

- `revoke` publishes the id on `REVOCATIONS_CHANNEL` in the same transaction as it stores it;
- the mirror follows that channel over the process' one subscription connection
  (`SharedSubscriber`) and remembers revoked ids until their tokens expire;
- a token Redis said was not revoked is remembered as such, and answered from memory while
  the subscription has been up without a break since Redis was asked, for at most
  `recheck_seconds`: a lost connection forgets every such answer, and the recheck bounds
  what a message lost any other way (an Auth of an older release that did not publish)
  could cost.

A revocation thus reaches every service within the channel's delivery time (milliseconds)
instead of on the next call; `RevokeToken` does not wait for it. Auth's own checks
(`ValidateToken`, refresh) read Redis directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis.asyncio as redis
from prometheus_client import Counter

from loyalnest.platform.cache import RESYNC, SharedSubscriber
from loyalnest.platform.observability import get_logger

log = get_logger(__name__)

REVOCATION_CHECK_FAILURES = Counter(
    "loyalnest_auth_revocation_check_failures_total",
    "Revocation checks that could not reach Redis (the call was let through).",
)
REVOCATION_CHECKS = Counter(
    "loyalnest_auth_revocation_checks_total",
    "Revocation checks by where they were answered (mirror: in memory; redis: a round trip).",
    ["answered_by"],
)
REVOCATIONS_CHANNEL = "auth:revocations"
_CHECKED_BY_MIRROR = REVOCATION_CHECKS.labels("mirror")
_CHECKED_BY_REDIS = REVOCATION_CHECKS.labels("redis")


def revocation_key(token_id: str) -> str:
    return f"revoked_jti:{token_id}"


class RevocationList:
    def __init__(self, client: redis.Redis, *, mirror: RevocationMirror | None = None) -> None:
        self._client = client
        self._mirror = mirror

    @classmethod
    def from_url(cls, url: str, *, mirrored: bool = False) -> RevocationList:
        """`mirrored`: answer checks from a mirror of the list (a service's interceptor)."""
        client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        subscriber = (
            SharedSubscriber(client, REVOCATIONS_CHANNEL, name="revocations") if mirrored else None
        )
        return cls(client, mirror=RevocationMirror(subscriber) if subscriber else None)

    async def revoke(self, token_id: str, expires_at: int) -> None:
        ttl = max(1, expires_at - int(time.time()))
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(revocation_key(token_id), "1", ex=ttl)
            pipe.publish(REVOCATIONS_CHANNEL, f"{token_id} {expires_at}")
            await pipe.execute()

    async def spend(self, token_id: str, expires_at: int) -> bool:
        """Marks a single-use id as used; False if it already was. Unlike `is_revoked` this
        fails closed (raises) when Redis cannot answer: a replay must not slip through."""
        ttl = max(1, expires_at - int(time.time()))
        return bool(await self._client.set(revocation_key(token_id), "1", ex=ttl, nx=True))

    async def is_revoked(self, token_id: str, expires_at: int | None = None) -> bool:
        """`expires_at` (the token's `exp`) bounds how long the mirror remembers the answer."""
        mirror = self._mirror
        if mirror is not None:
            known = mirror.answer(token_id)
            if known is not None:
                _CHECKED_BY_MIRROR.inc()
                return known
            asked = mirror.before_asking()
        _CHECKED_BY_REDIS.inc()
        try:
            revoked = bool(await self._client.exists(revocation_key(token_id)))
        except (redis.RedisError, OSError) as exc:
            # Fail open: access tokens live 15 minutes, and a Redis outage must not take every
            # service down with it. Counted so an alert can catch it.
            REVOCATION_CHECK_FAILURES.inc()
            log.warning("revocation check failed; allowing", error=repr(exc))
            return False
        if mirror is not None and not revoked:
            mirror.remember_valid(token_id, expires_at, asked)
        return revoked

    async def close(self) -> None:
        if self._mirror is not None:
            await self._mirror.close()
        await self._client.aclose()


class RevocationMirror:
    """This process' copy of the revocation list: revoked ids from the channel, and ids Redis
    said were valid while the channel's subscription held (see the module's docstring)."""

    def __init__(
        self,
        subscriber: SharedSubscriber,
        *,
        recheck_seconds: float = 30.0,
        max_valid: int = 20_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._subscriber = subscriber
        self._recheck_seconds = recheck_seconds
        self._max_valid = max_valid
        self._clock = clock
        self._revoked: dict[str, float] = {}  # id -> when its token expires (epoch seconds)
        self._valid: dict[str, float] = {}  # id -> until when the answer may be reused
        # Bumped when the subscription breaks: an answer read across a break is not kept.
        self._generation = 0
        self._following = False
        self._next_prune = 0.0

    def answer(self, token_id: str) -> bool | None:
        """True/False from memory, or None: ask Redis (and pass the result on)."""
        if not self._following:
            self._following = True
            self._subscriber.follow(REVOCATIONS_CHANNEL, self._on_message)
        if token_id in self._revoked:
            return True
        valid_until = self._valid.get(token_id)
        if valid_until is None or not self._subscriber.connected:
            return None
        if valid_until <= self._clock():
            del self._valid[token_id]
            return None
        return False

    def before_asking(self) -> int | None:
        """A mark to pass to `remember_valid`: None if nothing read now may be kept."""
        return self._generation if self._subscriber.connected else None

    def remember_valid(self, token_id: str, expires_at: int | None, asked: int | None) -> None:
        if asked is None or asked != self._generation or not self._subscriber.connected:
            return
        now = self._clock()
        until = now + self._recheck_seconds
        if expires_at is not None:
            until = min(until, expires_at)
        if len(self._valid) >= self._max_valid:
            self._valid = {k: v for k, v in self._valid.items() if v > now}
            if len(self._valid) >= self._max_valid:
                del self._valid[next(iter(self._valid))]  # the oldest answer goes
        self._valid[token_id] = until

    def _on_message(self, message: bytes | None) -> None:
        if message is RESYNC:
            self._generation += 1
            self._valid.clear()
            return
        token_id, _, expires = message.decode().rpartition(" ")
        try:
            expires_at = float(expires)
        except ValueError:
            log.warning("unreadable revocation message", message=message[:200])
            return
        self._valid.pop(token_id, None)
        now = self._clock()
        if now >= self._next_prune:
            # Revoked ids are never dropped before their tokens expire: their number is the
            # number of live revoked tokens, whatever it is.
            self._revoked = {k: v for k, v in self._revoked.items() if v > now}
            self._next_prune = now + self._recheck_seconds
        if expires_at > now:
            self._revoked[token_id] = expires_at

    async def close(self) -> None:
        await self._subscriber.close()
