"""Read-through cache of user rows in Redis, `user:{user_id}` (seed §6).

It holds rows as stored, email still encrypted: a Redis dump or a `MONITOR` session must not
show plaintext PII, and decrypting is microseconds. Entries are dropped after every change
and expire after `ttl_seconds` regardless, which bounds how long a read racing a change
(reads the old row, writes it back after the change dropped the key) can serve stale data.

Redis is an optimisation here: when it is away, reads go to PostgreSQL.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis.asyncio as redis
from prometheus_client import Counter

from loyalnest.platform.observability import get_logger

log = get_logger(__name__)

CACHE_LOOKUPS = Counter(
    "loyalnest_users_cache_lookups_total", "user:{id} cache lookups by result.", ["result"]
)
CACHE_ERRORS = Counter(
    "loyalnest_users_cache_errors_total", "Redis errors of the user cache.", ["operation"]
)


@dataclass(frozen=True)
class UserRow:
    """A users row as stored: the email is ciphertext."""

    user_id: str
    merchant_id: str
    seq: int
    kind: str
    email_ciphertext: bytes | None
    role_id: str | None
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> str:
        data: dict[str, Any] = {
            **self.__dict__,
            "email_ciphertext": (
                base64.b64encode(self.email_ciphertext).decode() if self.email_ciphertext else None
            ),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> UserRow:
        data = json.loads(text)
        ciphertext = data["email_ciphertext"]
        return cls(
            **{
                **data,
                "email_ciphertext": base64.b64decode(ciphertext) if ciphertext else None,
                "created_at": datetime.fromisoformat(data["created_at"]),
                "updated_at": datetime.fromisoformat(data["updated_at"]),
            }
        )


def cache_key(user_id: str) -> str:
    return f"user:{user_id}"


class UserCache:
    def __init__(self, client: redis.Redis, *, ttl_seconds: int) -> None:
        self._client = client
        self._ttl = ttl_seconds

    @classmethod
    def from_url(cls, url: str, *, ttl_seconds: int) -> UserCache:
        # Short timeouts: a slow Redis must cost a read little more than a miss.
        client = redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
        return cls(client, ttl_seconds=ttl_seconds)

    async def get(self, user_id: str) -> UserRow | None:
        try:
            raw = await self._client.get(cache_key(user_id))
        except (redis.RedisError, OSError) as exc:
            CACHE_ERRORS.labels("get").inc()
            log.debug("user cache read failed", error=repr(exc))
            return None
        if raw is None:
            CACHE_LOOKUPS.labels("miss").inc()
            return None
        try:
            row = UserRow.from_json(raw)
        except (ValueError, KeyError, TypeError):
            # Written by an older release with another shape: treat as a miss.
            CACHE_LOOKUPS.labels("invalid").inc()
            return None
        CACHE_LOOKUPS.labels("hit").inc()
        return row

    async def put(self, row: UserRow) -> None:
        try:
            await self._client.set(cache_key(row.user_id), row.to_json(), ex=self._ttl)
        except (redis.RedisError, OSError) as exc:
            CACHE_ERRORS.labels("put").inc()
            log.debug("user cache write failed", error=repr(exc))

    async def invalidate(self, user_id: str) -> None:
        try:
            await self._client.delete(cache_key(user_id))
        except (redis.RedisError, OSError) as exc:
            # The entry may now be served stale until it expires: worth a warning.
            CACHE_ERRORS.labels("invalidate").inc()
            log.warning("user cache invalidation failed", user_id=user_id, error=repr(exc))

    async def close(self) -> None:
        await self._client.aclose()
