"""Earning rules as a merchant publishes them (`ProgramSettings.earning_rules`): the one check
of what a rule set may be, and the form it is stored in.

Shared, not Core's: Core validates the rules a merchant saves with it, and Points validates a
draft rule set it is asked to simulate with the very same check; a service never imports
another service's modules, so the check lives here, beside `program_settings.py`. Also the
program's time zone (`timezone`), which Core checks and Points counts the merchant's days in.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from datetime import timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from loyalnest.gen.events.v1 import core_pb2 as core_events
from loyalnest.gen.events.v1 import rfm_pb2 as rfm_events
from loyalnest.platform.errors import FieldViolation

MAX_POINTS_PER_CURRENCY_UNIT = Decimal(10_000)
MAX_MULTIPLIER = Decimal(100)
MAX_DECIMAL_PLACES = 4
MAX_NAME_LENGTH = 100

MAX_EARNING_RULES = 50
MAX_RULE_POINTS = 1_000_000
MAX_MIN_SPEND = Decimal(10**9)
MAX_GOAL_PERIOD = timedelta(days=366)
RULE_ID_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
RULE_ID_RULE = "must be 1-64 characters of a-z, 0-9, - and _"
# Where the rules sit in Core's UpdateProgramSettings: the default field names.
EARNING_RULES_FIELD = "settings.earning_rules"
VIP_TIERS_FIELD = "settings.vip_tiers"
GRACE_DAYS_FIELD = "settings.vip_grace_days"
# VIP tier perks and the grace rule (tiers.py in Points).
MAX_TIER_MULTIPLIER = Decimal(10)
MAX_ENTRY_REWARD = 1_000_000
MAX_GRACE_DAYS = 365
MAX_ELIGIBLE_TIERS = 10
_SEGMENTS = frozenset(
    {
        rfm_events.RFM_SEGMENT_HIGH_VALUE,
        rfm_events.RFM_SEGMENT_AT_RISK,
        rfm_events.RFM_SEGMENT_NEW,
    }
)

_ORDER_RULES = frozenset(
    {
        core_events.EARNING_RULE_TYPE_PLACE_ORDER,
        core_events.EARNING_RULE_TYPE_ORDER_MULTIPLIER,
        core_events.EARNING_RULE_TYPE_PUNCH_CARD,
        core_events.EARNING_RULE_TYPE_GOAL_SPEND,
    }
)
# Awarded once per occurrence by their nature (a year, a sign-up): a limit has no meaning.
ONCE_RULES = frozenset(
    {
        core_events.EARNING_RULE_TYPE_BIRTHDAY,
        core_events.EARNING_RULE_TYPE_ANNIVERSARY,
        core_events.EARNING_RULE_TYPE_NEWSLETTER_SIGNUP,
    }
)
# The rules whose awards know the customer's tier when decided (Points' rules.py for orders
# and activities, occasions.py, the newsletter credit): eligible_tiers is only accepted where
# it is enforced. Every rule type now.
TIERED_RULES = _ORDER_RULES | {core_events.EARNING_RULE_TYPE_CUSTOM_ACTIVITY} | ONCE_RULES
_CHANNELS = frozenset({core_events.SALES_CHANNEL_ONLINE, core_events.SALES_CHANNEL_POS})
_PERIODS = frozenset(
    {
        core_events.LIMIT_PERIOD_EVER,
        core_events.LIMIT_PERIOD_DAY,
        core_events.LIMIT_PERIOD_MONTH,
        core_events.LIMIT_PERIOD_YEAR,
    }
)


# --- decimals as the program spells them -----------------------------------------------------


def canonical_decimal(text: str) -> Decimal | None:
    """A finite decimal from its text, or None; "1.50" and "1.5" are the same number."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def decimal_text(value: Decimal) -> str:
    # Fixed-point, no exponent ("10", not "1E+1"), no trailing zeros.
    return format(value.normalize(), "f")


