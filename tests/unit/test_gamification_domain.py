"""Gamification's rules without I/O: streaks, progress toward rules, periods, rule checks."""

from __future__ import annotations

from datetime import UTC, datetime

from loyalnest.services.gamification.domain import (
    BadgeRule,
    Period,
    Progress,
    RuleKind,
    is_order_credit,
    month_of,
    period_key,
    progress_toward,
    rule_problems,
)
from loyalnest.services.gamification.store.boards import BoardKeys


def _month(year: int, month: int) -> int:
    return month_of(datetime(year, month, 1, tzinfo=UTC))


def test_a_streak_grows_holds_restarts_and_ignores_late_orders() -> None:
    p = Progress()
    for year, month in ((2026, 11), (2026, 11), (2026, 12), (2027, 1)):
        p = p.with_order(_month(year, month))
    assert (p.orders, p.current_streak, p.best_streak) == (4, 3, 3)
    p = p.with_order(_month(2027, 3))  # February missed
    assert (p.current_streak, p.best_streak) == (1, 3)
    late = p.with_order(_month(2026, 5))
    assert (
        late.orders == 6
        and late.current_streak == 1
        and late.last_order_month == p.last_order_month
    )


def _rule(kind: RuleKind, threshold: int = 0, segment: str = "") -> BadgeRule:
    return BadgeRule("r", "m", "n", kind, threshold, segment, datetime.now(UTC))


def test_progress_toward_each_kind() -> None:
    p = Progress(lifetime_points=150, orders=2, referrals=1, best_streak=3, rfm_segment="at_risk")
    assert progress_toward(_rule(RuleKind.POINTS, 100), p).met
    assert not progress_toward(_rule(RuleKind.ORDERS, 3), p).met
    assert progress_toward(_rule(RuleKind.REFERRALS, 1), p).met
    assert progress_toward(_rule(RuleKind.STREAK_MONTHS, 3), p).met
    assert progress_toward(_rule(RuleKind.RFM_SEGMENT, segment="at_risk"), p).met
    assert not progress_toward(_rule(RuleKind.RFM_SEGMENT, segment="high_value"), p).met
    assert not progress_toward(_rule(RuleKind.MANUAL), p).met  # only by hand


def test_period_keys_and_order_credits() -> None:
    moment = datetime(2026, 12, 31, tzinfo=UTC)
    assert period_key(Period.ALL_TIME, moment) == "all"
    assert period_key(Period.MONTH, moment) == "2026-12"
    assert period_key(Period.WEEK, moment) == "2026-W53"
    assert is_order_credit("order:1001") and not is_order_credit("order:1001:cancelled")
    assert not is_order_credit("referral:7")


def test_rule_checks() -> None:
    assert rule_problems("Big spender", RuleKind.POINTS, 200, "") == []
    assert rule_problems("Founder", RuleKind.MANUAL, 0, "") == []
    assert [f for f, _ in rule_problems("x", RuleKind.ORDERS, 0, "")] == ["rule.threshold"]
    assert [f for f, _ in rule_problems("x", RuleKind.RFM_SEGMENT, 0, "vip")] == ["rule.segment"]
    assert [f for f, _ in rule_problems(" x", None, 0, "")] == ["rule.name", "rule.kind"]


def test_board_keys_share_the_merchants_hash_tag() -> None:
    keys = BoardKeys("m:1", "2026-12")
    assert keys.ranked == "leaderboard:{m%3A1}:2026-12:ranked"
    assert {k.split("}")[0] for k in (keys.listed, keys.built, keys.page(20, 20))} == {
        "leaderboard:{m%3A1"
    }
