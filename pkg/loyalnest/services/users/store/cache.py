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

from loyalnest.platform.cache import RedisCache


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
    def __init__(self, cache: RedisCache) -> None:
        self._cache = cache

    @classmethod
    def from_url(cls, url: str, *, ttl_seconds: int) -> UserCache:
        return cls(RedisCache.from_url(url, name="users", ttl_seconds=ttl_seconds))

    async def get(self, user_id: str) -> UserRow | None:
        return await self._cache.get(cache_key(user_id), UserRow.from_json)

    async def put(self, row: UserRow) -> None:
        await self._cache.put(cache_key(row.user_id), row.to_json())

    async def invalidate(self, user_id: str) -> None:
        await self._cache.invalidate(cache_key(user_id))

    async def close(self) -> None:
        await self._cache.close()
