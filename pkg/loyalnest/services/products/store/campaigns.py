"""Campaigns as Campaign announces them (campaign.created, campaign.state_changed): enough to
answer which campaigns touch a product, without a call to Campaign per read."""

from __future__ import annotations

from loyalnest.platform.events import inbox
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.postgres import Database


class CampaignsStore:
    def __init__(self, database: Database) -> None:
        self._pool = database.pool

    async def apply(
        self,
        event: ConsumedEvent,
        *,
        campaign_id: str,
        name: str,
        state: str,
        product_ids: list[str],
        collection_ids: list[str],
    ) -> bool:
        """Keeps the newest announcement of a campaign (an older one arriving late loses)."""
        async with self._pool.connection() as conn, conn.transaction():
            if not await inbox.claim(conn, event):
                return False
            await conn.execute(
                "INSERT INTO campaigns (merchant_id, campaign_id, name, state, product_ids,"
                " collection_ids, changed_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (merchant_id, campaign_id) DO UPDATE SET name = excluded.name,"
                " state = excluded.state, product_ids = excluded.product_ids,"
                " collection_ids = excluded.collection_ids, changed_at = excluded.changed_at"
                " WHERE campaigns.changed_at <= excluded.changed_at",
                (
                    event.merchant_id,
                    campaign_id,
                    name,
                    state,
                    product_ids,
                    collection_ids,
                    event.occurred_at,
                ),
            )
        return True

    async def touching(
        self, merchant_id: str, product_id: str, *, include_ended: bool
    ) -> list[tuple[str, str, str, bool]]:
        """(campaign_id, name, state, all_products) of the campaigns touching a product. Drafts
        touch nothing yet (their products may still change, unannounced, until published)."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT c.campaign_id, c.name, c.state,"
                " c.product_ids = '{}' AND c.collection_ids = '{}'"
                " FROM campaigns c WHERE c.merchant_id = %s"
                " AND c.state <> 'draft' AND (%s OR c.state <> 'ended')"
                " AND (c.product_ids @> ARRAY[%s]"
                "  OR c.collection_ids && ARRAY(SELECT collection_id FROM product_collections"
                "      WHERE merchant_id = %s AND product_id = %s)"
                "  OR (c.product_ids = '{}' AND c.collection_ids = '{}'))"
                " ORDER BY c.changed_at DESC, c.campaign_id",
                (merchant_id, include_ended, product_id, merchant_id, product_id),
            )
            return [(r[0], r[1], r[2], bool(r[3])) for r in await cursor.fetchall()]
