"""Declared calls: service configs derived from the callee's proto, and target resolution."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ValidationError

from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.edge.v1 import edge_pb2, edge_pb2_grpc
from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.gen.roles.v1 import roles_pb2_grpc
from loyalnest.gen.users.v1 import users_pb2_grpc
from loyalnest.platform.calls import (
    CallConfigError,
    Calls,
    resolve_target,
    service_descriptor,
)
from loyalnest.platform.client import (
    MethodDeadlines,
    MethodPolicy,
    method_policies,
    service_config,
)
from loyalnest.platform.config import CallSettings

POINTS = points_pb2.DESCRIPTOR.services_by_name["PointsService"]
EDGE = edge_pb2.DESCRIPTOR.services_by_name["EdgeService"]


def _policies(service: Any, default: float = 2.5) -> dict[str, MethodPolicy]:
    return {
        path.rpartition("/")[2]: policy
        for path, policy in method_policies(service, default_timeout_seconds=default).items()
    }


def _retried(config: str) -> dict[str, dict[str, Any]]:
    return {c["name"][0]["method"]: c["retryPolicy"] for c in json.loads(config)["methodConfig"]}


def test_only_rpcs_safe_to_repeat_are_retried() -> None:
    policies = method_policies(POINTS)
    assert {path.rpartition("/")[2] for path in policies} == {m.name for m in POINTS.methods}
    retried = _retried(service_config(policies, max_attempts=3))
    # Reads (NO_SIDE_EFFECTS) and keyed writes (IDEMPOTENT) are retried on UNAVAILABLE...
    for name in ("GetPointsBalance", "ListTransactions", "EarnPoints", "RedeemReward"):
        assert retried[name]["retryableStatusCodes"] == ["UNAVAILABLE"], name
        assert retried[name]["maxAttempts"] == 3
    # ...writes without an idempotency key are not: a repeat could apply twice.
    for name in ("SyncOfflineTransactions", "UpdateReward"):
        assert name not in retried, name
    config = json.loads(service_config(policies))
    names = [c["name"] for c in config["methodConfig"]]
    assert [{"service": "loyalnest.points.v1.PointsService", "method": "EarnPoints"}] in names


def test_deadlines_come_from_the_route_option_else_the_default() -> None:
    edge = _policies(EDGE)
    # ReceiveWebhook declares (loyalnest.options.v1.route).timeout = 4s; GetRateLimits none.
    assert edge["ReceiveWebhook"].timeout_seconds == 4
    assert edge["GetRateLimits"].timeout_seconds == 2.5
    points = _policies(POINTS)
    assert points["EarnPoints"].timeout_seconds == 2.5
    # A server stream lasts as long as its caller wants: no deadline unless declared.
    assert points["StreamPoints"].timeout_seconds is None


def test_a_single_attempt_configures_no_retries() -> None:
    assert _retried(service_config(method_policies(POINTS), max_attempts=1)) == {}


def test_service_config_balances_round_robin_and_carries_no_deadlines() -> None:
    config = json.loads(service_config(method_policies(POINTS)))
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["retryThrottling"]["maxTokens"] > 0
    # Deadlines are set per call (gRPC Python ends service-config deadlines ~1 s early).
    assert all("timeout" not in c for c in config["methodConfig"])


@dataclass(frozen=True)
class _Details:
    method: str | bytes
    timeout: float | None

    def _replace(self, **changes: Any) -> _Details:
        return dataclasses.replace(self, **changes)


async def test_calls_get_their_rpcs_deadline_unless_the_caller_set_a_shorter_one() -> None:
    deadlines = MethodDeadlines(method_policies(EDGE), 2.5)
    seen: list[float | None] = []

    async def continuation(details: _Details, request: object) -> None:
        seen.append(details.timeout)

    webhook = "/loyalnest.edge.v1.EdgeService/ReceiveWebhook"
    await deadlines.intercept_unary_unary(continuation, _Details(webhook.encode(), None), None)
    await deadlines.intercept_unary_unary(continuation, _Details(webhook, 1.0), None)
    await deadlines.intercept_unary_unary(continuation, _Details(webhook, 10.0), None)
    await deadlines.intercept_unary_unary(
        continuation, _Details("/grpc.health.v1/Check", None), None
    )
    assert seen == [4.0, 1.0, 4.0, 2.5]


def test_the_gateway_and_the_services_agree_on_what_is_retried() -> None:
    from loyalnest.gateway.descriptors import services_in_descriptor_set
    from loyalnest.gateway.reflection import DEFAULT_DESCRIPTOR_SET

    gateway = services_in_descriptor_set(DEFAULT_DESCRIPTOR_SET)[
        "loyalnest.points.v1.PointsService"
    ]
    policies = _policies(POINTS)
    for method in gateway.methods:
        assert policies[method.name].retry == method.idempotent, method.name
        assert method.idempotent == (
            method.name in _retried(service_config(method_policies(POINTS)))
        )


def test_stub_classes_resolve_to_their_service() -> None:
    assert service_descriptor(points_pb2_grpc.PointsServiceStub) is POINTS
    with pytest.raises(TypeError, match="not a generated gRPC stub"):
        service_descriptor(dict)


def test_calls_declare_components_sorted() -> None:
    calls = Calls(roles=roles_pb2_grpc.RolesServiceStub, auth=auth_pb2_grpc.AuthServiceStub)
    assert calls.services == ("auth", "roles")
    assert Calls().services == ()
    with pytest.raises(ValueError, match="declared for"):
        Calls(auth=auth_pb2_grpc.AuthServiceStub, other=auth_pb2_grpc.AuthServiceStub)


# ---- targets ------------------------------------------------------------------------------


def test_an_explicit_target_wins_over_the_template() -> None:
    settings = CallSettings(
        call_targets={"auth": "ipv4:127.0.0.1:7001,127.0.0.1:7002"},
        call_target_template="dns:///{service}.prod.svc.cluster.local:50051",
    )
    assert resolve_target(settings, "auth", caller="points") == "ipv4:127.0.0.1:7001,127.0.0.1:7002"
    assert (
        resolve_target(settings, "event_tracking", caller="points")
        == "dns:///event-tracking.prod.svc.cluster.local:50051"
    )


def test_targets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOYALNEST_CALL_TARGETS", '{"roles": "dns:///roles.x.svc:50051"}')
    monkeypatch.setenv("LOYALNEST_CALL_TARGET_TEMPLATE", "dns:///{service}.y.svc:50051")
    settings = CallSettings()
    assert resolve_target(settings, "roles", caller="auth") == "dns:///roles.x.svc:50051"
    assert resolve_target(settings, "users", caller="auth") == "dns:///users.y.svc:50051"


def test_a_template_without_the_placeholder_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"\{service\}"):
        CallSettings(call_target_template="dns:///auth.svc:50051")


def test_a_declared_callee_without_a_target_stops_the_service() -> None:
    calls = Calls(roles=roles_pb2_grpc.RolesServiceStub)
    with pytest.raises(CallConfigError) as caught:
        calls.connect(CallSettings(call_targets={"users": "x:1"}), caller="auth")
    message = str(caught.value)
    assert "auth calls roles" in message
    assert "LOYALNEST_CALL_TARGETS" in message and "LOYALNEST_CALL_TARGET_TEMPLATE" in message


def test_a_credential_needs_auth_declared() -> None:
    calls = Calls(users=users_pb2_grpc.UsersServiceStub)
    settings = CallSettings(call_target_template="dns:///{service}:1", service_credential="c")
    with pytest.raises(CallConfigError, match="does not declare auth"):
        calls.connect(settings, caller="points")


async def test_downstream_hands_out_typed_stubs_of_declared_callees_only() -> None:
    calls = Calls(auth=auth_pb2_grpc.AuthServiceStub, edge=edge_pb2_grpc.EdgeServiceStub)
    downstream = calls.connect(
        CallSettings(call_target_template="dns:///{service}.ns.svc:50051"), caller="points"
    )
    try:
        assert downstream.targets == {
            "auth": "dns:///auth.ns.svc:50051",
            "edge": "dns:///edge.ns.svc:50051",
        }
        stub = downstream.stub(auth_pb2_grpc.AuthServiceStub)
        assert isinstance(stub, auth_pb2_grpc.AuthServiceStub)
        assert downstream.stub(auth_pb2_grpc.AuthServiceStub) is stub
        with pytest.raises(LookupError, match="does not declare a call to RolesServiceStub"):
            downstream.stub(roles_pb2_grpc.RolesServiceStub)
    finally:
        await downstream.close()
