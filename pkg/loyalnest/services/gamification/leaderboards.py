"""Leaderboards (domain sub-area): reading a board from Redis, rebuilt from PostgreSQL when
Redis lost it, answered from PostgreSQL when Redis cannot answer; putting committed scores on
the Redis boards.

A board Redis lost is rebuilt in the background and read from PostgreSQL until it is back.
Redis is an optimisation here as everywhere: a Redis error costs a read a slower answer from
PostgreSQL (the same order: score, then customer id, descending), and a score write that did
not reach Redis is repaired by the next write of that customer or the next rebuild (counted
in `loyalnest_gamification_board_errors_total`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from loyalnest.platform.cache import REDIS_ERRORS
from loyalnest.platform.observability import get_logger
from loyalnest.platform.personal_data import CustomerExport, CustomerRef
from loyalnest.services.gamification.domain import Period, period_key, period_keys
from loyalnest.services.gamification.store.boards import BoardKeys, RedisBoards
from loyalnest.services.gamification.store.postgres import GamificationStore

log = get_logger(__name__)

BOARD_ERRORS = Counter(
    "loyalnest_gamification_board_errors_total",
    "Leaderboard operations Redis could not do (answered from PostgreSQL or repaired later).",
    ["operation"],
)
REBUILD_CATCH_UP_MARGIN = timedelta(seconds=30)
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
        # Rebuilds running in this process, by board key: one at a time per board.
        self._rebuilds: dict[str, asyncio.Task[None]] = {}

    async def close(self) -> None:
        for task in list(self._rebuilds.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._boards is not None:
            await self._boards.close()

    def _rebuild_in_background(self, keys: BoardKeys) -> None:
        """Starts rebuilding a board Redis lost, detached from the request that noticed: a
        million-customer board takes longer than a call may wait, and a cancelled call must
        not abandon it halfway."""
        running = self._rebuilds.get(keys.ranked)
        if running is not None and not running.done():
            return
        boards = self._boards
        assert boards is not None

        async def rebuild() -> None:
            # Writes that commit while the snapshot is read may miss it and land on the keys
            # the rebuild then replaces: scores written since a little before it started are
            # put back afterwards (absolute, so harmless twice). The margin covers clock skew
            # between this process and PostgreSQL.
            since = datetime.now(UTC) - REBUILD_CATCH_UP_MARGIN
            try:
                chunks = self._store.board(keys.merchant_id, keys.period_key)
                if await boards.rebuild(keys, chunks):
                    BOARD_REBUILDS.inc()
                    missed = await self._store.changed_since(
                        keys.merchant_id, keys.period_key, since
                    )
                    await boards.set_scores(keys.merchant_id, missed)
            except Exception as exc:  # Redis or PostgreSQL away: the next read tries again
                BOARD_ERRORS.labels("rebuild").inc()
                log.warning("leaderboard rebuild failed", error=repr(exc))
            finally:
                self._rebuilds.pop(keys.ranked, None)

        self._rebuilds[keys.ranked] = asyncio.create_task(rebuild())

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
                if await self._boards.is_built(keys):
                    rows = await self._boards.page(keys, offset, size)
                    own = await self._boards.rank(keys, customer_id) if customer_id else None
                else:
                    self._rebuild_in_background(keys)
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

    # ---- the personal-data contract (PostgreSQL's record and the Redis boards together) --

    async def export_customer(self, merchant_id: str, customer: CustomerRef) -> CustomerExport:
        """Badges, counters and scores of the Shopify customer (customers are Shopify ids)."""
        data = await self._store.export_customer(merchant_id, customer.shopify_customer_id)
        return CustomerExport(data=data)

    async def _settle_rebuilds(self, merchant_id: str) -> None:
        """Waits for this process' rebuilds of the merchant's boards: one that read its
        snapshot before an erasure would put the erased scores back. (A rebuild in another
        replica can still do so until that board's next rebuild: see README.)"""
        prefix = BoardKeys(merchant_id, "").ranked.rsplit(":", 2)[0]
        running = [t for key, t in self._rebuilds.items() if key.startswith(prefix)]
        for task in running:
            with contextlib.suppress(Exception):
                await task

    async def erase_customer(self, merchant_id: str, customer: CustomerRef) -> int:
        """The customer's rows and their places on the Redis boards; a Redis that cannot
        answer fails the step (AdminCore retries it), since the boards hold the id."""
        await self._settle_rebuilds(merchant_id)
        customer_id = customer.shopify_customer_id
        keys = await self._store.period_keys_of(merchant_id, customer_id)
        erased = await self._store.erase_customer(merchant_id, customer_id)
        if self._boards is not None:
            try:
                await self._boards.remove(merchant_id, customer_id, keys)
            except REDIS_ERRORS:
                BOARD_ERRORS.labels("remove").inc()
                raise
        return erased

    async def erase_merchant(self, merchant_id: str) -> int:
        await self._settle_rebuilds(merchant_id)
        erased = await self._store.erase_merchant(merchant_id)
        if self._boards is not None:
            await self._boards.remove_merchant(merchant_id)
        return erased
