"""Which day is whose anniversary, and which rules the occasions job applies on a day."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.platform.program_settings import default_program
from loyalnest.services.points.occasions import anniversary_on, occasion_rules


@pytest.mark.parametrize(
    ("joined", "day", "expected"),
    [
        (datetime(2025, 12, 6, 23, 59, tzinfo=UTC), date(2026, 12, 6), True),
        (datetime(2020, 12, 6, tzinfo=UTC), date(2026, 12, 6), True),  # the sixth
        (datetime(2026, 12, 6, tzinfo=UTC), date(2026, 12, 6), False),  # joined today
        (datetime(2025, 12, 7, tzinfo=UTC), date(2026, 12, 6), False),
        (datetime(2024, 2, 29, tzinfo=UTC), date(2025, 2, 28), True),  # no 29th in 2025
        (datetime(2024, 2, 29, tzinfo=UTC), date(2028, 2, 28), False),  # 2028 has one
        (datetime(2024, 2, 29, tzinfo=UTC), date(2028, 2, 29), True),
        (datetime(2024, 2, 28, tzinfo=UTC), date(2025, 2, 28), True),
    ],
)
def test_anniversaries(joined: datetime, day: date, expected: bool) -> None:
    assert anniversary_on(joined, day) is expected


def test_the_rules_of_the_day() -> None:
    program = default_program()
    R = core_pb2.EarningRule  # noqa: N806
    stamp = core_pb2.EarningRule().start_time.__class__
    later = stamp()
    later.FromDatetime(datetime(2026, 12, 7, 12, tzinfo=UTC))
    program.earning_rules.extend(
        [
            R(rule_id="b", enabled=True, type=core_pb2.EARNING_RULE_TYPE_BIRTHDAY, points=5),
            R(rule_id="off", enabled=False, type=core_pb2.EARNING_RULE_TYPE_BIRTHDAY, points=5),
            R(rule_id="a", enabled=True, type=core_pb2.EARNING_RULE_TYPE_ANNIVERSARY, points=5,
              start_time=later),
            R(rule_id="p", enabled=True, type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER, points=5),
        ]
    )  # fmt: skip
    assert [r.rule_id for r in occasion_rules(program, date(2026, 12, 6))] == ["b"]
    # A window starting during the day counts for that day.
    assert [r.rule_id for r in occasion_rules(program, date(2026, 12, 7))] == ["b", "a"]
    program.program_enabled = False
    assert occasion_rules(program, date(2026, 12, 7)) == []
