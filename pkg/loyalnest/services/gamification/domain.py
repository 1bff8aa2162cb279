"""Rules of the Gamification service, without I/O.

Badge rules are declarative: a kind (what is counted) and a threshold (or an RFM segment).
A customer's progress is a handful of counters kept from their events (lifetime points,
orders, completed referrals, the best run of consecutive months with an order, the current
RFM segment); a rule is met when its counter reaches its threshold. Evaluating is pure, so
the store can evaluate every rule in the transaction that moved the counters, and award each
badge once (a unique award per customer and rule).

Leaderboards rank by points earned in a period: all time, the calendar month, the ISO week
(UTC), each named by a period key ("all", "2026-12", "2026-W49").
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace
from datetime import datetime

from loyalnest.platform.errors import NotFound

MAX_RULE_NAME_LENGTH = 100
MAX_THRESHOLD = 1_000_000_000
NAME_RE = re.compile(r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$")
SEGMENTS = frozenset({"high_value", "at_risk", "new"})
ALL_TIME = "all"


class RuleKind(enum.StrEnum):
    POINTS = "points"
    ORDERS = "orders"
    REFERRALS = "referrals"
    STREAK_MONTHS = "streak_months"
    RFM_SEGMENT = "rfm_segment"
    MANUAL = "manual"


COUNTED = frozenset({RuleKind.POINTS, RuleKind.ORDERS, RuleKind.REFERRALS, RuleKind.STREAK_MONTHS})


class Period(enum.StrEnum):
    ALL_TIME = "all_time"
    MONTH = "month"
    WEEK = "week"


@dataclass(frozen=True)
class BadgeRule:
    rule_id: str
    merchant_id: str
    name: str
    kind: RuleKind
    threshold: int
    segment: str
    created_at: datetime


@dataclass(frozen=True)
class Badge:
    badge_id: str
    rule_id: str
    name: str
    kind: RuleKind
    awarded_by: str  # "rule" | "manual"
    awarded_at: datetime


@dataclass(frozen=True)
class Progress:
    """A customer's counters (customer_progress)."""

    lifetime_points: int = 0
    orders: int = 0
    referrals: int = 0
    # Months as year * 12 + (month - 1); 0: no order yet.
    last_order_month: int = 0
    current_streak: int = 0
    best_streak: int = 0
    rfm_segment: str = ""

    def with_order(self, month: int) -> Progress:
        """One more order in `month`: the run of consecutive months grows, holds or restarts.
        An order of an earlier month than the last (a late event) counts, but moves no run."""
        if month == self.last_order_month:
            streak = self.current_streak
        elif month == self.last_order_month + 1:
            streak = self.current_streak + 1
        elif month > self.last_order_month:
            streak = 1
        else:
            return replace(self, orders=self.orders + 1)
        return replace(
            self,
            orders=self.orders + 1,
            last_order_month=month,
            current_streak=streak,
            best_streak=max(self.best_streak, streak),
        )


@dataclass(frozen=True)
class RuleProgress:
    rule: BadgeRule
    current: int
    target: int

    @property
    def met(self) -> bool:
        return self.rule.kind != RuleKind.MANUAL and self.current >= self.target


def progress_toward(rule: BadgeRule, progress: Progress) -> RuleProgress:
    if rule.kind == RuleKind.RFM_SEGMENT:
        return RuleProgress(rule, int(progress.rfm_segment == rule.segment), 1)
    if rule.kind == RuleKind.MANUAL:
        return RuleProgress(rule, 0, 1)
    current = {
        RuleKind.POINTS: progress.lifetime_points,
        RuleKind.ORDERS: progress.orders,
        RuleKind.REFERRALS: progress.referrals,
        RuleKind.STREAK_MONTHS: progress.best_streak,
    }[rule.kind]
    return RuleProgress(rule, current, rule.threshold)


def month_of(moment: datetime) -> int:
    return moment.year * 12 + moment.month - 1


def period_key(period: Period, moment: datetime) -> str:
    if period == Period.MONTH:
        return f"{moment.year:04d}-{moment.month:02d}"
    if period == Period.WEEK:
        year, week, _ = moment.isocalendar()
        return f"{year:04d}-W{week:02d}"
    return ALL_TIME


def period_keys(moment: datetime) -> tuple[str, str, str]:
    """The boards an earn at `moment` counts on."""
    return ALL_TIME, period_key(Period.MONTH, moment), period_key(Period.WEEK, moment)


def is_order_credit(reason: str) -> bool:
    """Points credits for an order carry `order:<order id>` (Points' contract with Core)."""
    return reason.startswith("order:") and reason.count(":") == 1


def rule_problems(
    name: str, kind: RuleKind | None, threshold: int, segment: str
) -> list[tuple[str, str]]:
    """(field, description) of what is wrong with a rule; empty when it is valid."""
    problems: list[tuple[str, str]] = []
    if not name.strip():
        problems.append(("rule.name", "is required"))
    elif len(name) > MAX_RULE_NAME_LENGTH or not NAME_RE.match(name):
        problems.append(
            (
                "rule.name",
                f"must be at most {MAX_RULE_NAME_LENGTH} printable characters,"
                " without leading or trailing spaces",
            )
        )
    if kind is None:
        problems.append(("rule.kind", "is required"))
    elif kind in COUNTED and not 1 <= threshold <= MAX_THRESHOLD:
        problems.append(("rule.threshold", f"must be 1 to {MAX_THRESHOLD} for a {kind} rule"))
    elif kind == RuleKind.RFM_SEGMENT and segment not in SEGMENTS:
        problems.append(("rule.segment", f"must be one of {', '.join(sorted(SEGMENTS))}"))
    return problems


class RuleNotFound(NotFound):
    def __init__(self, rule_id: str) -> None:
        super().__init__("badge_rule", rule_id)
