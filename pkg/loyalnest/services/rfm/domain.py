"""Rules of the RFM service, without I/O (README "RFM" explains them with a worked example).

Scores are 1-5 per dimension, relative to the merchant's own customers:

- R ranks *time-weighted activity*: each counted order weighs 2^(-age / H) (H the half-life),
  summed. Stored as the key `log2(sum_i 2^(t_i / H))` (t_i in days since 2020-01-01): the
  activity at time t is 2^(key - t/H), so every customer's key moves by the same amount as
  time passes and ranks stay put: no daily rewrite just because time passed.
- F counts orders against fixed thresholds (1, 2, 3, 4-5, 6+): orders are heavily tied, and
  quintiles of a tied column split or inflate ties (DESIGN §9).
- M ranks net spend (orders less refunds, shop currency).

R and M are quintiles: cutoffs from `percentile_cont(ARRAY[.2,.4,.6,.8])` per merchant,
recomputed nightly. A value equal to several cutoffs gets the upper middle of the quintiles
its tie group spans (`quintile`). Below `MIN_CUSTOMERS_FOR_QUINTILES` customers with an order
there are no quintiles: R comes from days since the last order (`recency_by_days`) and M is 3.

The SQL functions of migration rfm_0001 are the rules the service runs (one definition for
the per-order path and the set-based rescore); this module mirrors them for tests and the
README's example, and tests/integration/test_rfm_service.py checks both agree on every cell.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

from loyalnest.platform.errors import NotFound

# Time-weighting's origin: keys stay small numbers (a few hundred at most) for any half-life.
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
MIN_CUSTOMERS_FOR_QUINTILES = 5
QUINTILE_FRACTIONS = (0.2, 0.4, 0.6, 0.8)
# Days since the last order -> R, for merchants below MIN_CUSTOMERS_FOR_QUINTILES.
RECENCY_DAYS = ((30, 5), (90, 4), (180, 3), (365, 2))
# M of a merchant below MIN_CUSTOMERS_FOR_QUINTILES: no peers to compare spend with.
SMALL_MERCHANT_MONETARY = 3


class Group(StrEnum):
    PROSPECT = "prospect"
    CHAMPIONS = "champions"
    LOYAL = "loyal"
    POTENTIAL_LOYALIST = "potential_loyalist"
    NEW = "new"
    PROMISING = "promising"
    NEEDS_ATTENTION = "needs_attention"
    ABOUT_TO_SLEEP = "about_to_sleep"
    AT_RISK = "at_risk"
    CANT_LOSE = "cant_lose"
    HIBERNATING = "hibernating"
    LOST = "lost"


class Stage(StrEnum):
    PROSPECT = "prospect"
    NEW = "new"
    ACTIVE = "active"
    LAPSING = "lapsing"
    CHURNED = "churned"


class SeedSegment(StrEnum):
    """The seed's three segments, coarser than the groups."""

    HIGH_VALUE = "high_value"
    AT_RISK = "at_risk"
    NEW = "new"


def seed_segment(group: Group) -> SeedSegment | None:
    if group in (Group.CHAMPIONS, Group.LOYAL):
        return SeedSegment.HIGH_VALUE
    if group in (Group.AT_RISK, Group.CANT_LOSE):
        return SeedSegment.AT_RISK
    if group is Group.NEW:
        return SeedSegment.NEW
    return None


@dataclass(frozen=True)
class Scores:
    recency: int
    frequency: int
    monetary: int


NO_SCORES = Scores(0, 0, 0)


@dataclass(frozen=True)
class Cutoffs:
    """Lower bounds of scores 2..5; None below MIN_CUSTOMERS_FOR_QUINTILES customers."""

    recency_key: tuple[float, ...] | None
    monetary: tuple[float, ...] | None
    customers: int
    half_life_days: float
    computed_at: datetime


