"""ApplyCampaign's answers from Redis: which live campaigns apply to a customer and a cart.

Keys (all with a TTL, so a write lost between PostgreSQL and Redis heals by itself):
- `campaigns:{merchant_id}`: a hash of the merchant's live campaigns, field `campaign_id`, value
  the campaign's eligibility entry (JSON) -- the seed's `campaign:{campaign_id}` entries, kept
  as the fields of one hash per merchant so that one `HGETALL` reads them all in a single round
  trip (and a Redis Cluster keeps a merchant's entries in one slot). The field `-` marks a hash
  that was built (a merchant without live campaigns has just the marker); a missing hash means
  "rebuild from PostgreSQL";
- `campaign_segment:{merchant_id}:{customer_id}`: the customer's RFM segment, `-` for none,
  written by the rfm.updated consumer and on a miss.

A change of a campaign drops its merchant's hash (the next call rebuilds it: one query), so a
hash never misses a campaign nor keeps a stale one. A call is one Redis round trip (`HGETALL`
and `GET` pipelined) and no PostgreSQL; entries are decoded once per process (memo by their
bytes). Redis failing falls back to PostgreSQL, slower but right.

Why here and not in Products (where the seed lists the RPC): the campaign, its audience and
its state are Campaign's, written in the same transaction that talks to Shopify; serving
eligibility from Products would need a second copy kept in step by events, and one more hop
for the widget.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import redis.asyncio as redis
from google.protobuf import json_format

from loyalnest.gen.campaign.v1 import campaign_pb2 as pb
from loyalnest.platform.cache import REDIS_ERRORS, key_part
from loyalnest.platform.errors import Unavailable
from loyalnest.platform.observability import get_logger
from loyalnest.services.campaign.domain import (
    LIVE,
    Campaign,
    CartView,
    applies,
    customer_code,
    eligibility_entry,
)
from loyalnest.services.campaign.store import CampaignStore

log = get_logger(__name__)
_MARKER = "-"
_MARKER_BYTES = _MARKER.encode()
# Decoded entries remembered per process, by their bytes.
_MEMO_SIZE = 10_000
# A cached entry and its answer.
Decoded = tuple[dict[str, Any], pb.ApplicableCampaign]


def _raw(campaign: Campaign) -> bytes:
    return json.dumps(_entry(campaign), sort_keys=True).encode()


def _entry(campaign: Campaign) -> dict[str, Any]:
    return eligibility_entry(campaign) | {
        "name": campaign.name,
        "kind": int(campaign.kind),
        "code": campaign.code,
        "rules": json_format.MessageToDict(campaign.rules, preserving_proto_field_name=True),
    }


def _applicable(entry: dict[str, Any]) -> pb.ApplicableCampaign:
    found = pb.ApplicableCampaign(
        campaign_id=entry["campaign_id"],
        name=entry["name"],
        kind=entry["kind"],
        code=entry["code"],
        rules=json_format.ParseDict(entry["rules"], pb.DiscountRules()),
    )
    if entry["end"] is not None:
        found.end_time.FromMilliseconds(int(entry["end"] * 1000))
    return found


class Eligibility:
    def __init__(
        self, client: redis.Redis | None, store: CampaignStore, *, ttl_seconds: int
    ) -> None:
        # client None: no Redis configured, every answer comes from PostgreSQL.
        self._redis = client
        self._store = store
        self._ttl = ttl_seconds
        # Segments are written by the rfm.updated consumer as they change: they may live long.
        self._segment_ttl = max(ttl_seconds, 24 * 3600)
        self._memo: dict[bytes, Decoded] = {}

    @staticmethod
    def _set_key(merchant_id: str) -> str:
        return f"campaigns:{key_part(merchant_id)}"

    @staticmethod
    def _segment_key(merchant_id: str, customer_id: str) -> str:
        return f"campaign_segment:{key_part(merchant_id)}:{key_part(customer_id)}"

    async def changed(self, campaign: Campaign) -> None:
        """After a campaign's change committed: its merchant's hash dropped (rebuilt on the
        next call)."""
        if self._redis is None:
            return
        try:
            await self._redis.delete(self._set_key(campaign.merchant_id))
        except REDIS_ERRORS as exc:
            # Served stale until the keys expire (TTL): worth a warning.
            log.warning("campaign cache not updated", error=repr(exc))

    async def segment_changed(self, merchant_id: str, customer_id: str, segment: str) -> None:
        if self._redis is None:
            return
        try:
            await self._redis.set(
                self._segment_key(merchant_id, customer_id), segment, ex=self._segment_ttl
            )
        except REDIS_ERRORS as exc:
            log.warning("segment cache not updated", error=repr(exc))

    # ---- personal data: the store's rows and the segment cached here (ByShopifyId) --------

    async def export_customer(self, merchant_id: str, customer_id: str) -> dict[str, Any]:
        return await self._store.export_customer(merchant_id, customer_id)

    async def erase_customer(self, merchant_id: str, customer_id: str) -> int:
        """The customer's segment row and its cached copy (whose key names them). Redis
        failing fails the erasure: AdminCore retries it, the copy would outlive it."""
        erased = await self._store.erase_customer(merchant_id, customer_id)
        if self._redis is not None:
            try:
                erased += int(await self._redis.delete(self._segment_key(merchant_id, customer_id)))
            except REDIS_ERRORS as exc:
                raise Unavailable("the segment cache could not be erased; retry") from exc
        return erased

    async def erase_merchant(self, merchant_id: str) -> int:
        erased = await self._store.erase_merchant(merchant_id)
        if self._redis is not None:
            try:
                keys = [self._set_key(merchant_id)]
                pattern = f"campaign_segment:{key_part(merchant_id)}:*"
                keys += [key async for key in self._redis.scan_iter(match=pattern, count=1000)]
                erased += int(await self._redis.delete(*keys))
            except REDIS_ERRORS as exc:
                raise Unavailable("the campaign cache could not be erased; retry") from exc
        return erased

    async def apply(
        self, merchant_id: str, customer_id: str, cart: CartView
    ) -> list[pb.ApplicableCampaign]:
        entries, segment = await self._read(merchant_id, customer_id)
        now = time.time()
        found = []
        for entry, answer in sorted(entries, key=lambda e: e[0]["campaign_id"]):
            if entry["merchant_id"] != merchant_id or not applies(entry, segment, cart, now):
                continue
            if entry.get("unique_codes"):
                # The customer's own code (a copy: the memo's answer is shared).
                own = pb.ApplicableCampaign()
                own.CopyFrom(answer)
                own.code = customer_code(merchant_id, entry["campaign_id"], customer_id)
                answer = own
            found.append(answer)
        return found

    def _decoded(self, raw: bytes) -> Decoded:
        found = self._memo.get(raw)
        if found is None:
            entry = json.loads(raw)
            found = (entry, _applicable(entry))
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()  # entries change rarely: a full reset is cheap enough
            self._memo[raw] = found
        return found

    async def _read(self, merchant_id: str, customer_id: str) -> tuple[list[Decoded], str | None]:
        if self._redis is None:
            return await self._from_database(merchant_id, customer_id)
        try:
            return await self._from_redis(merchant_id, customer_id)
        except REDIS_ERRORS as exc:
            log.warning("campaign cache unavailable; reading PostgreSQL", error=repr(exc))
            return await self._from_database(merchant_id, customer_id)

    async def _from_database(
        self, merchant_id: str, customer_id: str
    ) -> tuple[list[Decoded], str | None]:
        live = [c for c in await self._store.live(merchant_id) if c.state in LIVE]
        entries = [self._decoded(_raw(c)) for c in live]
        return entries, await self._store.segment_of(merchant_id, customer_id)

    async def _from_redis(
        self, merchant_id: str, customer_id: str
    ) -> tuple[list[Decoded], str | None]:
        assert self._redis is not None
        hash_key = self._set_key(merchant_id)
        segment_key = self._segment_key(merchant_id, customer_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(hash_key)
            pipe.get(segment_key)
            fields, cached_segment = await pipe.execute()
        if fields:
            raws = [raw for field, raw in fields.items() if field != _MARKER_BYTES]
        else:
            raws = await self._rebuild(merchant_id)
        if cached_segment is None:
            segment = await self._store.segment_of(merchant_id, customer_id)
            await self._redis.set(segment_key, segment or _MARKER, ex=self._segment_ttl)
        else:
            segment = cached_segment.decode()
        return [self._decoded(r) for r in raws], None if segment == _MARKER else segment

    async def _rebuild(self, merchant_id: str) -> list[bytes]:
        assert self._redis is not None
        live = [c for c in await self._store.live(merchant_id) if c.state in LIVE]
        raws: dict[str | bytes, bytes] = {c.campaign_id: _raw(c) for c in live}
        hash_key = self._set_key(merchant_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(hash_key)
            pipe.hset(hash_key, mapping={_MARKER: b"", **raws})  # type: ignore[dict-item]
            pipe.expire(hash_key, self._ttl)
            await pipe.execute()
        return list(raws.values())


def cart_view(cart: pb.Cart) -> CartView:
    return CartView(
        subtotal=Decimal(cart.subtotal or "0"),
        product_ids=frozenset(cart.product_ids),
        collection_ids=frozenset(cart.collection_ids),
    )
