"""Leaderboards (domain sub-area): reading a board from Redis, rebuilt from PostgreSQL when
Redis lost it, answered from PostgreSQL when Redis cannot answer; putting committed scores on
the Redis boards.

Redis is an optimisation here as everywhere: a Redis error costs a read a slower answer from
PostgreSQL (the same order: score, then customer id, descending), and a score write that did
not reach Redis is repaired by the next write of that customer or the next rebuild (counted
in `loyalnest_gamification_board_errors_total`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter

from loyalnest.platform.cache import REDIS_ERRORS
from loyalnest.platform.observability import get_logger
from loyalnest.services.gamification.domain import Period, period_key, period_keys
from loyalnest.services.gamification.store.boards import (
    BoardKeys,
    BoardNotReady,
    Loader,
    RedisBoards,
)
from loyalnest.services.gamification.store.postgres import GamificationStore, Score

log = get_logger(__name__)

BOARD_ERRORS = Counter(
    "loyalnest_gamification_board_errors_total",
    "Leaderboard operations Redis could not do (answered from PostgreSQL or repaired later).",
    ["operation"],
)
BOARD_REBUILDS = Counter(
    "loyalnest_gamification_board_rebuilds_total",
    "Leaderboards rebuilt in Redis from PostgreSQL.",
)


@dataclass(frozen=True)
class Entry:
    rank: int
    customer_id: str
    score: int


@dataclass(frozen=True)
class BoardPage:
    period_key: str
    entries: list[Entry]
    own: Entry | None
    # Whether a next page may exist (this one was full).
    full: bool


class Leaderboards:
    def __init__(self, store: GamificationStore, boards: RedisBoards | None) -> None:
        self._store = store
        self._boards = boards

    async def publish_scores(
        self, merchant_id: str, customer_id: str, keys: Sequence[str] | None = None
    ) -> None:
        """Puts the customer's committed scores (all their boards by default) on Redis."""
        if self._boards is None:
            return
        keys = (
            keys if keys is not None else await self._store.period_keys_of(merchant_id, customer_id)
        )
        scores = await self._store.scores_of(merchant_id, customer_id, keys)
        try:
            await self._boards.set_scores(merchant_id, scores)
        except REDIS_ERRORS as exc:
            BOARD_ERRORS.labels("set_scores").inc()
            log.warning("leaderboard scores not in redis", error=repr(exc))

    async def publish_earn(self, merchant_id: str, customer_id: str, moment: datetime) -> None:
        await self.publish_scores(merchant_id, customer_id, period_keys(moment))

    async def read(
        self,
        merchant_id: str,
        period: Period,
        now: datetime,
        *,
        offset: int,
        size: int,
        customer_id: str,
    ) -> BoardPage:
        key = period_key(period, now)
        rows, own = None, None
        if self._boards is not None:
            keys = BoardKeys(merchant_id, key)
            try:
                await self._boards.ensure_built(keys, self._loader(merchant_id, key))
                rows = await self._boards.page(keys, offset, size)
                own = await self._boards.rank(keys, customer_id) if customer_id else None
            except BoardNotReady:
                rows = None
            except REDIS_ERRORS as exc:
                BOARD_ERRORS.labels("read").inc()
                log.warning("leaderboard read from postgres", error=repr(exc))
                rows = None
        if rows is None:
            rows = await self._store.page(merchant_id, key, offset, size)
            own = await self._store.rank(merchant_id, key, customer_id) if customer_id else None
        entries = [
            Entry(offset + index + 1, customer, score)
            for index, (customer, score) in enumerate(rows)
        ]
        own_entry = Entry(own[0], customer_id, own[1]) if own else None
        return BoardPage(key, entries, own_entry, full=len(rows) == size)

    def _loader(self, merchant_id: str, key: str) -> Loader:
        async def load() -> list[Score]:
            BOARD_REBUILDS.inc()
            return await self._store.board(merchant_id, key)

        return load

    async def forget(self, merchant_id: str, customer_id: str, keys: Sequence[str]) -> None:
        if self._boards is None:
            return
        try:
            await self._boards.remove(merchant_id, customer_id, keys)
        except REDIS_ERRORS:
            BOARD_ERRORS.labels("remove").inc()
