"""Points liability: what the points customers hold are worth to the merchant, and how much of
it history says will never be redeemed.

    outstanding     every customer's open lots (expiry.open_lots: each credit less what the
                    debits after it consumed, first-in first-out), so the total is the sum of
                    balances;
    point value     money per point, from the merchant's rewards: the best value / points_cost
                    of the active amount-off (fixed_amount) and gift card rewards open to every
                    customer without a per-customer limit, since any customer can always redeem
                    at that rate (percent-off, free-shipping and free-product rewards are worth
                    what the cart or the product's price makes them, and tier-only or limited
                    rewards are not open to all points alike, so they price nothing; a minimum
                    subtotal, a product scope or an expiry still leaves money off a purchase);
                    no such reward: "0";
    by age          the lots' points by days since earned (whole days, at `now`): 0-30, 31-90,
                    91-180, 181-365, >365;
    by tier         the customers' points by their current VIP tier ("" without one);
    breakage        of the lots earned at least `horizon` days ago, the share that expired or is
                    still outstanding, out of what was not taken back (refunds, cancellations,
                    negative adjustments consume lots but were never the customer's to redeem):
                    (expired + outstanding) / (earned - taken back);
    expected value  outstanding value x (1 - breakage).

The store computes the sums set-based (store.liability); this module prices them.

The summary table (GetLiabilitySummary, the admin UI's): per merchant, the totals of every
ledger movement, kept by a consumer of Points' own ledger events, each applied once (the
platform inbox), so a read is one row whatever the ledger's size. Its outstanding figure is
the same sum of balances the report computes from the ledger (a movement's points added with
its sign), as of the last event consumed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.platform.errors import FailedPrecondition
from loyalnest.services.points.domain import Reward, RewardKind

Clock = Callable[[], datetime]
# Rewards whose value is an amount of money, whatever the cart.
_MONEY_KINDS = frozenset({RewardKind.FIXED_AMOUNT, RewardKind.GIFT_CARD})

# (label, the oldest lot age in whole days it holds); the last bucket has no upper bound.
AGE_BUCKETS: tuple[tuple[str, int], ...] = (
    ("0-30", 30),
    ("31-90", 90),
    ("91-180", 180),
    ("181-365", 365),
    (">365", -1),
)
DEFAULT_HORIZON_DAYS = 365
MAX_HORIZON_DAYS = 3650
_CENT = Decimal("0.01")
_RATE = Decimal("0.0001")


class LiabilityUnsupported(FailedPrecondition):
    def __init__(self, store: str) -> None:
        super().__init__(
            f"points liability needs the PostgreSQL ledger store; this Points runs on {store}",
            violation_type="LIABILITY_UNSUPPORTED",
            subject=store,
        )


def age_cutoffs(now: datetime) -> list[tuple[str, datetime | None]]:
    """Each bucket with the earliest earned time it holds (None: no bound): a lot `d` whole
    days old (now - earned in [d, d+1) days) falls in the first bucket whose max is >= d."""
    return [
        (label, now - timedelta(days=days + 1) if days >= 0 else None)
        for label, days in AGE_BUCKETS
    ]


@dataclass(frozen=True)
class Bucket:
    key: str
    points: int
    customers: int


@dataclass(frozen=True)
class BreakageFigures:
    earned: int = 0
    redeemed: int = 0
    expired: int = 0
    outstanding: int = 0
    taken_back: int = 0

    @property
    def rate(self) -> Decimal:
        base = self.earned - self.taken_back
        if base <= 0:
            return Decimal(0)
        share = Decimal(self.expired + self.outstanding) / Decimal(base)
        return min(max(share, Decimal(0)), Decimal(1)).quantize(_RATE, ROUND_HALF_UP)


@dataclass(frozen=True)
class LiabilityFigures:
    """What the store sums; buckets with no points are left out."""

    by_age: list[Bucket] = field(default_factory=list)
    by_tier: list[Bucket] = field(default_factory=list)
    breakage: BreakageFigures = field(default_factory=BreakageFigures)

    @property
    def outstanding(self) -> int:
        return sum(b.points for b in self.by_age)


@dataclass(frozen=True)
class PointValue:
    per_point: Decimal
    reward_id: str = ""


def point_value(rewards: list[Reward]) -> PointValue:
    """The best money-per-point rate of the active amount-off and gift card rewards that
    every customer can redeem again and again (module doc)."""
    best = PointValue(Decimal(0))
    for reward in rewards:
        if (
            not reward.active
            or reward.kind not in _MONEY_KINDS
            or reward.tier_ids
            or reward.limit_max
        ):
            continue
        rate = Decimal(reward.value) / reward.points_cost
        if rate > best.per_point:
            best = PointValue(rate, reward.reward_id)
    return best


def money(points: int, value: PointValue) -> Decimal:
    return (points * value.per_point).quantize(_CENT, ROUND_HALF_UP)


def expected(points: int, value: PointValue, breakage: BreakageFigures) -> Decimal:
    return (points * value.per_point * (1 - breakage.rate)).quantize(_CENT, ROUND_HALF_UP)


@dataclass(frozen=True)
class LiabilityReport:
    figures: LiabilityFigures
    value: PointValue
    tier_names: dict[str, str]
    horizon_days: int
    as_of: datetime


@dataclass(frozen=True)
class LedgerTotals:
    """A merchant's ledger movements summed (the summary table's row), or one event's."""

    outstanding: int = 0
    earned: int = 0
    redeemed: int = 0
    expired: int = 0
    adjusted: int = 0
    reversed: int = 0
    events: int = 0
    updated_at: datetime | None = None


