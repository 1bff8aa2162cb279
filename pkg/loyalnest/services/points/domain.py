"""The points ledger's vocabulary and rules, independent of storage and transport."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from loyalnest.platform.errors import Aborted, FailedPrecondition, NotFound

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


class RedemptionStatus(StrEnum):
    PENDING = "pending"  # points debited, discount code not created yet
    COMPLETED = "completed"  # the code exists in the shop
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
