"""The events Campaign applies, each once.

- rfm.updated: the customer's newest RFM segment (audiences), in PostgreSQL, then in Redis for
  ApplyCampaign. RFM's customer_id is the Shopify customer id (as Points' ledger uses).
"""

from __future__ import annotations

from loyalnest.gen.events.v1 import rfm_pb2
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import Handler
from loyalnest.services.campaign.eligibility import Eligibility
from loyalnest.services.campaign.store import CampaignStore


def handlers(store: CampaignStore, eligibility: Eligibility) -> dict[str, Handler]:
    async def on_rfm_updated(event: ConsumedEvent) -> bool:
        scored = event.payload_as(rfm_pb2.RfmUpdated)
        if not scored.customer_id:
            return True
        applied = await store.apply_rfm(event, scored.customer_id, scored.segment)
        # The stored segment, not the event's: an older event arriving late changed nothing.
        segment = await store.segment_of(event.merchant_id, scored.customer_id)
        if segment is not None:
            await eligibility.segment_changed(event.merchant_id, scored.customer_id, segment)
        return applied

    return {"rfm.updated": on_rfm_updated}