@dataclass(frozen=True)
class CustomerRfm:
    merchant_id: str
    customer_id: str
    orders: int
    monetary: Decimal
    currency: str
    first_order_at: datetime | None
    last_order_at: datetime | None
    activity_key: float | None
    scores: Scores
    group: Group
    stage: Stage
    scored_at: datetime

    def activity(self, now: datetime, half_life_days: float) -> float:
        return activity_at(self.activity_key, now, half_life_days)


@dataclass(frozen=True)
class HistoryEntry:
    scores: Scores
    group: Group
    stage: Stage
    orders: int
    monetary: Decimal
    created_at: datetime


@dataclass(frozen=True)
class Change:
    """A customer's scores, group or stage changed (what rfm.updated announces)."""

    before: CustomerRfm | None
    after: CustomerRfm


class CustomerNotFound(NotFound):
    def __init__(self, customer_id: str) -> None:
        super().__init__("customer", customer_id)


# ---- the rules (mirrors of the SQL functions in rfm_0001) --------------------------------


def days_since_epoch(at: datetime) -> float:
    return (at - EPOCH).total_seconds() / 86400


def activity_key(order_times: Iterable[datetime], half_life_days: float) -> float | None:
    """log2(sum_i 2^(t_i / H)), computed stably (log-sum-exp); None without orders."""
    exponents = [days_since_epoch(t) / half_life_days for t in order_times]
    if not exponents:
        return None
    top = max(exponents)
    return top + math.log2(sum(2 ** (x - top) for x in exponents))


def activity_at(key: float | None, now: datetime, half_life_days: float) -> float:
    """The decayed order count at `now`: sum_i 2^(-(now - t_i) / H)."""
    if key is None:
        return 0.0
    return float(2 ** (key - days_since_epoch(now) / half_life_days))


def quintile(value: float, cutoffs: Sequence[float]) -> int:
    """1 + the cutoffs below `value` + half (rounded up) of those equal to it."""
    below = sum(1 for c in cutoffs if c < value)
    equal = sum(1 for c in cutoffs if c == value)
    return 1 + below + (equal + 1) // 2


def frequency_score(orders: int) -> int:
    if orders >= 6:
        return 5
    if orders >= 4:
        return 4
    return max(orders, 0)


def recency_by_days(days: float) -> int:
    for limit, score in RECENCY_DAYS:
        if days <= limit:
            return score
    return 1


def group_of(scores: Scores) -> Group:
    r, f, m = scores.recency, scores.frequency, scores.monetary
    fm = f + m  # twice (F + M) / 2, Shopify's "FM": integers keep the table exact
    rules = (
        (f == 0, Group.PROSPECT),
        (r >= 4 and fm >= 8, Group.CHAMPIONS),
        (r == 1 and fm >= 8, Group.CANT_LOSE),
        (r >= 4 and f == 1, Group.NEW),
        (r >= 3 and f >= 2 and fm >= 6, Group.LOYAL),
        (r <= 2 and fm >= 6, Group.AT_RISK),
        (r >= 4, Group.POTENTIAL_LOYALIST),
        (r == 3 and f == 1, Group.PROMISING),
        (r == 3, Group.NEEDS_ATTENTION),
        (r == 2 and fm >= 4, Group.ABOUT_TO_SLEEP),
        (r == 2, Group.HIBERNATING),
    )
    return next((group for matches, group in rules if matches), Group.LOST)


def stage_of(recency: int, orders: int) -> Stage:
    if orders == 0:
        return Stage.PROSPECT
    if recency == 1:
        return Stage.CHURNED
    if recency == 2:
        return Stage.LAPSING
    return Stage.NEW if orders == 1 else Stage.ACTIVE


