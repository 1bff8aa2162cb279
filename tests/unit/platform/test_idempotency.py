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


def test_internal_keys_tell_another_write_under_the_same_key() -> None:
    first = IdempotencyKey.internal("order:1001", "42", 211)
    assert first == IdempotencyKey.internal("order:1001", "42", 211)
    assert first.key == "order:1001"
    assert first.fingerprint != IdempotencyKey.internal("order:1001", "42", 150).fingerprint