def decimal_places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def check_decimal(
    violations: list[FieldViolation], field: str, text: str, *, positive: bool, maximum: Decimal
) -> None:
    value = canonical_decimal(text)
    sign = "greater than 0" if positive else "at least 0"
    rule = (
        f"must be a decimal number {sign} and at most {maximum},"
        f" with at most {MAX_DECIMAL_PLACES} decimal places"
    )
    if (
        value is None
        or (value <= 0 if positive else value < 0)
        or value > maximum
        or decimal_places(value) > MAX_DECIMAL_PLACES
    ):
        violations.append(FieldViolation(field, rule))


# --- the rules -------------------------------------------------------------------------------


def _check_rule(violations: list[FieldViolation], at: str, rule: core_events.EarningRule) -> None:
    """One earning rule: each type's fields present and in range, none of another type's."""
    kind = rule.type
    if kind not in core_events.EarningRuleType.values() or kind == 0:
        violations.append(FieldViolation(f"{at}.type", "must be an EARNING_RULE_TYPE_*"))
        return
    if len(rule.name) > MAX_NAME_LENGTH:
        violations.append(FieldViolation(f"{at}.name", f"at most {MAX_NAME_LENGTH} characters"))
    rate_based = kind == core_events.EARNING_RULE_TYPE_PLACE_ORDER and bool(
        rule.points_per_currency_unit
    )
    if rate_based:
        check_decimal(
            violations,
            f"{at}.points_per_currency_unit",
            rule.points_per_currency_unit,
            positive=True,
            maximum=MAX_POINTS_PER_CURRENCY_UNIT,
        )
        if rule.points:
            violations.append(
                FieldViolation(f"{at}.points", "a rate-based rule awards no fixed points")
            )
    elif rule.points_per_currency_unit:
        violations.append(
            FieldViolation(
                f"{at}.points_per_currency_unit", "only for EARNING_RULE_TYPE_PLACE_ORDER"
            )
        )
    if kind == core_events.EARNING_RULE_TYPE_ORDER_MULTIPLIER:
        value = canonical_decimal(rule.multiplier)
        if value is None or value <= 1 or value > MAX_MULTIPLIER:
            violations.append(
                FieldViolation(
                    f"{at}.multiplier", f"must be a decimal above 1, at most {MAX_MULTIPLIER}"
                )
            )
        if rule.points:
            violations.append(
                FieldViolation(f"{at}.points", "a multiplier awards no points itself")
            )
    else:
        if rule.multiplier:
            violations.append(FieldViolation(f"{at}.multiplier", "only for ORDER_MULTIPLIER rules"))
        if not rate_based and not 0 < rule.points <= MAX_RULE_POINTS:
            violations.append(FieldViolation(f"{at}.points", f"must be 1 to {MAX_RULE_POINTS}"))
    if rule.min_spend or kind == core_events.EARNING_RULE_TYPE_GOAL_SPEND:
        if kind not in _ORDER_RULES:
            violations.append(FieldViolation(f"{at}.min_spend", "only for rules on orders"))
        else:
            check_decimal(
                violations, f"{at}.min_spend", rule.min_spend, positive=True, maximum=MAX_MIN_SPEND
            )
    if rule.channels and kind not in _ORDER_RULES:
        violations.append(FieldViolation(f"{at}.channels", "only for rules on orders"))
    if any(c not in _CHANNELS for c in rule.channels):
        violations.append(FieldViolation(f"{at}.channels", "each SALES_CHANNEL_ONLINE or _POS"))
    if (
        rule.HasField("start_time")
        and rule.HasField("end_time")
        and rule.end_time.ToDatetime() <= rule.start_time.ToDatetime()
    ):
        violations.append(FieldViolation(f"{at}.end_time", "must be after start_time"))
    if rule.HasField("limit"):
        if kind == core_events.EARNING_RULE_TYPE_ORDER_MULTIPLIER:
            violations.append(FieldViolation(f"{at}.limit", "a multiplier has no limit"))
        if kind in ONCE_RULES:
            violations.append(
                FieldViolation(
                    f"{at}.limit",
                    "birthdays and anniversaries earn once a year, a newsletter sign-up once:"
                    " no limit",
                )
            )
        if not 0 < rule.limit.max_awards <= 1000:
            violations.append(FieldViolation(f"{at}.limit.max_awards", "must be 1 to 1000"))
        if rule.limit.period not in _PERIODS:
            violations.append(FieldViolation(f"{at}.limit.period", "must be a LIMIT_PERIOD_*"))
    punch = kind == core_events.EARNING_RULE_TYPE_PUNCH_CARD
    if punch and not 2 <= rule.punch_count <= 1000:
        violations.append(FieldViolation(f"{at}.punch_count", "must be 2 to 1000"))
    elif not punch and rule.punch_count:
        violations.append(FieldViolation(f"{at}.punch_count", "only for PUNCH_CARD rules"))
    goal = kind == core_events.EARNING_RULE_TYPE_GOAL_SPEND
    period = rule.goal_period.ToTimedelta()
    if goal and not timedelta(days=1) <= period <= MAX_GOAL_PERIOD:
        violations.append(FieldViolation(f"{at}.goal_period", "must be 1 to 366 days"))
    elif not goal and rule.HasField("goal_period"):
        violations.append(FieldViolation(f"{at}.goal_period", "only for GOAL_SPEND rules"))
    if rule.eligible_tiers:
        if kind not in TIERED_RULES:
            violations.append(
                FieldViolation(
                    f"{at}.eligible_tiers", "only for rules that know the customer's tier"
                )
            )
        if len(rule.eligible_tiers) > MAX_ELIGIBLE_TIERS:
            violations.append(
                FieldViolation(f"{at}.eligible_tiers", f"at most {MAX_ELIGIBLE_TIERS} tiers")
            )
        for index, tier_id in enumerate(rule.eligible_tiers):
            if not RULE_ID_RE.match(tier_id):
                violations.append(FieldViolation(f"{at}.eligible_tiers[{index}]", RULE_ID_RULE))
    for index, segment in enumerate(rule.eligible_segments):
        if segment not in _SEGMENTS:
            violations.append(
                FieldViolation(
                    f"{at}.eligible_segments[{index}]",
                    "must be RFM_SEGMENT_HIGH_VALUE, RFM_SEGMENT_AT_RISK or RFM_SEGMENT_NEW",
                )
            )
    custom = kind == core_events.EARNING_RULE_TYPE_CUSTOM_ACTIVITY
    if custom and not RULE_ID_RE.match(rule.activity):
        violations.append(FieldViolation(f"{at}.activity", RULE_ID_RULE))
    elif not custom and rule.activity:
        violations.append(FieldViolation(f"{at}.activity", "only for CUSTOM_ACTIVITY rules"))


