"""Gamification's domain values as protobuf messages, and its enums both ways."""

from __future__ import annotations

from loyalnest.gen.gamification.v1 import gamification_pb2 as pb
from loyalnest.platform.protos import timestamp
from loyalnest.services.gamification.domain import Badge, BadgeRule, Period, RuleKind, RuleProgress
from loyalnest.services.gamification.leaderboards import BoardPage, Entry

RULE_KINDS: dict[RuleKind, pb.RuleKind] = {
    RuleKind.POINTS: pb.RULE_KIND_POINTS,
    RuleKind.ORDERS: pb.RULE_KIND_ORDERS,
    RuleKind.REFERRALS: pb.RULE_KIND_REFERRALS,
    RuleKind.STREAK_MONTHS: pb.RULE_KIND_STREAK_MONTHS,
    RuleKind.RFM_SEGMENT: pb.RULE_KIND_RFM_SEGMENT,
    RuleKind.MANUAL: pb.RULE_KIND_MANUAL,
}
_KIND_OF: dict[int, RuleKind] = {int(value): kind for kind, value in RULE_KINDS.items()}
PERIODS: dict[int, Period] = {
    pb.PERIOD_UNSPECIFIED: Period.ALL_TIME,
    pb.PERIOD_ALL_TIME: Period.ALL_TIME,
    pb.PERIOD_MONTH: Period.MONTH,
    pb.PERIOD_WEEK: Period.WEEK,
}


def rule_kind(value: int) -> RuleKind | None:
    return _KIND_OF.get(value)


def rule_proto(rule: BadgeRule) -> pb.BadgeRule:
    return pb.BadgeRule(
        rule_id=rule.rule_id,
        name=rule.name,
        kind=RULE_KINDS[rule.kind],
        threshold=rule.threshold,
        segment=rule.segment,
        create_time=timestamp(rule.created_at),
    )


def badge_proto(badge: Badge) -> pb.Badge:
    return pb.Badge(
        badge_id=badge.badge_id,
        rule_id=badge.rule_id,
        name=badge.name,
        kind=RULE_KINDS[badge.kind],
        awarded_by=badge.awarded_by,
        award_time=timestamp(badge.awarded_at),
    )


def progress_proto(progress: RuleProgress) -> pb.BadgeProgress:
    return pb.BadgeProgress(
        rule_id=progress.rule.rule_id,
        name=progress.rule.name,
        kind=RULE_KINDS[progress.rule.kind],
        current=min(progress.current, progress.target),
        target=progress.target,
    )


def entry_proto(entry: Entry) -> pb.LeaderboardEntry:
    return pb.LeaderboardEntry(rank=entry.rank, customer_id=entry.customer_id, score=entry.score)


def board_proto(page: BoardPage, next_page_token: str) -> pb.GetLeaderboardResponse:
    return pb.GetLeaderboardResponse(
        entries=[entry_proto(e) for e in page.entries],
        next_page_token=next_page_token,
        own=entry_proto(page.own) if page.own else None,
        period_key=page.period_key,
    )
