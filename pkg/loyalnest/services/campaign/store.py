"""The Campaign service's campaigns and customers' RFM segments in PostgreSQL (schema
`campaign`).

Every change runs in one transaction with its idempotency key, its audit row and its outbox
event. A change that touches Shopify makes the call inside that transaction, after the row
is locked (`FOR UPDATE`): a retry with the same key waits for the first attempt and gets its
answer, two changes of one campaign run one after the other, and a call that fails rolls the
change back (the key stays free). Holding a connection over an HTTP call is acceptable for
changes this rare (as Core's billing does).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from google.protobuf import json_format
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from loyalnest.gen.campaign.v1 import campaign_pb2 as pb
from loyalnest.gen.events.v1 import rfm_pb2
from loyalnest.platform import audit, idempotency, personal_data
from loyalnest.platform.errors import AlreadyExists
from loyalnest.platform.events import inbox, outbox
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.postgres import Database
from loyalnest.services.campaign import events
from loyalnest.services.campaign.domain import Campaign, CampaignNotFound, state_name

_KIND: dict[int, str] = {
    pb.CAMPAIGN_KIND_SHARED_CODE: "shared_code",
    pb.CAMPAIGN_KIND_AUTOMATIC: "automatic",
    pb.CAMPAIGN_KIND_UNIQUE_CODES: "unique_codes",
}
_KIND_OF: dict[str, int] = {name: kind for kind, name in _KIND.items()}
_STATE_OF = {state_name(s): s for s in pb.CampaignState.values() if s}
_SELECT = (
    "SELECT campaign_id::text AS campaign_id, merchant_id, name, kind, code, rules, audience,"
    " start_at, end_at, state, shopify_discount_id, created_at, updated_at FROM campaigns"
)
CODE_TAKEN = "campaigns_code"


class CodeInUse(AlreadyExists):
    def __init__(self) -> None:
        super().__init__("another campaign of this merchant uses this code: choose another")


def _campaign(row: dict[str, Any]) -> Campaign:
    return Campaign(
        campaign_id=row["campaign_id"],
        merchant_id=row["merchant_id"],
        name=row["name"],
        kind=_KIND_OF[row["kind"]],
        code=row["code"],
        rules=json_format.ParseDict(row["rules"], pb.DiscountRules()),
        audience=json_format.ParseDict(row["audience"], pb.Audience()),
        start_at=row["start_at"],
        end_at=row["end_at"],
        state=_STATE_OF[row["state"]],
        shopify_discount_id=row["shopify_discount_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _json(message: Any) -> Jsonb:
    return Jsonb(json_format.MessageToDict(message, preserving_proto_field_name=True))


# A customer's segment moved (previous, current): Shopify's customer lists follow.
Moved = Callable[[str | None, str], Awaitable[None]]
# A change's effect at Shopify, run with the locked campaign: returns the campaign as it is to
# be saved (state, discount id).
Change = Callable[[AsyncConnection, Campaign], Awaitable[Campaign]]


class CampaignStore:
    def __init__(self, database: Database) -> None:
        self._pool = database.pool

    @staticmethod
    async def _load(
        conn: AsyncConnection, merchant_id: str, campaign_id: str, *, for_update: bool = False
    ) -> Campaign:
        # Always by merchant and id: another merchant's campaign is NOT_FOUND, like a missing one.
        cursor = conn.cursor(row_factory=dict_row)
        lock = " FOR UPDATE" if for_update else ""
        await cursor.execute(
            f"{_SELECT} WHERE merchant_id = %s AND campaign_id = %s{lock}",
            (merchant_id, campaign_id),
        )
        row = await cursor.fetchone()
        if row is None:
            raise CampaignNotFound(campaign_id)
        return _campaign(row)

    async def get(self, merchant_id: str, campaign_id: str) -> Campaign:
        async with self._pool.connection() as conn:
            return await self._load(conn, merchant_id, campaign_id)

    async def page(
        self,
        merchant_id: str,
        *,
        limit: int,
        offset: int,
        state: int | None,
        product_id: str | None,
    ) -> list[Campaign]:
        conditions, params = ["merchant_id = %s"], [merchant_id]
        if state:
            conditions.append("state = %s")
            params.append(state_name(state))
        if product_id:
            conditions.append("product_ids @> ARRAY[%s]")
            params.append(product_id)
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"{_SELECT} WHERE {' AND '.join(conditions)}"
                " ORDER BY created_at DESC, campaign_id LIMIT %s OFFSET %s",
                (*params, limit, offset),
            )
            return [_campaign(row) for row in await cursor.fetchall()]

    async def live(self, merchant_id: str | None = None) -> list[Campaign]:
        """Campaigns whose discount exists at Shopify and is not ended (the reconcile job's
        and the eligibility cache's input), of one merchant or all."""
        where = "state IN ('scheduled', 'active', 'paused')"
        params: tuple[str, ...] = ()
        if merchant_id is not None:
            where += " AND merchant_id = %s"
            params = (merchant_id,)
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(f"{_SELECT} WHERE {where}", params)
            return [_campaign(row) for row in await cursor.fetchall()]

    @staticmethod
    async def _save(conn: AsyncConnection, campaign: Campaign) -> Campaign:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(
            "UPDATE campaigns SET name = %s, kind = %s, code = %s, rules = %s, audience = %s,"
            " product_ids = %s, start_at = %s, end_at = %s, state = %s,"
            " shopify_discount_id = %s, updated_at = now()"
            " WHERE merchant_id = %s AND campaign_id = %s"
            " RETURNING campaign_id::text AS campaign_id, merchant_id, name, kind, code, rules,"
            " audience, start_at, end_at, state, shopify_discount_id, created_at, updated_at",
            (
                campaign.name,
                _KIND[campaign.kind],
                campaign.code,
                _json(campaign.rules),
                _json(campaign.audience),
                list(campaign.rules.product_ids),
                campaign.start_at,
                campaign.end_at,
                state_name(campaign.state),
                campaign.shopify_discount_id,
                campaign.merchant_id,
                campaign.campaign_id,
            ),
        )
        row = await cursor.fetchone()
        assert row is not None  # locked by the caller
        return _campaign(row)

    async def create(
        self,
        merchant_id: str,
        draft: Campaign,
        *,
        key: IdempotencyKey,
        publish: Change | None,
    ) -> Campaign:
        """A new campaign, once per key; `publish` (if given) makes it live in the same
        transaction. campaign.created announces it."""

        async def insert(conn: AsyncConnection) -> tuple[Campaign, str]:
            campaign_id = str(uuid.uuid4())
            await conn.execute(
                "INSERT INTO campaigns (campaign_id, merchant_id, name, kind, code, rules,"
                " audience, product_ids, start_at, end_at, state)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'draft')",
                (
                    campaign_id,
                    merchant_id,
                    draft.name,
                    _KIND[draft.kind],
                    draft.code,
                    _json(draft.rules),
                    _json(draft.audience),
                    list(draft.rules.product_ids),
                    draft.start_at,
                    draft.end_at,
                ),
            )
            campaign = await self._load(conn, merchant_id, campaign_id, for_update=True)
            if publish is not None:
                campaign = await self._save(conn, await publish(conn, campaign))
            await outbox.enqueue(conn, merchant_id, events.campaign_created(campaign))
            return campaign, campaign_id

        return await idempotency.write_once(
            self._pool,
            merchant_id,
            key,
            write=insert,
            replay=lambda conn, campaign_id: self._load(conn, merchant_id, campaign_id),
            audited=True,
            unique_errors={CODE_TAKEN: CodeInUse},
        )

    async def change(
        self, merchant_id: str, campaign_id: str, *, key: IdempotencyKey, change: Change
    ) -> Campaign:
        """`change` applied to the locked campaign once per key; campaign.state_changed
        when its state moved."""

        async def write(conn: AsyncConnection) -> tuple[Campaign, str]:
            before = await self._load(conn, merchant_id, campaign_id, for_update=True)
            after = await self._save(conn, await change(conn, before))
            if after.state != before.state:
                await outbox.enqueue(conn, merchant_id, events.state_changed(after, before.state))
            return after, campaign_id

        return await idempotency.write_once(
            self._pool,
            merchant_id,
            key,
            write=write,
            replay=lambda conn, ref: self._load(conn, merchant_id, ref),
            audited=True,
            unique_errors={CODE_TAKEN: CodeInUse},
        )

    async def reconcile(
        self, merchant_id: str, campaign_id: str, change: Change, actor: str
    ) -> Campaign | None:
        """`change` on the campaign if no one else holds it (SKIP LOCKED: a change in
        flight wins, the next round looks again); the campaign after, None when skipped."""
        async with audit.transaction(self._pool, actor) as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"{_SELECT} WHERE merchant_id = %s AND campaign_id = %s FOR UPDATE SKIP LOCKED",
                (merchant_id, campaign_id),
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            before = _campaign(row)
            after = await change(conn, before)
            if after == before:
                return before
            saved = await self._save(conn, after)
            if saved.state != before.state:
                await outbox.enqueue(conn, merchant_id, events.state_changed(saved, before.state))
            return saved

    # ---- audiences ------------------------------------------------------------------------

    @staticmethod
    async def members(
        conn: AsyncConnection, merchant_id: str, segments: Sequence[str]
    ) -> list[str]:
        cursor = await conn.execute(
            "SELECT customer_id FROM customer_segments"
            " WHERE merchant_id = %s AND segment = ANY(%s) ORDER BY customer_id",
            (merchant_id, list(segments)),
        )
        return [row[0] for row in await cursor.fetchall()]

    async def segment_of(self, merchant_id: str, customer_id: str) -> str | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT segment FROM customer_segments WHERE merchant_id = %s AND customer_id = %s",
                (merchant_id, customer_id),
            )
            row = await cursor.fetchone()
        return None if row is None else str(row[0])

    async def apply_rfm(
        self, event: ConsumedEvent, customer_id: str, segment: int, *, moved: Moved
    ) -> bool:
        """Keeps the newest segment of a customer; False when the event was applied before.
        `moved(previous, current)` runs inside the transaction when the segment changed: its
        failure (Shopify not answering) rolls the event back for the consumer to retry."""
        async with self._pool.connection() as conn, conn.transaction():
            if not await inbox.claim(conn, event):
                return False
            cursor = await conn.execute(
                "SELECT segment FROM customer_segments"
                " WHERE merchant_id = %s AND customer_id = %s FOR UPDATE",
                (event.merchant_id, customer_id),
            )
            before = await cursor.fetchone()
            cursor = await conn.execute(
                "INSERT INTO customer_segments (merchant_id, customer_id, segment, scored_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (merchant_id, customer_id) DO UPDATE"
                " SET segment = excluded.segment, scored_at = excluded.scored_at"
                " WHERE customer_segments.scored_at < excluded.scored_at RETURNING segment",
                (
                    event.merchant_id,
                    customer_id,
                    rfm_pb2.RfmSegment.Name(segment),
                    event.occurred_at,
                ),
            )
            after = await cursor.fetchone()
            previous = None if before is None else str(before[0])
            if after is not None and str(after[0]) != previous:
                await moved(previous, str(after[0]))
        return True

    # ---- personal data (issue 18's contract) ----------------------------------------------

    async def export_customer(self, merchant_id: str, customer_id: str) -> dict[str, Any]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT segment, scored_at FROM customer_segments"
                " WHERE merchant_id = %s AND customer_id = %s",
                (merchant_id, customer_id),
            )
            row = await cursor.fetchone()
        if row is None:
            return {}
        return {"rfm_segment": {"segment": row[0], "scored_at": row[1].isoformat()}}

    async def erase_customer(self, merchant_id: str, customer_id: str) -> int:
        """The customer's RFM segment; returns the rows deleted (0 on a repeat)."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM customer_segments WHERE merchant_id = %s AND customer_id = %s",
                (merchant_id, customer_id),
            )
            return cursor.rowcount

    async def erase_merchant(self, merchant_id: str) -> int:
        async with self._pool.connection() as conn, conn.transaction():
            erased = (
                await conn.execute(
                    "DELETE FROM customer_segments WHERE merchant_id = %s", (merchant_id,)
                )
            ).rowcount
            erased += (
                await conn.execute("DELETE FROM campaigns WHERE merchant_id = %s", (merchant_id,))
            ).rowcount
            erased += await personal_data.erase_platform_rows(conn, merchant_id)
        return erased
