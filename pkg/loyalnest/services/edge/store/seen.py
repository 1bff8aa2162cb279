"""The Redis fast path of webhook deduplication.

Shopify redelivers the same event several times (retries, duplicates); most redeliveries end
here with one Redis round trip instead of a PostgreSQL transaction. The table
`webhook_idempotency_keys` stays the authority: a key missing from Redis (expired, flushed,
Redis away) only means the database decides, so no event is ever published twice.
"""

from __future__ import annotations

from loyalnest.platform.cache import RedisCache
from loyalnest.services.edge.webhooks import Delivery


def seen_key(delivery: Delivery) -> str:
    return f"webhook_seen:{delivery.shop_domain}:{delivery.event_id}"


class SeenDeliveries:
    def __init__(self, cache: RedisCache) -> None:
        self._cache = cache

    @classmethod
    def from_url(cls, url: str, ttl_seconds: int) -> SeenDeliveries:
        return cls(RedisCache.from_url(url, name="webhook_seen", ttl_seconds=ttl_seconds))

    async def seen(self, delivery: Delivery) -> bool:
        """False also when Redis failed: the database decides then."""
        return bool(await self._cache.run("exists", self._cache.client.exists(seen_key(delivery))))

    async def remember(self, delivery: Delivery) -> None:
        """After the record committed: later deliveries stop at Redis."""
        await self._cache.put(seen_key(delivery), b"1")

    async def close(self) -> None:
        await self._cache.close()