def score(
    *,
    orders: int,
    monetary: Decimal,
    activity_key: float | None,
    last_order_at: datetime | None,
    cutoffs: Cutoffs | None,
    now: datetime,
) -> Scores:
    """A customer's scores against the merchant's cutoffs (what the SQL computes)."""
    if orders <= 0 or activity_key is None or last_order_at is None:
        return NO_SCORES
    if cutoffs is None or cutoffs.recency_key is None or cutoffs.monetary is None:
        days = (now - last_order_at).total_seconds() / 86400
        return Scores(recency_by_days(days), frequency_score(orders), SMALL_MERCHANT_MONETARY)
    return Scores(
        quintile(activity_key, cutoffs.recency_key),
        frequency_score(orders),
        quintile(float(monetary), cutoffs.monetary),
    )


def percentile_cont(values: Sequence[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the sorted values."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def cutoffs_of(values: Sequence[float]) -> tuple[float, ...] | None:
    if len(values) < MIN_CUSTOMERS_FOR_QUINTILES:
        return None
    return tuple(percentile_cont(values, q) for q in QUINTILE_FRACTIONS)


# ---- nudges ------------------------------------------------------------------------------


class NudgeAction(StrEnum):
    PERSONAL_OUTREACH = "personal_outreach"
    WIN_BACK_OFFER = "win_back_offer"
    REACTIVATION_REMINDER = "reactivation_reminder"
    SECOND_PURCHASE_INCENTIVE = "second_purchase_incentive"
    LIMITED_TIME_OFFER = "limited_time_offer"
    LOYALTY_INVITE = "loyalty_invite"
    REFERRAL_ASK = "referral_ask"


# The groups worth a nudge, most urgent first (losing a big spender costs most), and what to do.
NUDGES: tuple[tuple[Group, NudgeAction], ...] = (
    (Group.CANT_LOSE, NudgeAction.PERSONAL_OUTREACH),
    (Group.AT_RISK, NudgeAction.WIN_BACK_OFFER),
    (Group.ABOUT_TO_SLEEP, NudgeAction.REACTIVATION_REMINDER),
    (Group.NEW, NudgeAction.SECOND_PURCHASE_INCENTIVE),
    (Group.NEEDS_ATTENTION, NudgeAction.LIMITED_TIME_OFFER),
    (Group.POTENTIAL_LOYALIST, NudgeAction.LOYALTY_INVITE),
    (Group.CHAMPIONS, NudgeAction.REFERRAL_ASK),
)
NUDGE_ACTIONS = dict(NUDGES)


def nudge_reason(customer: CustomerRfm, now: datetime) -> str:
    days = 0 if customer.last_order_at is None else (now - customer.last_order_at).days
    orders = "1 order" if customer.orders == 1 else f"{customer.orders} orders"
    spent = f"{customer.monetary.quantize(Decimal('0.01'))} {customer.currency}".rstrip()
    return f"{customer.group.value}: spent {spent} over {orders}; last order {days} days ago"


# ---- orders ------------------------------------------------------------------------------


class MalformedOrder(ValueError):
    """An order or refund this code cannot read: retrying cannot help."""


def _amount(value: str, what: str) -> Decimal:
    try:
        number = Decimal(value or "0")
    except ArithmeticError as exc:
        raise MalformedOrder(f"{what} {value!r} is not a number") from exc
    if not number.is_finite():
        raise MalformedOrder(f"{what} {value!r} is not a number")
    return number


def order_amount(lines: Iterable[tuple[str, int, str]]) -> Decimal:
    """What an order is worth for M: each line's (price, quantity, discount) price times
    quantity less its discounts, in the shop's currency; shipping, taxes and tips are not
    spend on the store's goods (the amount Points earns on, too)."""
    total = Decimal(0)
    for price, quantity, discount in lines:
        line = _amount(price, "price") * quantity - _amount(discount, "discount")
        total += max(line, Decimal(0))
    return total


def refund_amount(subtotals: Iterable[str]) -> Decimal:
    """A refund's refunded lines before tax (a refund of shipping alone takes back nothing)."""
    return sum((_amount(s, "subtotal") for s in subtotals), Decimal(0))
