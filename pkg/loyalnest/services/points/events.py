"""What Points tells the mesh: one event per ledger transaction."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.message import Message

from loyalnest.gen.events.v1 import points_pb2 as events_pb2
from loyalnest.platform.protos import timestamp
from loyalnest.services.points.domain import TierState, Transaction, TransactionType

# The consumer group of every Points process: each event is applied by one of them.
CONSUMER_GROUP = "loyalnest.points"


def ledger_event(transaction: Transaction) -> Message:
    """points.earned / points.redeemed / points.adjusted for a committed transaction."""
    t = transaction
    match t.type:
        case TransactionType.EARN:
            return events_pb2.PointsEarned(
                customer_id=t.customer_id,
                transaction_id=t.transaction_id,
                sequence=t.sequence,
                points=t.points,
                balance_after=t.balance_after,
                lifetime_earned_after=t.lifetime_earned_after,
                reason=t.reason,
                rule_id=t.rule_id,
            )
        case TransactionType.REDEEM:
            return events_pb2.PointsRedeemed(
                customer_id=t.customer_id,
                transaction_id=t.transaction_id,
                sequence=t.sequence,
                points=-t.points,
                balance_after=t.balance_after,
                lifetime_redeemed_after=t.lifetime_redeemed_after,
                reason=t.reason,
            )
        case TransactionType.ADJUST:
            return events_pb2.PointsAdjusted(
                customer_id=t.customer_id,
                transaction_id=t.transaction_id,
                sequence=t.sequence,
                points=t.points,
                balance_after=t.balance_after,
                reason=t.reason,
            )
        case TransactionType.EXPIRE:
            return events_pb2.PointsExpired(
                customer_id=t.customer_id,
                transaction_id=t.transaction_id,
                sequence=t.sequence,
                points=-t.points,
                balance_after=t.balance_after,
                reason=t.reason,
            )
        case TransactionType.REVERSAL:
            return events_pb2.PointsReversed(
                customer_id=t.customer_id,
                transaction_id=t.transaction_id,
                sequence=t.sequence,
                points=t.points,
                balance_after=t.balance_after,
                lifetime_earned_after=t.lifetime_earned_after,
                lifetime_redeemed_after=t.lifetime_redeemed_after,
                reason=t.reason,
            )


def expiring_event(customer_id: str, points: int, at: datetime, balance: int) -> Message:
    """points.expiring: the notice ahead of an expiry (expiry.py)."""
    return events_pb2.PointsExpiring(
        customer_id=customer_id, points=points, expire_time=timestamp(at), balance=balance
    )


def tier_changed_event(
    customer_id: str, previous: str, state: TierState, added: list[str], removed: list[str]
) -> Message:
    """tier.changed (tiers.py)."""
    event = events_pb2.TierChanged(
        customer_id=customer_id,
        previous_tier_id=previous,
        tier_id=state.tier_id,
        qualifying_points=state.qualifying,
        tags_added=added,
        tags_removed=removed,
    )
    if state.term_end is not None:
        event.term_end_time.CopyFrom(timestamp(state.term_end))
    return event
