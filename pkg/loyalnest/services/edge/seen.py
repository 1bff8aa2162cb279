"""The Redis fast path of webhook deduplication.

Shopify redelivers the same event several times (retries, duplicates); most redeliveries end
here with one Redis round trip instead of a PostgreSQL transaction. The table
`webhook_idempotency_keys` stays the authority: a key missing from Redis (expired, flushed,
Redis away) only means the database decides, so no event is ever published twice.
"""

from __future__ import annotations

import redis.asyncio as redis
from prometheus_client import Counter

from loyalnest.services.edge.webhooks import Delivery

LOOKUP_ERRORS = Counter(
    "loyalnest_webhook_seen_errors_total", "Redis errors of the webhook dedupe fast path."
)


def seen_key(delivery: Delivery) -> str:
    return f"webhook_seen:{delivery.shop_domain}:{delivery.event_id}"


class SeenDeliveries:
    def __init__(self, client: redis.Redis | None, ttl_seconds: int) -> None:
        self._client = client
        self._ttl = ttl_seconds

    @classmethod
    def from_url(cls, url: str | None, ttl_seconds: int) -> SeenDeliveries:
        if url is None:
            return cls(None, ttl_seconds)
        client = redis.Redis.from_url(url, socket_timeout=0.1, socket_connect_timeout=0.1)
        return cls(client, ttl_seconds)

    async def seen(self, delivery: Delivery) -> bool:
        if self._client is None:
            return False
        try:
            return bool(await self._client.exists(seen_key(delivery)))
        except (redis.RedisError, OSError):
            LOOKUP_ERRORS.inc()
            return False

    async def remember(self, delivery: Delivery) -> None:
        """After the record committed: later deliveries stop at Redis."""
        if self._client is None:
            return
        try:
            await self._client.set(seen_key(delivery), b"1", ex=self._ttl)
        except (redis.RedisError, OSError):
            LOOKUP_ERRORS.inc()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
