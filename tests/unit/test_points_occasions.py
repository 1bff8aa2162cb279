"""Which day is whose anniversary, which rules the occasions job applies on a day, and which
customer webhook reports a newsletter sign-up."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from loyalnest.gen.events.v1 import core_pb2, gateway_pb2
from loyalnest.platform.program_settings import default_program
from loyalnest.services.points.earning import newsletter_signup
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


def _customer(state: str, given: str | None, changed: str | None) -> gateway_pb2.ShopifyCustomer:
    customer = gateway_pb2.ShopifyCustomer(customer_id="1", email_marketing_state=state)
    if given is not None:
        customer.email_marketing_consent_updated_time.FromJsonString(given)
    if changed is not None:
        customer.updated_time.FromJsonString(changed)
    return customer


@pytest.mark.parametrize(
    ("topic", "customer", "expected"),
    [
        # Subscribed with this change: a sign-up (Shopify's 24-hour window).
        ("customers/update", _customer("subscribed", "2026-12-06T10:00:00Z",
                                       "2026-12-06T10:00:05Z"), True),
        ("customers/update", _customer("subscribed", "2026-12-05T11:00:00Z",
                                       "2026-12-06T10:00:00Z"), True),
        # Subscribed long ago, the record changed now (an address): not a sign-up.
        ("customers/update", _customer("subscribed", "2025-01-01T00:00:00Z",
                                       "2026-12-06T10:00:00Z"), False),
        ("customers/update", _customer("unsubscribed", "2026-12-06T10:00:00Z",
                                       "2026-12-06T10:00:00Z"), False),
        ("customers/update", _customer("pending", None, "2026-12-06T10:00:00Z"), False),
        # No consent time: only a new customer tells.
        ("customers/create", _customer("subscribed", None, None), True),
        ("customers/update", _customer("subscribed", None, "2026-12-06T10:00:00Z"), False),
    ],
)  # fmt: skip
def test_a_newsletter_sign_up(
    topic: str, customer: gateway_pb2.ShopifyCustomer, expected: bool
) -> None:
    assert newsletter_signup(topic, customer) is expected
