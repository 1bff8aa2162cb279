"""The shared earning-rule check (platform/earning_rules.py): what Core accepts as published
rules and Points as a draft to simulate, field by field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.platform.earning_rules import (
    MAX_EARNING_RULES,
    canonical_decimal,
    canonical_rule,
    check_earning_rules,
    decimal_text,
    is_timezone,
    program_timezone,
)

R = core_pb2.EarningRule


def _period(days: int) -> duration_pb2.Duration:
    period = duration_pb2.Duration()
    period.FromTimedelta(timedelta(days=days))
    return period


def _at(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


VALID = [
    R(rule_id="spend", type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER, points_per_currency_unit="1.5"),
    R(rule_id="fixed", type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER, points=10, min_spend="20"),
    R(
        rule_id="weekend",
        type=core_pb2.EARNING_RULE_TYPE_ORDER_MULTIPLIER,
        multiplier="2",
        start_time=_at(datetime(2026, 12, 12, tzinfo=UTC)),
        end_time=_at(datetime(2026, 12, 14, tzinfo=UTC)),
    ),
    R(rule_id="punch", type=core_pb2.EARNING_RULE_TYPE_PUNCH_CARD, points=50, punch_count=5),
    R(
        rule_id="goal",
        type=core_pb2.EARNING_RULE_TYPE_GOAL_SPEND,
        points=100,
        min_spend="500",
        goal_period=_period(30),
    ),
    R(
        rule_id="review",
        type=core_pb2.EARNING_RULE_TYPE_CUSTOM_ACTIVITY,
        points=20,
        activity="product_review",
        limit=core_pb2.EarningLimit(max_awards=2, period=core_pb2.LIMIT_PERIOD_MONTH),
    ),
    R(rule_id="bday", type=core_pb2.EARNING_RULE_TYPE_BIRTHDAY, points=50),
    R(
        rule_id="anniv",
        type=core_pb2.EARNING_RULE_TYPE_ANNIVERSARY,
        points=25,
        start_time=_at(datetime(2027, 1, 1, tzinfo=UTC)),
    ),
    R(rule_id="news", type=core_pb2.EARNING_RULE_TYPE_NEWSLETTER_SIGNUP, points=30),
]


def test_a_rule_of_every_type_passes() -> None:
    assert check_earning_rules(VALID) == []


def test_once_only_rules_take_points_and_nothing_of_orders() -> None:
    year = core_pb2.EarningLimit(max_awards=2, period=core_pb2.LIMIT_PERIOD_YEAR)
    rules = [
        R(rule_id="a", type=core_pb2.EARNING_RULE_TYPE_BIRTHDAY, points=5, limit=year),
        R(rule_id="b", type=core_pb2.EARNING_RULE_TYPE_ANNIVERSARY, min_spend="10",
          channels=[core_pb2.SALES_CHANNEL_POS]),
        R(rule_id="c", type=core_pb2.EARNING_RULE_TYPE_NEWSLETTER_SIGNUP, points=5,
          points_per_currency_unit="1", activity="news"),
    ]  # fmt: skip
    assert {v.field.removeprefix("settings.earning_rules") for v in check_earning_rules(rules)} == {
        "[0].limit",
        "[1].points",
        "[1].min_spend",
        "[1].channels",
        "[2].points_per_currency_unit",
        "[2].activity",
    }


@pytest.mark.parametrize(
    ("rule", "fields"),
    [
        (R(rule_id="Bad Id", type=core_pb2.EARNING_RULE_TYPE_PUNCH_CARD, points=1, punch_count=2),
         {"[0].rule_id"}),
        (R(rule_id="x", points=5), {"[0].type"}),
        (R(rule_id="x", type=99, points=5), {"[0].type"}),  # type: ignore[arg-type]
        (R(rule_id="x", type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER), {"[0].points"}),
        (
            R(rule_id="x", type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER,
              points_per_currency_unit="1.00001", points=3),
            {"[0].points_per_currency_unit", "[0].points"},
        ),
        (
            R(rule_id="x", type=core_pb2.EARNING_RULE_TYPE_ORDER_MULTIPLIER, multiplier="1",
              points=2, limit=core_pb2.EarningLimit(max_awards=1,
                                                   period=core_pb2.LIMIT_PERIOD_DAY)),
            {"[0].multiplier", "[0].points", "[0].limit"},
        ),
        (
            R(rule_id="x", type=core_pb2.EARNING_RULE_TYPE_PUNCH_CARD, points=1, punch_count=1,
              channels=[core_pb2.SALES_CHANNEL_POS, 7]),  # type: ignore[list-item]
            {"[0].punch_count", "[0].channels"},
        ),
        (
            R(rule_id="x", type=core_pb2.EARNING_RULE_TYPE_GOAL_SPEND, points=1,
              goal_period=_period(400)),
            {"[0].min_spend", "[0].goal_period"},
        ),
        (
            R(rule_id="x", type=core_pb2.EARNING_RULE_TYPE_CUSTOM_ACTIVITY, points=1,
              activity="A Review", min_spend="5", channels=[core_pb2.SALES_CHANNEL_ONLINE],
              multiplier="2", punch_count=3, goal_period=_period(2)),
            {"[0].activity", "[0].min_spend", "[0].channels", "[0].multiplier",
             "[0].punch_count", "[0].goal_period"},
        ),
        (
            R(rule_id="x", type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER, points=1,
              activity="review", name="n" * 101,
              start_time=_at(datetime(2026, 12, 14, tzinfo=UTC)),
              end_time=_at(datetime(2026, 12, 12, tzinfo=UTC)),
              limit=core_pb2.EarningLimit(max_awards=0, period=42)),  # type: ignore[arg-type]
            {"[0].activity", "[0].name", "[0].end_time", "[0].limit.max_awards",
             "[0].limit.period"},
        ),
    ],
)  # fmt: skip
def test_each_bad_field_is_named(rule: core_pb2.EarningRule, fields: set[str]) -> None:
    violations = check_earning_rules([rule])
    assert {v.field.removeprefix("settings.earning_rules") for v in violations} == fields


def test_ids_are_unique_and_the_set_is_bounded() -> None:
    twice = [VALID[0], VALID[0]]
    assert [v.field for v in check_earning_rules(twice)] == ["settings.earning_rules[1].rule_id"]
    many = [R(rule_id=f"r{i}", type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER, points=1)
            for i in range(MAX_EARNING_RULES + 1)]  # fmt: skip
    assert [v.field for v in check_earning_rules(many)] == ["settings.earning_rules"]


def test_the_caller_names_the_field() -> None:
    # Points' simulation: the draft is the request's `rules`.
    bad = [VALID[0], R(rule_id="x", type=core_pb2.EARNING_RULE_TYPE_PUNCH_CARD, points=5)]
    assert [v.field for v in check_earning_rules(bad, field="rules")] == ["rules[1].punch_count"]


def test_a_rule_is_stored_in_one_spelling() -> None:
    rule = R(
        rule_id="x",
        type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER,
        points_per_currency_unit="1.50",
        min_spend=" 20.0 ",
        channels=[core_pb2.SALES_CHANNEL_POS, core_pb2.SALES_CHANNEL_ONLINE,
                  core_pb2.SALES_CHANNEL_POS],
    )  # fmt: skip
    stored = canonical_rule(rule)
    assert (stored.points_per_currency_unit, stored.min_spend) == ("1.5", "20")
    assert list(stored.channels) == [core_pb2.SALES_CHANNEL_ONLINE, core_pb2.SALES_CHANNEL_POS]
    assert rule.points_per_currency_unit == "1.50"  # the caller's message is left alone


def test_decimals_print_canonically() -> None:
    assert decimal_text(canonical_decimal("10")) == "10"  # type: ignore[arg-type]
    assert decimal_text(canonical_decimal(" 1.500 ")) == "1.5"  # type: ignore[arg-type]
    assert canonical_decimal("Infinity") is None


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("Europe/Paris", True),
        ("America/New_York", True),
        ("UTC", True),
        ("Mars/Olympus_Mons", False),
        ("+02:00", False),
        ("/etc/passwd", False),
        ("../../etc/passwd", False),
        ("", False),
    ],
)
def test_a_programs_time_zone(name: str, valid: bool) -> None:
    assert is_timezone(name) is valid
    zone = program_timezone(core_pb2.ProgramSettings(timezone=name))
    assert str(zone) == (name if valid else "UTC")
