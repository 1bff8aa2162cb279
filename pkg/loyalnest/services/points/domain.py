"""The points ledger's vocabulary and rules, independent of storage and transport."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from loyalnest.platform.errors import Aborted, FailedPrecondition, LoyalNestError, NotFound

# Per-call ceiling: far above any real order, far below int64 overflow of a balance.
MAX_POINTS_PER_TRANSACTION = 1_000_000_000


class TransactionType(StrEnum):
    EARN = "earn"
    REDEEM = "redeem"
    ADJUST = "adjust"
    # Undoes (part of) an earlier transaction: a credit gives back redeemed points (a reward
    # whose discount code could not be created), a debit takes back earned ones (an order
    # cancelled or refunded). It moves the matching lifetime total back too.
    REVERSAL = "reversal"
    # Points past their life under the merchant's expiry setting (a debit; see expiry.py).
    # Neither earned nor redeemed: lifetime totals stay.
    EXPIRE = "expire"


@dataclass(frozen=True)
class Posting:
    """A requested movement on a customer's ledger."""

    merchant_id: str
    customer_id: str
    type: TransactionType
    points: int  # signed: credits positive, debits negative
    reason: str
    # Applied only if the ledger's last sequence is still this one, else LedgerMoved: for a
    # posting computed from the ledger's history (expiry), which a change since invalidates.
    expected_sequence: int | None = None
    # The earning rule(s) that gave the points ("order", "order,punch"): shown in history.
    rule_id: str = ""

    @property
    def opens_ledger(self) -> bool:
        # Customers arrive from Shopify at any time: crediting them opens their ledger.
        return self.points > 0

    @property
    def earned(self) -> int:
        if self.type is TransactionType.REVERSAL:
            return min(self.points, 0)  # a debit takes back earned points
        if self.type is TransactionType.EXPIRE:
            return 0
        return self.points if self.points > 0 else 0

    @property
    def redeemed(self) -> int:
        if self.type is TransactionType.REVERSAL:
            return -max(self.points, 0)  # a credit gives back redeemed points
        return -self.points if self.type is TransactionType.REDEEM else 0


@dataclass(frozen=True)
class Balance:
    customer_id: str
    balance: int
    lifetime_earned: int
    lifetime_redeemed: int
    updated_at: datetime
    # The sequence of the last transaction included: orders snapshots of one ledger.
    sequence: int


@dataclass(frozen=True)
class Transaction:
    transaction_id: str
    merchant_id: str
    customer_id: str
    sequence: int
    type: TransactionType
    points: int
    reason: str
    created_at: datetime
    # The ledger right after this transaction: lets a retried call return its first result.
    balance_after: int
    lifetime_earned_after: int
    lifetime_redeemed_after: int
    rule_id: str = ""

    def balance_snapshot(self) -> Balance:
        return Balance(
            customer_id=self.customer_id,
            balance=self.balance_after,
            lifetime_earned=self.lifetime_earned_after,
            lifetime_redeemed=self.lifetime_redeemed_after,
            updated_at=self.created_at,
            sequence=self.sequence,
        )


@dataclass(frozen=True)
class PostingResult:
    transaction: Transaction
    balance: Balance
    # True when an earlier call with the same idempotency key posted `transaction`: the
    # balance is then that call's snapshot, maybe no longer the current one.
    replayed: bool = field(default=False, compare=False)

    @classmethod
    def of(cls, transaction: Transaction, *, replayed: bool = False) -> PostingResult:
        return cls(transaction, transaction.balance_snapshot(), replayed)


class ActivityStatus(StrEnum):
    AWARDED = "awarded"
    DUPLICATE = "duplicate"  # awarded before for the same occurrence
    LIMIT_REACHED = "limit_reached"


@dataclass(frozen=True)
class ActivityResult:
    """What one CUSTOM_ACTIVITY rule did with a reported activity (earning.Activities)."""

    rule_id: str
    status: ActivityStatus
    points: int
    transaction: Transaction | None = None


@dataclass(frozen=True)
class TierState:
    """A customer's VIP tier as stored (tiers.py); `version` orders compare-and-set writes."""

    tier_id: str  # "" for none
    qualifying: int
    term_end: datetime | None
    changed_at: datetime
    version: int = 0


@dataclass(frozen=True)
class TierInput:
    """What the tier job needs of one customer (LedgerStore.tier_inputs): the window's totals
    (net_totals) and the stored state."""

    customer_id: str
    earned: int
    redeemed: int
    state: TierState | None


