"""What RFM tells the mesh (`rfm.updated`, through the outbox of the change it announces) and
the consumer group its processes share."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from loyalnest.gen.events.v1 import rfm_pb2
from loyalnest.services.rfm.domain import Change, CustomerRfm, Group, Scores, Stage, seed_segment

# The consumer group of every RFM process: each event is applied by one of them.
CONSUMER_GROUP = "loyalnest.rfm"
# Minor units per unit of the shop's currency in RfmScore.monetary_minor_units. Two decimals
# is ISO 4217's common case; Shopify's shop_money amounts carry two for every currency.
_MINOR_UNITS = Decimal(100)


# Enum values by name: message constructors take the names, and a typo fails loudly there.


def group_enum(group: Group) -> str:
    return f"RFM_GROUP_{group.value.upper()}"


def stage_enum(stage: Stage) -> str:
    return f"LIFECYCLE_STAGE_{stage.value.upper()}"


def segment_enum(group: Group) -> str:
    segment = seed_segment(group)
    return "RFM_SEGMENT_UNSPECIFIED" if segment is None else f"RFM_SEGMENT_{segment.value.upper()}"


def scores_proto(scores: Scores) -> rfm_pb2.RfmScores:
    return rfm_pb2.RfmScores(
        recency=scores.recency, frequency=scores.frequency, monetary=scores.monetary
    )


def rfm_updated(change: Change, *, activity: float) -> rfm_pb2.RfmUpdated:
    """rfm.updated for a customer whose scores, group or stage changed; `activity` is their
    time-weighted activity at the change (RfmScore.recency)."""
    after: CustomerRfm = change.after
    before_group = change.before.group if change.before is not None else Group.PROSPECT
    return rfm_pb2.RfmUpdated(
        customer_id=after.customer_id,
        score=rfm_pb2.RfmScore(
            recency=activity,
            frequency=after.orders,
            monetary_minor_units=int(
                (after.monetary * _MINOR_UNITS).to_integral_value(ROUND_HALF_UP)
            ),
            currency_code=after.currency,
        ),
        segment=segment_enum(after.group),
        previous_segment=segment_enum(before_group),
        scores=scores_proto(after.scores),
        group=group_enum(after.group),
        previous_group=group_enum(before_group),
        stage=stage_enum(after.stage),
    )
