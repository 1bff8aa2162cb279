"""What Campaign tells the mesh (campaign.created, campaign.state_changed), and the consumer
group its processes share. Enqueued in the writing transaction (store.py), so an event leaves
if and only if its change commits."""

from __future__ import annotations

from loyalnest.gen.events.v1 import campaign_pb2 as campaign_events
from loyalnest.platform.protos import optional_timestamp
from loyalnest.services.campaign.domain import Campaign, state_name

# The consumer group of every Campaign process: each event is applied by one of them.
CONSUMER_GROUP = "loyalnest.campaign"


def campaign_created(campaign: Campaign) -> campaign_events.CampaignCreated:
    products, collections = campaign.targets()
    return campaign_events.CampaignCreated(
        campaign_id=campaign.campaign_id,
        name=campaign.name,
        start_time=optional_timestamp(campaign.start_at),
        end_time=optional_timestamp(campaign.end_at),
        state=state_name(campaign.state),
        product_ids=products,
        collection_ids=collections,
    )


def state_changed(campaign: Campaign, previous: int) -> campaign_events.CampaignStateChanged:
    products, collections = campaign.targets()
    return campaign_events.CampaignStateChanged(
        campaign_id=campaign.campaign_id,
        state=state_name(campaign.state),
        previous_state=state_name(previous),
        product_ids=products,
        collection_ids=collections,
        name=campaign.name,
    )