# Entry rewards (tiers.py) are credited with this reason prefix and count towards no tier.
TIER_ENTRY_REASON_PREFIX = "tier:"


def net_totals(history: Iterable[Transaction], since: datetime | None) -> tuple[int, int]:
    """(points earned, points redeemed) from `since` on (None: ever): earned less what
    reversals took back, entry rewards left out; redeemed less what reversals gave back.
    The one definition of what VIP tiers count; the PostgreSQL store's tier_inputs sums the
    same in SQL."""
    earned = redeemed = 0
    for t in history:
        if since is not None and t.created_at < since:
            continue
        if t.type is TransactionType.EARN:
            if not t.reason.startswith(TIER_ENTRY_REASON_PREFIX):
                earned += t.points
        elif t.type is TransactionType.REDEEM:
            redeemed -= t.points
        elif t.type is TransactionType.REVERSAL:
            if t.points < 0:
                earned += t.points
            else:
                redeemed -= t.points
    return earned, redeemed


@dataclass(frozen=True)
class VipProgress:
    """A customer's tier and the way to the next (tiers.py), for the balance."""

    state: TierState | None
    tier_name: str
    qualifying: int
    next_tier_id: str
    to_next: int


@dataclass(frozen=True)
class Expiring:
    """Points that expire at `at` (the soonest; see expiry.py), unless spent first."""

    points: int
    at: datetime


class LedgerNotFound(NotFound):
    def __init__(self, customer_id: str) -> None:
        super().__init__("points_ledger", customer_id)
        self.message = f"customer {customer_id!r} has no points ledger"


class LedgerMoved(Aborted):
    """A posting conditional on the ledger's sequence found another one: recompute it."""

    def __init__(self, customer_id: str, expected: int) -> None:
        super().__init__(
            f"the ledger of customer {customer_id!r} changed after sequence {expected}; retry"
        )


class UnknownActivity(FailedPrecondition):
    def __init__(self, activity: str) -> None:
        super().__init__(
            f"no enabled CUSTOM_ACTIVITY earning rule rewards activity {activity!r}: add one"
            " in the program's earning_rules (Core settings) or fix the activity's name",
            violation_type="UNKNOWN_ACTIVITY",
            subject=f"activity/{activity}",
        )


class ProgramDisabled(FailedPrecondition):
    def __init__(self, merchant_id: str) -> None:
        super().__init__(
            "the merchant's loyalty program is disabled: no activity earns points",
            violation_type="PROGRAM_DISABLED",
            subject=f"merchant/{merchant_id}",
        )


class InsufficientPoints(FailedPrecondition):
    def __init__(self, customer_id: str, balance: int, requested: int) -> None:
        super().__init__(
            f"customer {customer_id!r} has {balance} points; {requested} requested",
            violation_type="INSUFFICIENT_POINTS",
            subject=f"points_ledger/{customer_id}",
        )


class RewardKind(StrEnum):
    FIXED_AMOUNT = "fixed_amount"  # value: amount off in the shop's currency, e.g. "5.00"
    PERCENTAGE = "percentage"  # value: percent off the order, e.g. "10" (0 < value <= 100)
    FREE_SHIPPING = "free_shipping"  # value: empty
    FREE_PRODUCT = "free_product"  # value: empty; variant_id: one unit of it free
    GIFT_CARD = "gift_card"  # value: the gift card's amount, e.g. "10.00"


class Channel(StrEnum):
    """Where a reward is redeemed: the online store (the storefront widget, checkout) or a
    point-of-sale device."""

    ONLINE = "online"
    POS = "pos"


class Segment(StrEnum):
    """A customer's RFM segment as RFM publishes it (rfm.updated's RfmSegment; Points keeps
    the last one it heard of each customer)."""

    HIGH_VALUE = "high_value"
    AT_RISK = "at_risk"
    NEW = "new"


