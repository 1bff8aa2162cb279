"""Domain values as the protobuf messages the API returns (and the balance cache stores)."""

from __future__ import annotations

from loyalnest.gen.events.v1 import core_pb2, rfm_pb2
from loyalnest.gen.points.v1 import points_pb2
from loyalnest.platform.protos import optional_timestamp, timestamp
from loyalnest.services.points import liability
from loyalnest.services.points.domain import (
    ActivityResult,
    ActivityStatus,
    Balance,
    Channel,
    Eligibility,
    Expiring,
    Ineligibility,
    LimitPeriod,
    Reward,
    RewardKind,
    Segment,
    Transaction,
    TransactionType,
    VipProgress,
)
from loyalnest.services.points.integrations import Integration
from loyalnest.services.points.liability import Bucket, LiabilityReport, LiabilitySummary
from loyalnest.services.points.orders import OrderSettlement, OrderStatus
from loyalnest.services.points.rules import parse_awards
from loyalnest.services.points.simulation import SimulationReport

TRANSACTION_TYPES = {
    TransactionType.EARN: points_pb2.TRANSACTION_TYPE_EARN,
    TransactionType.REDEEM: points_pb2.TRANSACTION_TYPE_REDEEM,
    TransactionType.ADJUST: points_pb2.TRANSACTION_TYPE_ADJUST,
    TransactionType.REVERSAL: points_pb2.TRANSACTION_TYPE_REVERSAL,
    TransactionType.EXPIRE: points_pb2.TRANSACTION_TYPE_EXPIRE,
}


REWARD_KINDS = {
    RewardKind.FIXED_AMOUNT: points_pb2.REWARD_KIND_FIXED_AMOUNT,
    RewardKind.PERCENTAGE: points_pb2.REWARD_KIND_PERCENTAGE,
    RewardKind.FREE_SHIPPING: points_pb2.REWARD_KIND_FREE_SHIPPING,
    RewardKind.FREE_PRODUCT: points_pb2.REWARD_KIND_FREE_PRODUCT,
    RewardKind.GIFT_CARD: points_pb2.REWARD_KIND_GIFT_CARD,
}
REWARD_KINDS_BY_PROTO: dict[int, RewardKind] = {int(p): k for k, p in REWARD_KINDS.items()}
LIMIT_PERIODS = {
    LimitPeriod.EVER: core_pb2.LIMIT_PERIOD_EVER,
    LimitPeriod.DAY: core_pb2.LIMIT_PERIOD_DAY,
    LimitPeriod.MONTH: core_pb2.LIMIT_PERIOD_MONTH,
    LimitPeriod.YEAR: core_pb2.LIMIT_PERIOD_YEAR,
}
LIMIT_PERIODS_BY_PROTO: dict[int, LimitPeriod] = {int(p): k for k, p in LIMIT_PERIODS.items()}
INELIGIBILITIES = {
    Ineligibility.INACTIVE: points_pb2.REWARD_INELIGIBILITY_INACTIVE,
    Ineligibility.TIER_REQUIRED: points_pb2.REWARD_INELIGIBILITY_TIER_REQUIRED,
    Ineligibility.LIMIT_REACHED: points_pb2.REWARD_INELIGIBILITY_LIMIT_REACHED,
    Ineligibility.INSUFFICIENT_POINTS: points_pb2.REWARD_INELIGIBILITY_INSUFFICIENT_POINTS,
    Ineligibility.CHANNEL_UNAVAILABLE: points_pb2.REWARD_INELIGIBILITY_CHANNEL_UNAVAILABLE,
    Ineligibility.PLAN_FEATURE_REQUIRED: points_pb2.REWARD_INELIGIBILITY_PLAN_FEATURE_REQUIRED,
    Ineligibility.SEGMENT_REQUIRED: points_pb2.REWARD_INELIGIBILITY_SEGMENT_REQUIRED,
}
CHANNELS = {Channel.ONLINE: core_pb2.SALES_CHANNEL_ONLINE, Channel.POS: core_pb2.SALES_CHANNEL_POS}
CHANNELS_BY_PROTO: dict[int, Channel] = {int(p): c for c, p in CHANNELS.items()}
SEGMENTS = {
    Segment.HIGH_VALUE: rfm_pb2.RFM_SEGMENT_HIGH_VALUE,
    Segment.AT_RISK: rfm_pb2.RFM_SEGMENT_AT_RISK,
    Segment.NEW: rfm_pb2.RFM_SEGMENT_NEW,
}
SEGMENTS_BY_PROTO: dict[int, Segment] = {int(p): s for s, p in SEGMENTS.items()}


