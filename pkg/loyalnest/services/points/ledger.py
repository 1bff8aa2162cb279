"""Every ledger change and balance read goes through `Ledger`: the store plus the balance cache.

Balances are cached in Redis under `points:customer:{merchant_id}:{customer_id}` (the seed's
`points:customer:{id}` plus the merchant: customer ids are only unique within a merchant, so
the seed's key would let two shops' customers with the same id read each other's balance).
The entry holds the serialized `PointsBalance` and its ledger sequence:

- after every posting that took effect (earn, redeem, adjust, reversal, whoever posts it: RPCs,
  the redemption flow, offline sync, event consumers) the committed snapshot is stored before
  the call returns, only if newer than the entry (`VersionedCache.put_if_newer`), and published
  on `points:stream:{merchant_id}:{customer_id}` for StreamPoints subscribers in every process;
- a read miss fills the entry with what the store returned, again only if newer, so a read
  racing a write can never replace the writer's newer snapshot;
- a replayed posting (same idempotency key) stores nothing: its snapshot may be old.

So once a write has returned, reads see its balance or a later one. If Redis fails during the
update, the entry is dropped; if that fails too, the entry may be stale until it expires
(`points_balance_cache_ttl_seconds`), which is logged and counted.

StreamPoints (`watch`) is held to limits, so that one merchant cannot exhaust it for all:
every stream of a process shares one Redis connection (`SharedSubscriber`, PSUBSCRIBE of
`points:stream:*`), a merchant holds at most `StreamLimits.per_merchant` streams per process
and a process at most `per_process` in all; beyond either, RESOURCE_EXHAUSTED with RetryInfo
(and `retry-after`, 429 over REST).
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import Gauge

from loyalnest.gen.points.v1 import points_pb2
from loyalnest.platform.cache import (
    RESYNC,
    SharedSubscriber,
    VersionedCache,
    VersionedEntry,
    key_part,
)
from loyalnest.platform.errors import ResourceExhausted, Unavailable
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.personal_data import CustomerExport, CustomerRef
from loyalnest.services.points.domain import (
    Balance,
    Posting,
    PostingResult,
    Redemption,
    RedemptionGuard,
    Reward,
)
from loyalnest.services.points.orders import OrderEarning
from loyalnest.services.points.store.base import LedgerStore, OrderCredit
from loyalnest.services.points.wire import balance_proto

CACHE_NAME = "points_balance"
STREAM_PATTERN = "points:stream:*"
OPEN_STREAMS = Gauge("loyalnest_points_streams_open", "StreamPoints calls this process serves.")


def balance_key(merchant_id: str, customer_id: str) -> str:
    return f"points:customer:{key_part(merchant_id)}:{customer_id}"


def _ledger_ids(customer: CustomerRef) -> list[str]:
    return list(dict.fromkeys((customer.shopify_customer_id, *customer.user_ids)))


def stream_channel(merchant_id: str, customer_id: str) -> str:
    return f"points:stream:{key_part(merchant_id)}:{customer_id}"


@dataclass(frozen=True)
class StreamLimits:
    """Concurrent StreamPoints calls one process serves (settings points_stream_*)."""

    per_merchant: int = 100
    per_process: int = 2000
    # A stream is long-lived: a slot frees when a client goes, not within milliseconds.
    retry_after_seconds: float = 30.0


class _StreamSlots:
    def __init__(self, limits: StreamLimits) -> None:
        self._limits = limits
        self._by_merchant: collections.Counter[str] = collections.Counter()
        self._total = 0

    @contextlib.contextmanager
    def slot(self, merchant_id: str) -> Iterator[None]:
        limits = self._limits
        if self._by_merchant[merchant_id] >= limits.per_merchant:
            raise ResourceExhausted(
                f"this merchant has {limits.per_merchant} StreamPoints calls open on this"
                " instance, the most allowed; close one or retry later",
                retry_after_seconds=limits.retry_after_seconds,
            )
        if self._total >= limits.per_process:
            raise ResourceExhausted(
                f"this Points instance serves its maximum of {limits.per_process} StreamPoints"
                " calls; retry later",
                retry_after_seconds=limits.retry_after_seconds,
            )
        self._by_merchant[merchant_id] += 1
        self._total += 1
        OPEN_STREAMS.inc()
        try:
            yield
        finally:
            self._total -= 1
            OPEN_STREAMS.dec()
            self._by_merchant[merchant_id] -= 1
            if not self._by_merchant[merchant_id]:
                del self._by_merchant[merchant_id]


class Ledger:
    def __init__(
        self,
        store: LedgerStore,
        cache: VersionedCache | None,
        *,
        subscriber: SharedSubscriber | None = None,
        stream_limits: StreamLimits | None = None,
    ) -> None:
        """`subscriber` (on `cache`'s Redis, STREAM_PATTERN) serves `watch`; without it, or
        without `cache`, StreamPoints is UNAVAILABLE."""
        self.store = store
        self.cache = cache
        self._subscriber = subscriber
        self._streams = _StreamSlots(stream_limits or StreamLimits())

    # --- personal data (the platform contract: the store, then the balance cache) ---------

    # A customer's ledgers: under their Shopify id (orders, the storefront) and under their
    # Users accounts' ids (opened when Users announces a customer account).

    async def export_customer(self, merchant_id: str, customer: CustomerRef) -> CustomerExport:
        sections: dict[str, object] = {}
        for customer_id in _ledger_ids(customer):
            export = await self.store.export_customer(merchant_id, CustomerRef(customer_id))
            if export.data:
                sections[customer_id] = dict(export.data)
        return CustomerExport({"ledgers": sections} if sections else {})

    async def erase_customer(self, merchant_id: str, customer: CustomerRef) -> int:
        erased = 0
        for customer_id in _ledger_ids(customer):
            erased += await self.store.erase_customer(merchant_id, customer.only(customer_id))
            if self.cache is not None:
                await self.cache.client.delete(balance_key(merchant_id, customer_id))
        return erased

    async def erase_merchant(self, merchant_id: str) -> int:
        erased = await self.store.erase_merchant(merchant_id)
        if self.cache is not None:
            pattern = balance_key(merchant_id, "*")
            async for key in self.cache.client.scan_iter(match=pattern, count=500):
                await self.cache.client.delete(key)
        return erased

    async def balance(self, merchant_id: str, customer_id: str) -> points_pb2.PointsBalance:
        """Raises LedgerNotFound when the customer has no ledger (not cached)."""
        key = balance_key(merchant_id, customer_id)
        if self.cache is not None:
            cached = await self.cache.get(key)
            if cached is not None:
                return points_pb2.PointsBalance.FromString(cached)
        balance = balance_proto(await self.store.get_balance(merchant_id, customer_id))
        if self.cache is not None:
            await self.cache.put_if_newer(key, balance.sequence, balance.SerializeToString())
        return balance

    async def watch(
        self, merchant_id: str, customer_id: str
    ) -> AsyncIterator[points_pb2.PointsBalance]:
        """The current balance, then each newer one published by any process, until the
        caller stops. Subscribes before reading, so no change between the two is missed."""
        if self.cache is None or self._subscriber is None:
            raise Unavailable("StreamPoints needs Redis (LOYALNEST_REDIS_URL) on this service")
        channel = stream_channel(merchant_id, customer_id)
        with self._streams.slot(merchant_id):
            async with self._subscriber.subscription(channel) as changes:
                current = await self.balance(merchant_id, customer_id)
                yield current
                async for raw in changes:
                    if raw is RESYNC:  # changes may have been missed: read the balance again
                        change = await self.balance(merchant_id, customer_id)
                    else:
                        change = points_pb2.PointsBalance.FromString(raw)
                    if change.sequence > current.sequence:
                        current = change
                        yield current

    async def post(self, posting: Posting, key: IdempotencyKey) -> PostingResult:
        result = await self.store.post(posting, key)
        if not result.replayed:
            await self.committed(posting.merchant_id, result.balance)
        return result

    async def redeem(
        self, posting: Posting, key: IdempotencyKey, reward: Reward, guard: RedemptionGuard
    ) -> tuple[PostingResult, Redemption]:
        """A reward's debit and its redemption (store.redeem), then the cache as `post`."""
        result, redemption = await self.store.redeem(posting, key, reward, guard)
        if not result.replayed:
            await self.committed(posting.merchant_id, result.balance)
        return result, redemption

    async def approve_order(
        self, merchant_id: str, order_id: str, credit: OrderCredit | None
    ) -> None:
        """store.approve_order (the credit and APPROVED together), then the cache as `post`."""
        result = await self.store.approve_order(merchant_id, order_id, credit)
        if result is not None and not result.replayed:
            await self.committed(merchant_id, result.balance)

    async def record_approved_order(
        self, earning: OrderEarning, credit: OrderCredit | None
    ) -> tuple[OrderEarning, bool]:
        """store.record_approved_order, then the cache as `post`: (the stored order, inserted)."""
        stored, inserted, result = await self.store.record_approved_order(earning, credit)
        if result is not None and not result.replayed:
            await self.committed(earning.merchant_id, result.balance)
        return stored, inserted

    async def record_approved_orders(
        self, items: Sequence[tuple[OrderEarning, OrderCredit]]
    ) -> list[tuple[OrderEarning, bool] | None]:
        """store.record_approved_orders, then the cache as `post`, for every credit in one
        round trip: per item (the stored order, inserted), or None for one the store did not
        record (record it with record_approved_order)."""
        recorded = await self.store.record_approved_orders(items)
        await self._committed_many(
            [
                (earning.merchant_id, result.balance)
                for earning, _, result in filter(None, recorded)
                if result is not None and not result.replayed
            ]
        )
        return [None if answer is None else answer[:2] for answer in recorded]

    async def committed(self, merchant_id: str, balance: Balance) -> None:
        """Publishes a snapshot the store has committed: cache and stream subscribers."""
        if self.cache is not None:
            entry = _cache_entry(merchant_id, balance)
            await self.cache.put_if_newer(
                entry.key, entry.version, entry.value, channel=entry.channel
            )

    async def _committed_many(self, balances: Sequence[tuple[str, Balance]]) -> None:
        if self.cache is not None:
            await self.cache.put_many_if_newer(
                [_cache_entry(merchant_id, balance) for merchant_id, balance in balances]
            )


def _cache_entry(merchant_id: str, balance: Balance) -> VersionedEntry:
    return VersionedEntry(
        balance_key(merchant_id, balance.customer_id),
        balance.sequence,
        balance_proto(balance).SerializeToString(),
        channel=stream_channel(merchant_id, balance.customer_id),
    )