class LimitPeriod(StrEnum):
    """A per-customer limit's period: UTC calendar periods (as earning rules' limits)."""

    EVER = "ever"
    DAY = "day"
    MONTH = "month"
    YEAR = "year"

    def start(self, now: datetime) -> datetime:
        now = now.astimezone(UTC)
        if self is LimitPeriod.DAY:
            return now.replace(hour=0, minute=0, second=0, microsecond=0)
        if self is LimitPeriod.MONTH:
            return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        if self is LimitPeriod.YEAR:
            return now.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
        return datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Reward:
    merchant_id: str
    reward_id: str
    name: str
    kind: RewardKind
    value: str
    points_cost: int
    active: bool
    created_at: datetime
    updated_at: datetime
    # Conditions of the code (Shopify's minimumRequirement, customerGets.items, endsAt).
    min_subtotal: str = ""  # decimal; "" none
    product_ids: tuple[str, ...] = ()  # Shopify product GIDs
    collection_ids: tuple[str, ...] = ()  # Shopify collection GIDs
    code_expiry_days: int = 0  # 0: the code never expires
    # Per customer: at most limit_max redemptions per limit_period (0: no limit).
    limit_max: int = 0
    limit_period: LimitPeriod = LimitPeriod.EVER
    tier_ids: tuple[str, ...] = ()  # empty: every customer
    variant_id: str = ""  # FREE_PRODUCT: a Shopify product variant GID
    # Where it may be redeemed; empty: every channel.
    channels: tuple[Channel, ...] = ()
    # Only customers in one of these RFM segments; empty: every customer.
    eligible_segments: tuple[Segment, ...] = ()

    def offered_on(self, channel: Channel) -> bool:
        return not self.channels or channel in self.channels

    def code_expires_at(self, redeemed_at: datetime) -> datetime | None:
        if not self.code_expiry_days:
            return None
        return redeemed_at + timedelta(days=self.code_expiry_days)


@dataclass(frozen=True)
class RedemptionGuard:
    """What RedeemReward checks in the debit's own transaction (store.redeem), so that only a
    first call is refused: a retry with the same key replays the first result whatever
    changed since. `refusal`: a precondition found failing beforehand (the reward inactive,
    the customer outside its tiers); `limit_max` redemptions of the reward by the customer
    since `since` at most (0: no limit), counted under the customer's ledger lock."""

    refusal: LoyalNestError | None = None
    limit_max: int = 0
    since: datetime | None = None
    # A tier-only reward: the customer's stored tier, read under the lock tier changes take
    # (their compare-and-set on the tier row), must be one of these and not past its term
    # and `tier_grace` at `at`; a downgrade racing the redemption comes wholly before or
    # after it.
    tier_ids: tuple[str, ...] = ()
    tier_grace: timedelta = timedelta(0)
    at: datetime | None = None

    def tier_refusal(self, reward_id: str, state: TierState | None) -> TierRequired | None:
        if not self.tier_ids:
            return None
        tier_id = "" if state is None else state.tier_id
        lapsed = (
            state is not None
            and state.term_end is not None
            and self.at is not None
            and self.at >= state.term_end + self.tier_grace
        )
        if tier_id in self.tier_ids and not lapsed:
            return None
        return TierRequired(reward_id, self.tier_ids, "" if lapsed else tier_id)


class Ineligibility(StrEnum):
    """Why a customer cannot redeem a reward now (ListRewards; RedeemReward's refusals)."""

    INACTIVE = "inactive"
    TIER_REQUIRED = "tier_required"
    LIMIT_REACHED = "limit_reached"
    INSUFFICIENT_POINTS = "insufficient_points"
    CHANNEL_UNAVAILABLE = "channel_unavailable"
    PLAN_FEATURE_REQUIRED = "plan_feature_required"
    SEGMENT_REQUIRED = "segment_required"


@dataclass(frozen=True)
class Eligibility:
    reward_id: str
    reasons: tuple[Ineligibility, ...]  # empty: redeemable
    redemptions_left: int  # in the limit's current period; -1: no limit
    points_needed: int


class RedemptionLimitReached(FailedPrecondition):
    def __init__(self, reward_id: str, limit_max: int, period: LimitPeriod) -> None:
        per = "in all" if period is LimitPeriod.EVER else f"per {period.value}"
        super().__init__(
            f"the customer has redeemed reward {reward_id!r} {limit_max} time(s) {per}, its limit",
            violation_type="REDEMPTION_LIMIT_REACHED",
            subject=f"reward/{reward_id}",
        )


class RedemptionLimitUnsupported(FailedPrecondition):
    """MongoDB without transactions (a standalone server) cannot count and debit at once."""

    def __init__(self, reward_id: str) -> None:
        super().__init__(
            f"reward {reward_id!r} has a per-customer limit, which this ledger store cannot"
            " enforce (MongoDB without transactions: use a replica set)",
            violation_type="REDEMPTION_LIMIT_UNSUPPORTED",
            subject=f"reward/{reward_id}",
        )