def reward_proto(reward: Reward) -> points_pb2.Reward:
    message = points_pb2.Reward(
        reward_id=reward.reward_id,
        name=reward.name,
        kind=REWARD_KINDS[reward.kind],
        value=reward.value,
        points_cost=reward.points_cost,
        active=reward.active,
        create_time=timestamp(reward.created_at),
        update_time=timestamp(reward.updated_at),
        min_subtotal=reward.min_subtotal,
        product_ids=reward.product_ids,
        collection_ids=reward.collection_ids,
        code_expiry_days=reward.code_expiry_days,
        tier_ids=reward.tier_ids,
        variant_id=reward.variant_id,
        channels=[CHANNELS[c] for c in reward.channels],
        eligible_segments=[SEGMENTS[s] for s in reward.eligible_segments],
    )
    if reward.limit_max:
        message.customer_limit.CopyFrom(
            points_pb2.RedemptionLimit(
                max_redemptions=reward.limit_max, period=LIMIT_PERIODS[reward.limit_period]
            )
        )
    return message


def eligibility_proto(eligibility: Eligibility) -> points_pb2.RewardEligibility:
    return points_pb2.RewardEligibility(
        reward_id=eligibility.reward_id,
        redeemable=not eligibility.reasons,
        reasons=[INELIGIBILITIES[r] for r in eligibility.reasons],
        redemptions_left=eligibility.redemptions_left,
        points_needed=eligibility.points_needed,
    )


def balance_proto(balance: Balance) -> points_pb2.PointsBalance:
    return points_pb2.PointsBalance(
        customer_id=balance.customer_id,
        balance=balance.balance,
        lifetime_earned=balance.lifetime_earned,
        lifetime_redeemed=balance.lifetime_redeemed,
        update_time=timestamp(balance.updated_at),
        sequence=balance.sequence,
    )


def expiring_proto(expiring: Expiring) -> points_pb2.ExpiringPoints:
    return points_pb2.ExpiringPoints(points=expiring.points, expire_time=timestamp(expiring.at))


def transaction_proto(transaction: Transaction) -> points_pb2.PointsTransaction:
    return points_pb2.PointsTransaction(
        transaction_id=transaction.transaction_id,
        customer_id=transaction.customer_id,
        type=TRANSACTION_TYPES[transaction.type],
        points=transaction.points,
        balance_after=transaction.balance_after,
        reason=transaction.reason,
        create_time=timestamp(transaction.created_at),
        sequence=transaction.sequence,
        rule_id=transaction.rule_id,
    )


ORDER_STATUSES = {
    OrderStatus.PENDING: points_pb2.ORDER_EARNING_STATUS_PENDING,
    OrderStatus.APPROVING: points_pb2.ORDER_EARNING_STATUS_APPROVING,
    OrderStatus.APPROVED: points_pb2.ORDER_EARNING_STATUS_APPROVED,
    OrderStatus.NOT_EARNING: points_pb2.ORDER_EARNING_STATUS_NOT_EARNING,
}


def order_earning_proto(settlement: OrderSettlement) -> points_pb2.OrderEarning:
    earning = settlement.earning
    return points_pb2.OrderEarning(
        order_id=earning.order_id,
        customer_id=earning.customer_id,
        status=ORDER_STATUSES[earning.status],
        points=earning.points,
        approved_points=earning.approved_points,
        taken_back_points=settlement.taken_back,
        approve_time=timestamp(earning.approve_at),
        create_time=timestamp(earning.created_at),
        note=earning.note,
        settings_version=earning.settings_version,
        awards=[
            points_pb2.RuleAward(rule_id=rule_id, points=points)
            for rule_id, points in parse_awards(earning.awards)
        ],
    )


ACTIVITY_STATUSES = {
    ActivityStatus.AWARDED: points_pb2.ACTIVITY_AWARD_STATUS_AWARDED,
    ActivityStatus.DUPLICATE: points_pb2.ACTIVITY_AWARD_STATUS_DUPLICATE,
    ActivityStatus.LIMIT_REACHED: points_pb2.ACTIVITY_AWARD_STATUS_LIMIT_REACHED,
}


