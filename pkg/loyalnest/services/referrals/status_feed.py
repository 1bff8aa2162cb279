"""Live referral status: every change of a referral's conversions is announced on the Redis
Stream `referral:status:{referral_id}` (the seed's name), after the change committed; a
StreamReferralStatus call blocks on that stream (XREAD) and re-reads the status from
PostgreSQL on each entry, so what it sends is always the stored truth, within milliseconds of
the change. An entry lost (Redis down at that moment) delays nothing but that update: the next
change, or the stream's periodic re-read, brings the status up to date.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from loyalnest.platform.observability import get_logger

log = get_logger(__name__)

# Entries kept per referral: readers only need the latest; a reconnecting one re-reads anyway.
MAX_ENTRIES = 50
# A stream re-reads the status at least this often, even without an entry (a lost one).
BLOCK_MILLISECONDS = 15_000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def stream_key(referral_id: str) -> str:
    return f"referral:status:{referral_id}"


class StatusFeed:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    async def announce(self, referral_ids: Iterable[str]) -> None:
        for referral_id in set(referral_ids):
            try:
                await self._client.xadd(
                    stream_key(referral_id), {"changed": "1"}, maxlen=MAX_ENTRIES, approximate=True
                )
            except RedisError as error:
                log.warning(
                    "referral status not announced", referral_id=referral_id, error=str(error)
                )

    async def position(self, referral_id: str) -> str:
        """The stream's latest entry id: taken before the status is read, so a change
        between that read and the first wait is not missed."""
        latest: Any = await self._client.xrevrange(stream_key(referral_id), count=1)
        return _text(latest[0][0]) if latest else "0-0"

    async def changes(self, referral_id: str, since: str) -> AsyncIterator[None]:
        """Yields once per change announced after `since` (and at least every
        BLOCK_MILLISECONDS); ends never."""
        key = stream_key(referral_id)
        last = since
        while True:
            entries: Any = await self._client.xread(
                {key: last}, block=BLOCK_MILLISECONDS, count=100
            )
            for _, messages in entries or []:
                if messages:
                    last = _text(messages[-1][0])
            yield None

    async def close(self) -> None:
        await self._client.aclose()
