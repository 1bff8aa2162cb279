"""Revoked token ids in Redis (`revoked_jti:{jti}`), kept until the token would expire."""

from __future__ import annotations

import time

import redis.asyncio as redis
from prometheus_client import Counter

from loyalnest.platform.observability import get_logger

log = get_logger(__name__)

REVOCATION_CHECK_FAILURES = Counter(
    "loyalnest_auth_revocation_check_failures_total",
    "Revocation checks that could not reach Redis (the call was let through).",
)


def revocation_key(token_id: str) -> str:
    return f"revoked_jti:{token_id}"


class RevocationList:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    @classmethod
    def from_url(cls, url: str) -> RevocationList:
        return cls(redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5))

    async def revoke(self, token_id: str, expires_at: int) -> None:
        ttl = max(1, expires_at - int(time.time()))
        await self._client.set(revocation_key(token_id), "1", ex=ttl)

    async def spend(self, token_id: str, expires_at: int) -> bool:
        """Marks a single-use id as used; False if it already was. Unlike `is_revoked` this
        fails closed (raises) when Redis cannot answer: a replay must not slip through."""
        ttl = max(1, expires_at - int(time.time()))
        return bool(await self._client.set(revocation_key(token_id), "1", ex=ttl, nx=True))

    async def is_revoked(self, token_id: str) -> bool:
        try:
            return bool(await self._client.exists(revocation_key(token_id)))
        except (redis.RedisError, OSError) as exc:
            # Fail open: access tokens live 15 minutes, and a Redis outage must not take every
            # service down with it. Counted so an alert can catch it.
            REVOCATION_CHECK_FAILURES.inc()
            log.warning("revocation check failed; allowing", error=repr(exc))
            return False

    async def close(self) -> None:
        await self._client.aclose()
