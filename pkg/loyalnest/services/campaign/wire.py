"""The Campaign service's domain values as protobuf messages."""

from __future__ import annotations

from datetime import UTC, datetime

from loyalnest.gen.campaign.v1 import campaign_pb2 as pb
from loyalnest.platform.protos import optional_timestamp, timestamp
from loyalnest.services.campaign.domain import Campaign


def campaign_proto(campaign: Campaign) -> pb.Campaign:
    return pb.Campaign(
        campaign_id=campaign.campaign_id,
        name=campaign.name,
        kind=campaign.kind,  # type: ignore[arg-type]
        code=campaign.code,
        rules=campaign.rules,
        audience=campaign.audience,
        start_time=optional_timestamp(campaign.start_at),
        end_time=optional_timestamp(campaign.end_at),
        state=campaign.state,  # type: ignore[arg-type]
        shopify_discount_id=campaign.shopify_discount_id,
        create_time=timestamp(campaign.created_at),
        update_time=timestamp(campaign.updated_at),
    )


def times_of(campaign: pb.Campaign) -> tuple[datetime | None, datetime | None]:
    start = campaign.start_time.ToDatetime(tzinfo=UTC) if campaign.HasField("start_time") else None
    end = campaign.end_time.ToDatetime(tzinfo=UTC) if campaign.HasField("end_time") else None
    return start, end
