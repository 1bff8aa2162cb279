"""The RFM service's domain values as protobuf messages (and request enums as domain values)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from loyalnest.gen.events.v1 import rfm_pb2 as events_pb2
from loyalnest.gen.rfm.v1 import rfm_pb2
from loyalnest.platform.protos import optional_timestamp, timestamp
from loyalnest.services.rfm.domain import (
    NUDGE_ACTIONS,
    CustomerRfm,
    Cutoffs,
    Group,
    HistoryEntry,
    Stage,
    nudge_reason,
)
from loyalnest.services.rfm.events import group_enum, scores_proto, segment_enum, stage_enum


def money(amount: Decimal) -> str:
    return str(amount.quantize(Decimal("0.01")))


def group_of(value: int) -> Group | None:
    """The domain group of a request's enum; None for UNSPECIFIED or an unknown number."""
    name = events_pb2.RfmGroup.Name(value) if value in events_pb2.RfmGroup.values() else ""
    return Group(name.removeprefix("RFM_GROUP_").lower()) if value else None


def stage_of(value: int) -> Stage | None:
    values = events_pb2.LifecycleStage.values()
    name = events_pb2.LifecycleStage.Name(value) if value in values else ""
    return Stage(name.removeprefix("LIFECYCLE_STAGE_").lower()) if value else None


def customer_proto(
    customer: CustomerRfm, now: datetime, half_life_days: float
) -> rfm_pb2.CustomerRfm:
    return rfm_pb2.CustomerRfm(
        customer_id=customer.customer_id,
        scores=scores_proto(customer.scores),
        group=group_enum(customer.group),
        segment=segment_enum(customer.group),
        stage=stage_enum(customer.stage),
        orders=customer.orders,
        monetary=money(customer.monetary),
        currency_code=customer.currency,
        recency_activity=customer.activity(now, half_life_days),
        first_order_time=optional_timestamp(customer.first_order_at),
        last_order_time=optional_timestamp(customer.last_order_at),
        score_time=timestamp(customer.scored_at),
    )


def history_proto(entry: HistoryEntry) -> rfm_pb2.RfmHistoryEntry:
    return rfm_pb2.RfmHistoryEntry(
        scores=scores_proto(entry.scores),
        group=group_enum(entry.group),
        stage=stage_enum(entry.stage),
        orders=entry.orders,
        monetary=money(entry.monetary),
        time=timestamp(entry.created_at),
    )


def counts_proto(counts: dict[Group, int]) -> list[rfm_pb2.GroupCount]:
    return [
        rfm_pb2.GroupCount(group=group_enum(group), customers=n)
        for group, n in sorted(
            counts.items(), key=lambda item: events_pb2.RfmGroup.Value(group_enum(item[0]))
        )
    ]


def cutoffs_proto(cutoffs: Cutoffs) -> rfm_pb2.Cutoffs:
    return rfm_pb2.Cutoffs(
        recency_key=list(cutoffs.recency_key or ()),
        monetary=list(cutoffs.monetary or ()),
        customers=cutoffs.customers,
        compute_time=timestamp(cutoffs.computed_at),
        half_life_days=cutoffs.half_life_days,
    )


def nudge_proto(customer: CustomerRfm, now: datetime, half_life_days: float) -> rfm_pb2.Nudge:
    action = NUDGE_ACTIONS[customer.group]
    return rfm_pb2.Nudge(
        customer_id=customer.customer_id,
        group=group_enum(customer.group),
        action=f"NUDGE_ACTION_{action.value.upper()}",
        reason=nudge_reason(customer, now),
        rfm=customer_proto(customer, now, half_life_days),
    )


def scatter_point(
    customer: CustomerRfm, now: datetime, half_life_days: float
) -> rfm_pb2.ScatterPoint:
    days = (
        0.0
        if customer.last_order_at is None
        else max((now - customer.last_order_at).total_seconds() / 86400, 0.0)
    )
    return rfm_pb2.ScatterPoint(
        customer_id=customer.customer_id,
        days_since_last_order=round(days, 3),
        monetary=money(customer.monetary),
        scores=scores_proto(customer.scores),
        group=group_enum(customer.group),
    )
