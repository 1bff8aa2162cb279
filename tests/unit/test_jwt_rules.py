"""The gateway's JWT rules follow the RPCs' declared access policies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2

from loyalnest.gateway.jwt_rules import (
    JWT_CACHE_SIZE,
    PROVIDER,
    jwt_authn_filter,
    public_methods,
)
from loyalnest.gen.options.v1 import access_pb2
from tests.unit.test_envoy_config import descriptor_set_with

REPO = Path(__file__).resolve().parents[2]
DESCRIPTOR_SET = REPO / "pkg" / "loyalnest" / "gen" / "loyalnest.binpb"


def _rules(descriptor_set: Path = DESCRIPTOR_SET) -> list[dict]:
    config = jwt_authn_filter(descriptor_set, Path("/keys/jwks.json"), "loyalnest-auth")
    return config["typed_config"]["rules"]


def test_everything_not_public_requires_a_token():
    rules = _rules()
    assert rules[-1] == {"match": {"prefix": "/"}, "requires": {"provider_name": PROVIDER}}
    # No rule before the catch-all requires anything: they are the public exceptions.
    assert all("requires" not in rule for rule in rules[:-1])


def test_points_rpcs_are_not_public_and_health_is():
    public = public_methods(DESCRIPTOR_SET)
    # Only the integrations' signed activities, which carry their own HMAC.
    assert [p for p in public if p.startswith("/loyalnest.points.v1.")] == [
        "/loyalnest.points.v1.PointsService/RecordSignedActivity"
    ]
    prefixes = [rule["match"].get("prefix") for rule in _rules()]
    assert "/grpc.health.v1.Health/" in prefixes


def test_provider_reads_only_the_authorization_header_and_forwards_it():
    config = jwt_authn_filter(DESCRIPTOR_SET, Path("/keys/jwks.json"), "loyalnest-auth")
    provider = config["typed_config"]["providers"][PROVIDER]
    assert provider["from_headers"] == [{"name": "authorization", "value_prefix": "Bearer "}]
    assert provider["forward"] is True
    assert provider["local_jwks"] == {"filename": "/keys/jwks.json"}
    assert "audiences" not in provider  # the services answer a wrong audience with 401
    assert provider["jwt_cache_config"] == {"jwt_cache_size": JWT_CACHE_SIZE}


def test_a_method_declared_public_gets_an_exception_rule(tmp_path):
    file = descriptor_pb2.FileDescriptorProto(
        name="loyalnest/login/v1/login.proto",
        package="loyalnest.login.v1",
        syntax="proto3",
        dependency=["loyalnest/options/v1/access.proto"],
    )
    file.message_type.add(name="LoginRequest")
    file.message_type.add(name="LoginResponse")
    service = file.service.add(name="LoginService")
    for name, public in (("Login", True), ("Logout", False)):
        method = service.method.add(
            name=name,
            input_type=".loyalnest.login.v1.LoginRequest",
            output_type=".loyalnest.login.v1.LoginResponse",
        )
        options: Any = method.options
        options.Extensions[access_pb2.access].public = public
    extended = descriptor_set_with(tmp_path, file)
    public = public_methods(extended)
    assert "/loyalnest.login.v1.LoginService/Login" in public
    assert "/loyalnest.login.v1.LoginService/Logout" not in public
    assert {"match": {"path": "/loyalnest.login.v1.LoginService/Login"}} in _rules(extended)
