"""ApplyCampaign's answers from Redis: which live campaigns apply to a customer and a cart.

Keys (all with a TTL, so a write lost between PostgreSQL and Redis heals by itself):
- `campaign:{campaign_id}`: a live campaign's eligibility entry (JSON, its merchant inside);
- `campaigns:{merchant_id}`: the ids of the merchant's live campaigns, plus the marker `-`
  (the set exists, even when empty: a missing set means "rebuild from PostgreSQL");
- `campaign_segment:{merchant_id}:{customer_id}`: the customer's RFM segment, `-` for none.

A change of a campaign rewrites its entry and drops the merchant's set (the next call
rebuilds it from PostgreSQL: one query), so a set is never missing a campaign. The common
call is two Redis round trips (set and segment in one pipeline, then the entries) and no
PostgreSQL. Redis failing falls back to PostgreSQL, slower but right.

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
from loyalnest.platform.observability import get_logger
from loyalnest.services.campaign.domain import (
    LIVE,
    Campaign,
    CartView,
    applies,
    eligibility_entry,
)
from loyalnest.services.campaign.store import CampaignStore

log = get_logger(__name__)
_MARKER = "-"


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

    @staticmethod
    def _set_key(merchant_id: str) -> str:
        return f"campaigns:{key_part(merchant_id)}"

    @staticmethod
    def _segment_key(merchant_id: str, customer_id: str) -> str:
        return f"campaign_segment:{key_part(merchant_id)}:{key_part(customer_id)}"

    async def changed(self, campaign: Campaign) -> None:
        """After a campaign's change committed: its entry rewritten, its merchant's set
        dropped (rebuilt on the next call)."""
        if self._redis is None:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                if campaign.state in LIVE:
                    pipe.set(
                        f"campaign:{campaign.campaign_id}",
                        json.dumps(_entry(campaign)),
                        ex=self._ttl,
                    )
                else:
                    pipe.delete(f"campaign:{campaign.campaign_id}")
                pipe.delete(self._set_key(campaign.merchant_id))
                await pipe.execute()
        except REDIS_ERRORS as exc:
            # Served stale until the keys expire (TTL): worth a warning.
            log.warning("campaign cache not updated", error=repr(exc))

    async def segment_changed(self, merchant_id: str, customer_id: str, segment: str) -> None:
        if self._redis is None:
            return
        try:
            await self._redis.set(
                self._segment_key(merchant_id, customer_id), segment, ex=self._ttl
            )
        except REDIS_ERRORS as exc:
            log.warning("segment cache not updated", error=repr(exc))

    async def apply(
        self, merchant_id: str, customer_id: str, cart: CartView
    ) -> list[pb.ApplicableCampaign]:
        entries, segment = await self._read(merchant_id, customer_id)
        now = time.time()
        return [
            _applicable(entry)
            for entry in sorted(entries, key=lambda e: e["campaign_id"])
            if entry["merchant_id"] == merchant_id and applies(entry, segment, cart, now)
        ]

    async def _read(
        self, merchant_id: str, customer_id: str
    ) -> tuple[list[dict[str, Any]], str | None]:
        if self._redis is None:
            return await self._from_database(merchant_id, customer_id)
        try:
            return await self._from_redis(merchant_id, customer_id)
        except REDIS_ERRORS as exc:
            log.warning("campaign cache unavailable; reading PostgreSQL", error=repr(exc))
            return await self._from_database(merchant_id, customer_id)

    async def _from_database(
        self, merchant_id: str, customer_id: str
    ) -> tuple[list[dict[str, Any]], str | None]:
        live = [c for c in await self._store.live(merchant_id) if c.state in LIVE]
        return [_entry(c) for c in live], await self._store.segment_of(merchant_id, customer_id)

    async def _from_redis(
        self, merchant_id: str, customer_id: str
    ) -> tuple[list[dict[str, Any]], str | None]:
        assert self._redis is not None
        set_key = self._set_key(merchant_id)
        segment_key = self._segment_key(merchant_id, customer_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.smembers(set_key)
            pipe.get(segment_key)
            members, cached_segment = await pipe.execute()
        ids = sorted(m.decode() for m in members if m.decode() != _MARKER)
        raw = await self._redis.mget([f"campaign:{i}" for i in ids]) if ids else []
        if not members or any(r is None for r in raw):
            entries = await self._rebuild(merchant_id)
        else:
            entries = [json.loads(r) for r in raw if r is not None]
        if cached_segment is None:
            segment = await self._store.segment_of(merchant_id, customer_id)
            await self._redis.set(segment_key, segment or _MARKER, ex=self._ttl)
        else:
            segment = cached_segment.decode()
        return entries, None if segment == _MARKER else segment

    async def _rebuild(self, merchant_id: str) -> list[dict[str, Any]]:
        assert self._redis is not None
        live = [c for c in await self._store.live(merchant_id) if c.state in LIVE]
        entries = [_entry(c) for c in live]
        set_key = self._set_key(merchant_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            for entry in entries:
                pipe.set(f"campaign:{entry['campaign_id']}", json.dumps(entry), ex=self._ttl)
            pipe.delete(set_key)
            pipe.sadd(set_key, _MARKER, *[e["campaign_id"] for e in entries])
            pipe.expire(set_key, self._ttl)
            await pipe.execute()
        return entries


def cart_view(cart: pb.Cart) -> CartView:
    return CartView(
        subtotal=Decimal(cart.subtotal or "0"),
        product_ids=frozenset(cart.product_ids),
        collection_ids=frozenset(cart.collection_ids),
    )
