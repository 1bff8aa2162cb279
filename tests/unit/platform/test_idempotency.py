from __future__ import annotations

from loyalnest.gen.points.v1 import points_pb2 as pb
from loyalnest.platform.idempotency import IdempotencyKey


def _earn(points: int, key: str = "k") -> pb.EarnPointsRequest:
    return pb.EarnPointsRequest(customer_id="c", points=points, idempotency_key=key)


def test_fingerprint_ignores_the_key_but_not_the_parameters():
    first = IdempotencyKey.of("EarnPoints", _earn(10, "a"))
    assert first.key == "a"
    assert first.fingerprint == IdempotencyKey.of("EarnPoints", _earn(10, "b")).fingerprint
    assert first.fingerprint != IdempotencyKey.of("EarnPoints", _earn(11, "a")).fingerprint


def test_fingerprint_includes_the_method():
    redeem = pb.RedeemPointsRequest(customer_id="c", points=10, idempotency_key="a")
    assert (
        IdempotencyKey.of("EarnPoints", _earn(10)).fingerprint
        != IdempotencyKey.of("RedeemPoints", redeem).fingerprint
    )