class TierRequired(FailedPrecondition):
    def __init__(self, reward_id: str, tier_ids: tuple[str, ...], tier_id: str) -> None:
        have = f"tier {tier_id!r}" if tier_id else "no VIP tier"
        super().__init__(
            f"reward {reward_id!r} is for VIP tiers {', '.join(tier_ids)}; the customer has {have}",
            violation_type="TIER_REQUIRED",
            subject=f"reward/{reward_id}",
        )


class ChannelUnavailable(FailedPrecondition):
    def __init__(self, reward_id: str, channels: tuple[Channel, ...], channel: Channel) -> None:
        offered = " and ".join(c.value for c in channels)
        super().__init__(
            f"reward {reward_id!r} is offered {offered} only; this redemption is {channel.value}",
            violation_type="REWARD_CHANNEL_UNAVAILABLE",
            subject=f"reward/{reward_id}",
        )


class SegmentRequired(FailedPrecondition):
    def __init__(self, reward_id: str, segments: tuple[Segment, ...], segment: str) -> None:
        have = f"segment {segment!r}" if segment else "no RFM segment"
        super().__init__(
            f"reward {reward_id!r} is for RFM segments {', '.join(segments)}; the customer"
            f" has {have}",
            violation_type="SEGMENT_REQUIRED",
            subject=f"reward/{reward_id}",
        )


# The plan feature GIFT_CARD rewards need (core's PlanLimits.gift_card_rewards).
GIFT_CARD_FEATURE = "gift_card_rewards"


class PlanFeatureRequired(FailedPrecondition):
    """The merchant's plan lacks a feature the request needs (Core's plans: PlanLimits)."""

    def __init__(self, plan: str, feature: str, what: str) -> None:
        super().__init__(
            f"the {plan!r} plan does not include {feature} ({what}); change the plan"
            " (POST /v1/api/core/plan) to one that does",
            violation_type="PLAN_FEATURE_REQUIRED",
            subject=f"plan/{plan}/{feature}",
        )


class RedemptionStatus(StrEnum):
    PENDING = "pending"  # points debited, discount code not created yet
    COMPLETED = "completed"  # the code (gift card) exists in the shop
    REFUNDED = "refunded"  # the code could not be created: the points were given back
    CANCELLED = "cancelled"  # unused, cancelled: the code deactivated, the points given back


@dataclass(frozen=True)
class Redemption:
    merchant_id: str
    # The id of the debit transaction: one redemption per debit.
    redemption_id: str
    customer_id: str
    reward_id: str
    points: int
    status: RedemptionStatus
    discount_code: str
    failure: str
    created_at: datetime
    # When the code (gift card) expires; None: never.
    expires_at: datetime | None = None
    # GIFT_CARD: Shopify's gift card id and the code's last characters (never the code).
    gift_card_id: str = ""
    gift_card_last_characters: str = ""


def pending_redemption(transaction: Transaction, reward: Reward) -> Redemption:
    """The redemption a reward's debit opens (its id is the debit's; expiry from then)."""
    return Redemption(
        merchant_id=transaction.merchant_id,
        redemption_id=transaction.transaction_id,
        customer_id=transaction.customer_id,
        reward_id=reward.reward_id,
        points=-transaction.points,
        status=RedemptionStatus.PENDING,
        discount_code="",
        failure="",
        created_at=transaction.created_at,
        expires_at=reward.code_expires_at(transaction.created_at),
    )


class RedemptionNotCancellable(FailedPrecondition):
    def __init__(self, redemption_id: str, why: str) -> None:
        super().__init__(
            f"redemption {redemption_id!r} cannot be cancelled: {why}",
            violation_type="REDEMPTION_NOT_CANCELLABLE",
            subject=f"reward_redemption/{redemption_id}",
        )


class RewardNotFound(NotFound):
    def __init__(self, reward_id: str) -> None:
        super().__init__("reward", reward_id)


class RewardInactive(FailedPrecondition):
    def __init__(self, reward_id: str) -> None:
        super().__init__(
            f"reward {reward_id!r} is not active",
            violation_type="REWARD_INACTIVE",
            subject=f"reward/{reward_id}",
        )