def activity_award_proto(result: ActivityResult) -> points_pb2.ActivityAward:
    award = points_pb2.ActivityAward(
        rule_id=result.rule_id, status=ACTIVITY_STATUSES[result.status], points=result.points
    )
    if result.transaction is not None:
        award.transaction.CopyFrom(transaction_proto(result.transaction))
    return award


def vip_proto(progress: VipProgress) -> points_pb2.VipStatus:
    vip = points_pb2.VipStatus(
        tier_id="" if progress.state is None else progress.state.tier_id,
        tier_name=progress.tier_name,
        qualifying_points=progress.qualifying,
        next_tier_id=progress.next_tier_id,
        points_to_next_tier=progress.to_next,
    )
    if progress.state is not None and progress.state.term_end is not None:
        vip.term_end_time.CopyFrom(timestamp(progress.state.term_end))
    return vip


def liability_proto(report: LiabilityReport) -> points_pb2.GetPointsLiabilityResponse:
    figures, value = report.figures, report.value

    def bucket(b: Bucket, name: str = "") -> points_pb2.LiabilityBucket:
        return points_pb2.LiabilityBucket(
            key=b.key,
            name=name,
            points=b.points,
            value=str(liability.money(b.points, value)),
            customers=b.customers,
        )

    breakage = figures.breakage
    return points_pb2.GetPointsLiabilityResponse(
        outstanding_points=figures.outstanding,
        point_value=str(value.per_point.normalize()),
        rate_reward_id=value.reward_id,
        outstanding_value=str(liability.money(figures.outstanding, value)),
        by_age=[bucket(b) for b in figures.by_age],
        by_tier=[bucket(b, report.tier_names.get(b.key, "")) for b in figures.by_tier],
        breakage=points_pb2.Breakage(
            horizon_days=report.horizon_days,
            earned_points=breakage.earned,
            redeemed_points=breakage.redeemed,
            expired_points=breakage.expired,
            outstanding_points=breakage.outstanding,
            taken_back_points=breakage.taken_back,
            rate=str(breakage.rate.normalize()),
        ),
        expected_value=str(liability.expected(figures.outstanding, value, breakage)),
        as_of=timestamp(report.as_of),
    )


def simulation_proto(report: SimulationReport) -> points_pb2.SimulateEarningRulesResponse:
    expected = report.expected_value_delta
    return points_pb2.SimulateEarningRulesResponse(
        orders=report.orders,
        rules=[
            points_pb2.SimulatedRule(
                rule_id=rule_id,
                actual_points=outcome.actual,
                simulated_points=outcome.simulated,
                simulated_orders=outcome.simulated_orders,
            )
            for rule_id, outcome in sorted(report.rules.items())
        ],
        actual_points=report.actual,
        simulated_points=report.simulated,
        points_delta=report.delta,
        value_delta=str(report.value_delta),
        expected_value_delta="" if expected is None else str(expected),
        point_value=str(report.point_value.normalize()),
        since=timestamp(report.since),
    )


def integration_proto(integration: Integration) -> points_pb2.Integration:
    """Never the secret: only CreateIntegration and RotateIntegrationSecret hand it out."""
    return points_pb2.Integration(
        integration_id=integration.integration_id,
        name=integration.name,
        secret_generation=integration.generation,
        create_time=timestamp(integration.created_at),
        rotate_time=timestamp(integration.rotated_at),
        previous_valid_until=optional_timestamp(integration.previous_valid_until),
    )


def liability_summary_proto(summary: LiabilitySummary) -> points_pb2.GetLiabilitySummaryResponse:
    t = summary.totals
    return points_pb2.GetLiabilitySummaryResponse(
        outstanding_points=t.outstanding,
        point_value=str(summary.value.per_point.normalize()),
        outstanding_value=str(liability.money(t.outstanding, summary.value)),
        earned_points=t.earned,
        redeemed_points=t.redeemed,
        expired_points=t.expired,
        adjusted_points=t.adjusted,
        reversed_points=t.reversed,
        events=t.events,
        update_time=optional_timestamp(t.updated_at),
    )
