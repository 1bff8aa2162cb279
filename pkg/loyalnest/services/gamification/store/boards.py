"""Leaderboards as Redis sorted sets, per merchant and period (PostgreSQL keeps the record).

Per board two sorted sets: `ranked` holds every customer with a score (own ranks come from
it: an opted-out customer is still ranked), `listed` those shown in listings. A `built`
marker says the board was loaded from PostgreSQL; when Redis lost it (a flush, an eviction,
a restart without persistence) a read starts rebuilding it from leaderboard_rankings in the
background (under a lock, so one process does it; ZADD in chunks: one command of a million
members would block Redis for its whole length), and is answered from PostgreSQL meanwhile.
Writers set absolute scores (ZADD, never ZINCRBY): writing a customer's score again is
harmless, and a rebuild racing a writer cannot count an earn twice. Pages are cached briefly
(`leaderboard:{merchant}:...:page:...`).

Every key carries the merchant as a Redis Cluster hash tag (`{merchant}`), so one merchant's
keys live in one slot and a MULTI over them is allowed there.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis

from loyalnest.platform.cache import key_part
from loyalnest.services.gamification.store.postgres import Score

REBUILD_LOCK_SECONDS = 60
# Month and week boards outlive their period a little (last month's board is still asked).
PERIOD_BOARD_TTL_SECONDS = 100 * 24 * 3600


@dataclass(frozen=True)
class BoardKeys:
    merchant_id: str
    period_key: str

    @property
    def _prefix(self) -> str:
        return f"leaderboard:{{{key_part(self.merchant_id)}}}:{key_part(self.period_key)}"

    @property
    def ranked(self) -> str:
        return f"{self._prefix}:ranked"

    @property
    def listed(self) -> str:
        return f"{self._prefix}:listed"

    @property
    def built(self) -> str:
        return f"{self._prefix}:built"

    @property
    def lock(self) -> str:
        return f"{self._prefix}:rebuilding"

    def page(self, offset: int, size: int) -> str:
        return f"{self._prefix}:page:{offset}:{size}"

    @property
    def ttl(self) -> int | None:
        return None if self.period_key == "all" else PERIOD_BOARD_TTL_SECONDS


# A board's rows from PostgreSQL, a chunk at a time: (customer id, score, listed).
Chunks = AsyncIterator[list[tuple[str, int, bool]]]


class RedisBoards:
    def __init__(self, client: redis.Redis, *, page_cache_seconds: float) -> None:
        self._redis = client
        self._page_cache_ms = int(page_cache_seconds * 1000)

    async def close(self) -> None:
        await self._redis.aclose()

    async def set_scores(self, merchant_id: str, scores: Sequence[Score]) -> None:
        """Puts the scores PostgreSQL committed on their boards (absolute, so idempotent)."""
        if not scores:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for score in scores:
                keys = BoardKeys(merchant_id, score.period_key)
                pipe.zadd(keys.ranked, {score.customer_id: score.score})
                if score.listed:
                    pipe.zadd(keys.listed, {score.customer_id: score.score})
                else:
                    pipe.zrem(keys.listed, score.customer_id)
                if keys.ttl:
                    pipe.expire(keys.ranked, keys.ttl)
                    pipe.expire(keys.listed, keys.ttl)
            await pipe.execute()

    async def remove(self, merchant_id: str, customer_id: str, period_keys: Sequence[str]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for period_key in period_keys:
                keys = BoardKeys(merchant_id, period_key)
                pipe.zrem(keys.ranked, customer_id)
                pipe.zrem(keys.listed, customer_id)
            await pipe.execute()

    async def remove_merchant(self, merchant_id: str) -> None:
        """Every board (and cached page) of the merchant."""
        pattern = f"leaderboard:{{{key_part(merchant_id)}}}:*"
        batch: list[bytes] = []
        async for key in self._redis.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await self._redis.delete(*batch)
                batch = []
        if batch:
            await self._redis.delete(*batch)

    async def is_built(self, keys: BoardKeys) -> bool:
        return bool(await self._redis.exists(keys.built))

    async def rebuild(self, keys: BoardKeys, chunks: Chunks) -> bool:
        """Loads the board from `chunks` (PostgreSQL, streamed) into temporary keys and swaps
        them in at once, so a reader never sees half a board. False when another process is
        rebuilding it (its lock), or when Redis lost what it loaded before the swap (a
        flush, an eviction): the board stays unbuilt and the next read starts again."""
        if not await self._redis.set(keys.lock, b"1", nx=True, ex=REBUILD_LOCK_SECONDS):
            return False
        ranked_tmp, listed_tmp = keys.ranked + ":tmp", keys.listed + ":tmp"
        ranked_any = listed_any = False
        try:
            await self._redis.delete(ranked_tmp, listed_tmp)
            async for chunk in chunks:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.zadd(ranked_tmp, {customer: score for customer, score, _ in chunk})
                    listed = {customer: score for customer, score, shown in chunk if shown}
                    if listed:
                        pipe.zadd(listed_tmp, listed)
                    # Still ours: a long rebuild keeps its lock.
                    pipe.expire(keys.lock, REBUILD_LOCK_SECONDS)
                    await pipe.execute()
                ranked_any = ranked_any or bool(chunk)
                listed_any = listed_any or bool(listed)
            async with self._redis.pipeline(transaction=True) as pipe:
                # Aborts (WatchError) if anything touched the loaded keys meanwhile, e.g. an
                # erasure deleting the merchant's keys: no half board is marked built.
                await pipe.watch(ranked_tmp, listed_tmp)
                # ...and keys lost before the watch began: a RENAME of a missing key fails
                # inside EXEC while the rest of it runs, which would mark an empty board built.
                loaded = [
                    key
                    for key, any_ in ((ranked_tmp, ranked_any), (listed_tmp, listed_any))
                    if any_
                ]
                if loaded and await pipe.exists(*loaded) != len(loaded):
                    return False
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.delete(keys.ranked, keys.listed)
                if ranked_any:
                    pipe.rename(ranked_tmp, keys.ranked)
                if listed_any:
                    pipe.rename(listed_tmp, keys.listed)
                pipe.set(keys.built, b"1", ex=keys.ttl)
                if keys.ttl:
                    pipe.expire(keys.ranked, keys.ttl)
                    pipe.expire(keys.listed, keys.ttl)
                await pipe.execute()
        finally:
            await self._redis.delete(keys.lock, ranked_tmp, listed_tmp)
        return True

    async def page(self, keys: BoardKeys, offset: int, size: int) -> list[tuple[str, int]]:
        """Customers `offset` .. `offset + size - 1` of the listing, highest first (cached)."""
        cache_key = keys.page(offset, size)
        if self._page_cache_ms:
            cached = await self._redis.get(cache_key)
            if cached is not None:
                return [(str(c), int(s)) for c, s in json.loads(cached)]
        rows: Any = await self._redis.zrevrange(
            keys.listed, offset, offset + size - 1, withscores=True
        )
        page = [(member.decode(), int(score)) for member, score in rows]
        if self._page_cache_ms:
            await self._redis.set(cache_key, json.dumps(page), px=self._page_cache_ms)
        return page

    async def rank(self, keys: BoardKeys, customer_id: str) -> tuple[int, int] | None:
        """(rank from 1, score) among everyone ranked, opted out included."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrevrank(keys.ranked, customer_id)
            pipe.zscore(keys.ranked, customer_id)
            rank, score = await pipe.execute()
        if rank is None or score is None:
            return None
        return int(rank) + 1, int(score)
