"""The OpenAPI document generated from the descriptor set (loyalnest.gateway.openapi)."""

from __future__ import annotations

from typing import Any

import schemathesis

from loyalnest.gateway import openapi
from loyalnest.gateway.descriptors import services_in_descriptor_set
from loyalnest.gateway.reflection import DEFAULT_DESCRIPTOR_SET

DOCUMENT = openapi.render(DEFAULT_DESCRIPTOR_SET)


def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = DOCUMENT["components"]["schemas"][name]
    return schema


def test_every_routed_binding_is_an_operation_and_internal_rpcs_are_not() -> None:
    operations = {
        op["description"].split("`")[1]
        for methods in DOCUMENT["paths"].values()
        for op in methods.values()
        if op["operationId"] != "openapi"
    }
    for service in services_in_descriptor_set(DEFAULT_DESCRIPTOR_SET).values():
        for method in service.methods:
            path = service.grpc_path(method.name)
            if method.http_bound and not method.internal:
                assert path in operations
            else:
                assert path not in operations
    assert "/loyalnest.auth.v1.AuthService/GetShopAccessToken" not in operations


def test_bearer_auth_with_public_rpcs_marked() -> None:
    assert DOCUMENT["security"] == [{"bearerAuth": []}]
    scheme = DOCUMENT["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert DOCUMENT["paths"]["/v1/api/auth/login"]["get"]["security"] == []
    assert DOCUMENT["paths"]["/v1/api/openapi.json"]["get"]["security"] == []
    assert "security" not in DOCUMENT["paths"]["/v1/api/points/earn"]["post"]


def test_proto3_json_mapping() -> None:
    balance = _schema("loyalnest.points.v1.PointsBalance")["properties"]
    assert balance["balance"]["type"] == "string"  # int64
    assert balance["update_time"] == {
        "type": "string",
        "format": "date-time",
        "example": "2026-01-31T12:00:00Z",
    }
    transaction = _schema("loyalnest.points.v1.PointsTransaction")["properties"]
    assert "TRANSACTION_TYPE_EARN" in transaction["type"]["enum"]  # enums by name
    update = _schema("loyalnest.users.v1.UpdateUserRequest")["properties"]
    assert update["update_mask"]["type"] == "string"  # FieldMask
    assert "idempotency_key" in _schema("loyalnest.points.v1.EarnPointsRequest")["properties"]


def test_parameters_and_bodies_follow_the_bindings() -> None:
    balance = DOCUMENT["paths"]["/v1/api/points/balance/{customer_id}"]["get"]
    assert [(p["name"], p["in"]) for p in balance["parameters"]] == [("customer_id", "path")]
    listed = DOCUMENT["paths"]["/v1/api/users/list"]["get"]
    assert {p["name"] for p in listed["parameters"]} >= {"page_size", "page_token"}
    update = DOCUMENT["paths"]["/v1/api/rewards/{reward_id}"]["patch"]
    assert update["parameters"][0]["name"] == "reward_id"
    assert update["parameters"][0]["x-proto-field"] == "reward.reward_id"
    assert "requestBody" in update
    webhook = DOCUMENT["paths"]["/v1/api/webhooks/{resource}/{action}"]["post"]
    assert webhook["requestBody"]["content"]["application/json"]["schema"] == {}  # raw bytes
    stream = DOCUMENT["paths"]["/v1/api/points/stream/{customer_id}"]["get"]
    assert "application/x-ndjson" in stream["responses"]["200"]["content"]


def test_errors_are_google_rpc_status() -> None:
    status = _schema("google.rpc.Status")
    assert set(status["properties"]) == {"code", "message", "details"}
    for methods in DOCUMENT["paths"].values():
        for operation in methods.values():
            if operation["operationId"] == "openapi":
                continue
            error = operation["responses"]["default"]["content"]["application/json"]
            assert error["schema"] == {"$ref": "#/components/schemas/google.rpc.Status"}


def test_schemathesis_loads_every_operation() -> None:
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    operations = [result.ok() for result in schema.get_all_operations()]  # Err has no ok()
    assert len(operations) == sum(len(methods) for methods in DOCUMENT["paths"].values())
