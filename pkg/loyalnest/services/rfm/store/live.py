"""RFM's Redis: segment previews cached per merchant (`rfm:preview:{merchant_id}`, a hash of
answers by definition) and the channel of scatter updates (`rfm:stream:{merchant_id}`).

Redis is a cache and a wire here, never the record: a lost preview is recomputed, a missed
update is corrected by the next one or by reopening the stream.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator

import redis.asyncio as redis

from loyalnest.platform.cache import REDIS_ERRORS, SharedSubscriber, key_part
from loyalnest.platform.errors import Unavailable
from loyalnest.platform.observability import get_logger

log = get_logger(__name__)

STREAM_PATTERN = "rfm:stream:*"
# Previews are answers about now: a minute at most, and dropped at every rescore.
PREVIEW_TTL_SECONDS = 60


def preview_key(merchant_id: str) -> str:
    return f"rfm:preview:{key_part(merchant_id)}"


def stream_channel(merchant_id: str) -> str:
    return f"rfm:stream:{key_part(merchant_id)}"


class Live:
    def __init__(self, client: redis.Redis | None) -> None:
        self._client = client
        self._subscriber = (
            None if client is None else SharedSubscriber(client, STREAM_PATTERN, name="rfm_stream")
        )

    @staticmethod
    def _field(definition: bytes) -> str:
        return hashlib.sha256(definition).hexdigest()

    async def cached_preview(self, merchant_id: str, definition: bytes) -> bytes | None:
        """The answer cached for this (deterministically serialized) definition."""
        if self._client is None:
            return None
        try:
            raw = await self._client.hget(preview_key(merchant_id), self._field(definition))
        except REDIS_ERRORS as exc:
            log.debug("preview cache read failed", error=repr(exc))
            return None
        return None if raw is None else raw if isinstance(raw, bytes) else raw.encode()

    async def cache_preview(self, merchant_id: str, definition: bytes, answer: bytes) -> None:
        if self._client is None:
            return
        key = preview_key(merchant_id)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(key, self._field(definition), answer)
                # NX: the hash expires a minute after its first answer, however many follow.
                pipe.expire(key, PREVIEW_TTL_SECONDS, nx=True)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            log.debug("preview cache write failed", error=repr(exc))

    async def drop_previews(self, merchant_id: str) -> None:
        if self._client is None:
            return
        try:
            await self._client.delete(preview_key(merchant_id))
        except REDIS_ERRORS as exc:
            # Stale previews then live out their minute.
            log.warning("preview cache invalidation failed", error=repr(exc))

    async def publish(self, merchant_id: str, message: bytes) -> None:
        if self._client is None:
            return
        try:
            await self._client.publish(stream_channel(merchant_id), message)
        except REDIS_ERRORS as exc:
            log.warning("scatter update not published", error=repr(exc))

    @contextlib.asynccontextmanager
    async def updates(self, merchant_id: str) -> AsyncIterator[AsyncIterator[bytes | None]]:
        """Scatter updates from now on (None: the connection was lost, resynchronise)."""
        if self._subscriber is None:
            raise Unavailable("live updates need the service's Redis (LOYALNEST_REDIS_URL)")
        async with self._subscriber.subscription(stream_channel(merchant_id)) as messages:
            yield messages

    async def close(self) -> None:
        if self._subscriber is not None:
            await self._subscriber.close()
        if self._client is not None:
            await self._client.aclose()
