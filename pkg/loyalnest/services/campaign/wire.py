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
    """The campaign's start and end; None for one unset or out of a datetime's range (the
    validation names that field)."""

    def at(field: str) -> datetime | None:
        if not campaign.HasField(field):
            return None
        try:
            return getattr(campaign, field).ToDatetime(tzinfo=UTC)  # type: ignore[no-any-return]
        except (ValueError, OverflowError):
            return None

    return at("start_time"), at("end_time")