def check_earning_rules(
    rules: Sequence[core_events.EarningRule],
    *,
    field: str = EARNING_RULES_FIELD,
    tier_ids: Collection[str] | None = None,
) -> list[FieldViolation]:
    """What is wrong with `rules` as earning_rules, each violation named `{field}[i]...`: the
    one check for the rules Core publishes and for the drafts Points simulates. `tier_ids`:
    the program's tiers, which `eligible_tiers` must name (None: not checked here)."""
    violations: list[FieldViolation] = []
    if len(rules) > MAX_EARNING_RULES:
        violations.append(FieldViolation(field, f"at most {MAX_EARNING_RULES} rules"))
    seen: set[str] = set()
    for index, rule in enumerate(rules):
        at = f"{field}[{index}]"
        if not RULE_ID_RE.match(rule.rule_id):
            violations.append(FieldViolation(f"{at}.rule_id", RULE_ID_RULE))
        elif rule.rule_id in seen:
            violations.append(FieldViolation(f"{at}.rule_id", "names a rule already listed"))
        seen.add(rule.rule_id)
        _check_rule(violations, at, rule)
        if tier_ids is not None:
            for i, tier_id in enumerate(rule.eligible_tiers):
                if RULE_ID_RE.match(tier_id) and tier_id not in tier_ids:
                    violations.append(
                        FieldViolation(f"{at}.eligible_tiers[{i}]", "names no tier of vip_tiers")
                    )
    return violations


