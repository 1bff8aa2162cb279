"""The inbox's run claim: what a statement applying a run of events is given."""

from __future__ import annotations

import dataclasses

import pytest

from loyalnest.gen.events.v1 import points_pb2
from loyalnest.platform.events import inbox
from loyalnest.platform.events.envelope import ConsumedEvent
from tests.consumed_events import consumed


def _earned(offset: int, consumer: str = "loyalnest.points") -> ConsumedEvent:
    payload = points_pb2.PointsEarned(customer_id="c-1", points=offset + 1)
    return consumed("m-1", payload, offset=offset, consumer=consumer)


def test_a_runs_claim_parameters_hold_its_events_in_order() -> None:
    run = [_earned(7), _earned(8)]

    params = inbox.run_claim_params(run)

    assert params["run_consumer"] == "loyalnest.points"
    assert params["run_event_id"] == [run[0].event_id, run[1].event_id]
    assert params["run_offset"] == [7, 8]


def test_a_run_of_two_consumers_is_refused() -> None:
    with pytest.raises(ValueError, match="one consumer's"):
        inbox.run_claim_params([_earned(1), _earned(2, consumer="loyalnest.rfm")])


def test_a_repeated_event_is_a_first_delivery_once() -> None:
    first = _earned(3)
    again = dataclasses.replace(first, offset=4)

    assert inbox.first_deliveries([first, again], {first.event_id}) == [True, False]


def test_the_statements_own_columns_follow_the_claims() -> None:
    sql = inbox.claimed_run({"merchant_id": "text", "points": "bigint"})

    assert '"offset", merchant_id, points)' in sql
    assert "%(merchant_id)s::text[], %(points)s::bigint[])" in sql
