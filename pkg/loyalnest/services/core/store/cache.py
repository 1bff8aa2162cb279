"""Core's Redis keys (seed §1), both caches of PostgreSQL, never the record:

- `config:{merchant_id}`: the merchant's program (serialized ProgramSettings), read-through,
  dropped after every change has committed, expiring after a TTL regardless.
- `usage:{merchant_id}`: a hash `<metric>:<period>` -> count. Written after each committed
  count with the committed value, and only upwards (a Lua compare-and-set): two writers
  finishing out of order never leave the smaller count behind. When the hash is lost, usage
  is read from PostgreSQL again and the hash refilled.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import DecodeError

from loyalnest.platform.cache import RedisCache
from loyalnest.services.core.domain import ProgramSettings

# KEYS[1] the hash, ARGV: ttl, then field/value pairs; each field only ever grows.
_RAISE_COUNTS = """
for i = 2, #ARGV, 2 do
  local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1')
  if tonumber(ARGV[i + 1]) > current then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""


def config_key(merchant_id: str) -> str:
    return f"config:{merchant_id}"


def usage_key(merchant_id: str) -> str:
    return f"usage:{merchant_id}"


def usage_field(metric: str, period: str) -> str:
    return f"{metric}:{period}"


def _decode_program(raw: bytes) -> ProgramSettings:
    try:
        return ProgramSettings.FromString(raw)
    except DecodeError as exc:
        raise ValueError("not a ProgramSettings") from exc


class ProgramCache:
    def __init__(self, cache: RedisCache) -> None:
        self._cache = cache

    async def get(self, merchant_id: str) -> ProgramSettings | None:
        return await self._cache.get(config_key(merchant_id), _decode_program)

    async def put(self, merchant_id: str, settings: ProgramSettings) -> None:
        await self._cache.put(config_key(merchant_id), settings.SerializeToString())

    async def invalidate(self, merchant_id: str) -> None:
        await self._cache.invalidate(config_key(merchant_id))


class UsageCache:
    def __init__(self, cache: RedisCache) -> None:
        self._cache = cache
        self._raise_counts = cache.client.register_script(_RAISE_COUNTS)

    async def get(self, merchant_id: str, fields: list[str]) -> dict[str, int] | None:
        """The counts of every field, or None when any is missing (then read PostgreSQL)."""
        values = await self._cache.run(
            "usage_get", self._cache.client.hmget(usage_key(merchant_id), fields)
        )
        if values is None or any(value is None for value in values):
            return None
        return {field: int(value or 0) for field, value in zip(fields, values, strict=True)}

    async def raise_counts(self, merchant_id: str, counts: Mapping[str, int]) -> None:
        args: list[str | int] = [self._cache.ttl_seconds]
        for field, value in counts.items():
            args += [field, value]
        await self._cache.run(
            "usage_put", self._raise_counts(keys=[usage_key(merchant_id)], args=args)
        )