# The ledger events the summary table sums, and what each adds: (outstanding sign, column).
# Redeemed and expired events carry the points as a positive amount; adjusted and reversed
# ones signed.
LEDGER_MOVEMENTS: dict[str, tuple[int, str]] = {
    "points.earned": (1, "earned"),
    "points.redeemed": (-1, "redeemed"),
    "points.expired": (-1, "expired"),
    "points.adjusted": (1, "adjusted"),
    "points.reversed": (1, "reversed"),
}


def ledger_movement(event_type: str, points: int) -> LedgerTotals:
    """What one ledger event adds to the merchant's totals."""
    sign, column = LEDGER_MOVEMENTS[event_type]
    amounts: dict[str, Any] = {column: points}
    return replace(LedgerTotals(outstanding=sign * points, events=1), **amounts)


@dataclass(frozen=True)
class LiabilitySummary:
    totals: LedgerTotals
    value: PointValue


class LiabilityTable(Protocol):
    """The summary table (store.postgres_liability.PostgresLiabilityTable)."""

    async def totals(self, merchant_id: str) -> LedgerTotals: ...


_REWARD_PAGE = 500


class ProgramCopies(Protocol):
    """earning.ProgramCopies (not imported: the store's interface imports this module)."""

    async def get(self, merchant_id: str) -> core_pb2.ProgramSettings: ...


class LiabilityStore(Protocol):
    """What the report reads of the ledger store (store.base.LedgerStore has both)."""

    async def liability(
        self, merchant_id: str, now: datetime, horizon_days: int
    ) -> LiabilityFigures: ...

    async def list_rewards(
        self, merchant_id: str, *, active_only: bool, limit: int, offset: int
    ) -> list[Reward]: ...


class PointsLiability:
    def __init__(self, store: LiabilityStore, programs: ProgramCopies, *, clock: Clock) -> None:
        self._store = store
        self._programs = programs
        self._clock = clock

    async def _rewards(self, merchant_id: str) -> list[Reward]:
        rewards: list[Reward] = []
        while True:
            page = await self._store.list_rewards(
                merchant_id, active_only=True, limit=_REWARD_PAGE, offset=len(rewards)
            )
            rewards.extend(page)
            if len(page) < _REWARD_PAGE:
                return rewards

    async def point_value(self, merchant_id: str) -> Decimal:
        return point_value(await self._rewards(merchant_id)).per_point

    async def report(self, merchant_id: str, horizon_days: int) -> LiabilityReport:
        now = self._clock()
        figures = await self._store.liability(merchant_id, now, horizon_days)
        program = await self._programs.get(merchant_id)
        return LiabilityReport(
            figures=figures,
            value=point_value(await self._rewards(merchant_id)),
            tier_names={t.tier_id: t.name for t in program.vip_tiers},
            horizon_days=horizon_days,
            as_of=now,
        )

    async def summary(self, merchant_id: str, table: LiabilityTable | None) -> LiabilitySummary:
        """The table's totals priced as the report prices points; LiabilityUnsupported
        without a table (MongoDB)."""
        if table is None:
            raise LiabilityUnsupported("MongoDB")
        totals = await table.totals(merchant_id)
        return LiabilitySummary(totals, point_value(await self._rewards(merchant_id)))