def check_tier_references(program: core_events.ProgramSettings) -> list[FieldViolation]:
    """The rules' eligible_tiers against the program's tiers, once both are known (a change of
    either may break the other: a tier removed that a rule still names)."""
    tier_ids = {t.tier_id for t in program.vip_tiers}
    return [
        v
        for v in check_earning_rules(program.earning_rules, tier_ids=tier_ids)
        if ".eligible_tiers[" in v.field and v.description == "names no tier of vip_tiers"
    ]


def check_tier_perks(
    tiers: Sequence[core_events.VipTier], *, field: str = VIP_TIERS_FIELD
) -> list[FieldViolation]:
    """Each tier's perks: its earning multiplier and entry reward."""
    violations: list[FieldViolation] = []
    for index, tier in enumerate(tiers):
        at = f"{field}[{index}]"
        if tier.earning_multiplier:
            value = canonical_decimal(tier.earning_multiplier)
            if (
                value is None
                or not 1 <= value <= MAX_TIER_MULTIPLIER
                or decimal_places(value) > MAX_DECIMAL_PLACES
            ):
                violations.append(
                    FieldViolation(
                        f"{at}.earning_multiplier",
                        f"must be a decimal from 1 to {MAX_TIER_MULTIPLIER}, with at most"
                        f" {MAX_DECIMAL_PLACES} decimal places; empty: 1",
                    )
                )
        if not 0 <= tier.entry_reward_points <= MAX_ENTRY_REWARD:
            violations.append(
                FieldViolation(f"{at}.entry_reward_points", f"must be 0 to {MAX_ENTRY_REWARD}")
            )
    return violations


def check_grace_days(days: int, *, field: str = GRACE_DAYS_FIELD) -> list[FieldViolation]:
    """The merchant's grace rule: days a tier is kept past its term's end."""
    if not 0 <= days <= MAX_GRACE_DAYS:
        return [FieldViolation(field, f"must be 0 (none) to {MAX_GRACE_DAYS} days")]
    return []


def canonical_tier(tier: core_events.VipTier) -> core_events.VipTier:
    """The tier as stored: the multiplier in one spelling ("1.50" -> "1.5")."""
    stored = core_events.VipTier()
    stored.CopyFrom(tier)
    value = canonical_decimal(tier.earning_multiplier) if tier.earning_multiplier else None
    if value is not None:
        stored.earning_multiplier = decimal_text(value)
    return stored


def canonical_rule(rule: core_events.EarningRule) -> core_events.EarningRule:
    """The rule as stored: decimals in one spelling, channels once each."""
    stored = core_events.EarningRule()
    stored.CopyFrom(rule)
    for name in ("points_per_currency_unit", "min_spend", "multiplier"):
        value = canonical_decimal(getattr(rule, name)) if getattr(rule, name) else None
        if value is not None:
            setattr(stored, name, decimal_text(value))
    del stored.channels[:]
    stored.channels.extend(sorted(set(rule.channels)))
    del stored.eligible_tiers[:]
    stored.eligible_tiers.extend(dict.fromkeys(rule.eligible_tiers))
    del stored.eligible_segments[:]
    stored.eligible_segments.extend(sorted(set(rule.eligible_segments)))
    return stored


# --- the program's days ----------------------------------------------------------------------


def is_timezone(name: str) -> bool:
    """Whether `name` is an IANA time zone ("Europe/Paris"; not a path, not an offset)."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def program_timezone(program: core_events.ProgramSettings) -> tzinfo:
    """The zone the merchant's days are counted in (birthdays, anniversaries): UTC unless set."""
    return ZoneInfo(program.timezone) if is_timezone(program.timezone) else ZoneInfo("UTC")
