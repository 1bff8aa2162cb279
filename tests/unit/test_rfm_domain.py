"""The RFM rules of README "RFM", without a database: the worked example's numbers, the tie
rule against width_bucket's and ntile's, and the time invariance of the activity key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from loyalnest.services.rfm import domain
from loyalnest.services.rfm.domain import Group, Scores

NOW = datetime(2026, 12, 1, tzinfo=UTC)
H = 90.0


def key(*days_ago: float) -> float:
    found = domain.activity_key([NOW - timedelta(days=d) for d in days_ago], H)
    assert found is not None
    return found


def test_the_worked_example_activity() -> None:
    assert domain.activity_at(key(90), NOW, H) == pytest.approx(0.5)
    assert domain.activity_at(key(5, 40, 100, 200, 300, 400), NOW, H) == pytest.approx(
        2.5195, abs=1e-4
    )
    # Two orders 20 and 50 days ago outrank one 3 days ago: the time weighting.
    assert key(20, 50) > key(3)


def test_the_key_ranks_the_same_at_any_read_time() -> None:
    a, b = key(10, 200), key(60)
    for later in (0, 30, 365):
        at = NOW + timedelta(days=later)
        assert (domain.activity_at(a, at, H) > domain.activity_at(b, at, H)) == (a > b)
        # Everyone's activity halves every half-life.
        assert domain.activity_at(a, at + timedelta(days=H), H) == pytest.approx(
            domain.activity_at(a, at, H) / 2
        )


def test_monetary_cutoffs_and_the_tie_rule() -> None:
    spends = [30.0] * 9 + [75.0] * 3 + [100, 250, 260, 300, 400, 570, 600, 780]
    cutoffs = domain.cutoffs_of(spends)
    assert cutoffs == pytest.approx((30.0, 30.0, 85.0, 320.0))
    assert cutoffs is not None
    # The nine tied at 30.00 share the upper middle of quintiles 1-3.
    assert domain.quintile(30.0, cutoffs) == 2
    assert [domain.quintile(v, cutoffs) for v in (75.0, 100.0, 330.0, 400.0)] == [3, 4, 5, 5]
    # Without duplicate cutoffs it is width_bucket's rule: a bound belongs to the bucket above.
    assert domain.quintile(2.0, (1.0, 2.0, 3.0, 4.0)) == 3
    assert domain.cutoffs_of([1.0, 2.0, 3.0, 4.0]) is None  # below five customers


def test_small_merchants_and_prospects() -> None:
    scores = domain.score(
        orders=1,
        monetary=Decimal(80),
        activity_key=key(10),
        last_order_at=NOW - timedelta(days=10),
        cutoffs=None,
        now=NOW,
    )
    assert scores == Scores(5, 1, 3)
    assert domain.group_of(scores) is Group.NEW
    assert domain.recency_by_days(400) == 1
    none = domain.score(
        orders=0, monetary=Decimal(0), activity_key=None, last_order_at=None, cutoffs=None, now=NOW
    )
    assert domain.group_of(none) is Group.PROSPECT


def test_every_cell_has_a_group_and_every_group_a_cell() -> None:
    cells = [Scores(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)]
    assert {domain.group_of(c) for c in cells} == set(Group) - {Group.PROSPECT}
    assert domain.group_of(Scores(2, 1, 5)) is Group.AT_RISK  # c19 of the example


def test_order_amounts_are_lines_less_discounts() -> None:
    # The fixture order of README "From a Shopify order...": 2 x 30 + 60 - 12 = 108.
    assert domain.order_amount([("30.00", 2, "6.00"), ("60.00", 1, "6.00")]) == Decimal("108.00")
    with pytest.raises(domain.MalformedOrder):
        domain.order_amount([("abc", 1, "0")])
    assert domain.refund_amount(["54.00", "0"]) == Decimal("54.00")
