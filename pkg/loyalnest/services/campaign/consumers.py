"""The events Campaign applies, each once.

- rfm.updated: the customer's newest RFM segment (audiences), in PostgreSQL, then in Redis for
  ApplyCampaign. When the segment changed, the customer joins or leaves the customer list of
  each live code campaign for those segments at Shopify, inside the event's transaction (a
  Shopify failure rolls it back and the consumer retries). RFM's customer_id is the Shopify
  customer id (as Points' ledger uses); a merchant whose shop is not connected is skipped.
"""

from __future__ import annotations

from loyalnest.gen.events.v1 import rfm_pb2
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import Handler
from loyalnest.platform.observability import get_logger
from loyalnest.services.campaign.eligibility import Eligibility
from loyalnest.services.campaign.lifecycle import Lifecycle
from loyalnest.services.campaign.shopify import ShopNotConnected
from loyalnest.services.campaign.store import CampaignStore

log = get_logger(__name__)


def handlers(
    store: CampaignStore, eligibility: Eligibility, lifecycle: Lifecycle
) -> dict[str, Handler]:
    async def on_rfm_updated(event: ConsumedEvent) -> bool:
        scored = event.payload_as(rfm_pb2.RfmUpdated)
        if not scored.customer_id:
            return True

        async def moved(previous: str | None, current: str) -> None:
            try:
                await lifecycle.segment_moved(
                    event.merchant_id, scored.customer_id, previous, current
                )
            except ShopNotConnected:
                log.info("segment change not sent to Shopify: shop not connected")

        applied = await store.apply_rfm(event, scored.customer_id, scored.segment, moved=moved)
        # The stored segment, not the event's: an older event arriving late changed nothing.
        segment = await store.segment_of(event.merchant_id, scored.customer_id)
        if segment is not None:
            await eligibility.segment_changed(event.merchant_id, scored.customer_id, segment)
        return applied

    return {"rfm.updated": on_rfm_updated}
