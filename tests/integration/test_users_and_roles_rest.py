"""Users and Roles over REST: a real Envoy transcoding the seed's /v1/api/users|roles/... paths
to real services (real PostgreSQL, real Valkey)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from loyalnest.gateway import Upstream
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.server import running
from loyalnest.services.roles.service import SERVICE_NAME as ROLES_SERVICE
from loyalnest.services.roles.service import SPEC as ROLES_SPEC
from loyalnest.services.users.service import SERVICE_NAME as USERS_SERVICE
from loyalnest.services.users.service import SPEC as USERS_SPEC
from tests.auth import merchant_headers
from tests.integration.conftest import service_settings_for_tests
from tests.integration.test_gateway_validate import Gateway, gateway_config, http, running_gateway
from tests.integration.test_users_service import users_settings

pytestmark = pytest.mark.integration

PERMISSIONS = ("users:read", "users:write", "roles:read", "roles:write")


@pytest.fixture
async def gateway(
    database_url: str,
    redis_url: str,
    tmp_path: Path,
) -> AsyncIterator[Gateway]:
    roles_settings = service_settings_for_tests(ServiceSettings, database_url)
    async with contextlib.AsyncExitStack() as stack:
        users = await stack.enter_async_context(
            running(USERS_SPEC, users_settings(database_url, redis_url))
        )
        roles = await stack.enter_async_context(running(ROLES_SPEC, roles_settings))
        upstreams = (
            Upstream("users", (USERS_SERVICE,), (("127.0.0.1", users.port),)),
            Upstream("roles", (ROLES_SERVICE,), (("127.0.0.1", roles.port),)),
        )
        config = gateway_config(upstreams[0], upstreams=upstreams)
        yield await stack.enter_async_context(
            running_gateway(config, tmp_path, {"users": 1, "roles": 1})
        )


async def test_users_crud_over_rest(gateway: Gateway, merchant_id: str) -> None:
    headers = merchant_headers(merchant_id, PERMISSIONS)
    created = await http(
        "POST",
        f"{gateway.url}/v1/api/users/create",
        headers=headers,
        json_body={
            "user": {"email": "Ann@Example.com", "kind": "USER_KIND_STAFF"},
            "idempotency_key": "signup-ann",
        },
    )
    assert created.status == 200, created.body
    user = created.json()["user"]
    assert (user["email"], user["kind"], user["role_id"]) == (
        "ann@example.com",
        "USER_KIND_STAFF",
        "",
    )

    got = await http(
        "GET", f"{gateway.url}/v1/api/users/get?user_id={user['user_id']}", headers=headers
    )
    assert got.status == 200, got.body
    assert got.json()["user"] == user

    updated = await http(
        "POST",
        f"{gateway.url}/v1/api/users/update",
        headers=headers,
        json_body={
            "user": {"user_id": user["user_id"], "kind": "USER_KIND_CUSTOMER"},
            "update_mask": "kind",  # a FieldMask in JSON: comma-separated paths
            "idempotency_key": "ann-kind",
        },
    )
    assert updated.status == 200, updated.body
    assert updated.json()["user"]["kind"] == "USER_KIND_CUSTOMER"

    found = await http(
        "POST",
        f"{gateway.url}/v1/api/users/lookup",
        headers=headers,
        json_body={"email": "ANN@example.com"},
    )
    assert found.status == 200, found.body
    assert found.json()["user"]["user_id"] == user["user_id"]

    listed = await http("GET", f"{gateway.url}/v1/api/users/list?page_size=5", headers=headers)
    assert listed.status == 200, listed.body
    assert [u["user_id"] for u in listed.json()["users"]] == [user["user_id"]]

    invalid = await http(
        "POST",
        f"{gateway.url}/v1/api/users/create",
        headers=headers,
        json_body={"user": {"email": "nope"}},
    )
    assert invalid.status == 400, invalid.body
    (detail,) = invalid.json()["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert {v["field"] for v in detail["field_violations"]} == {
        "user.email",
        "user.kind",
        "idempotency_key",
    }

    missing = await http(
        "GET",
        f"{gateway.url}/v1/api/users/get?user_id=00000000-0000-4000-8000-000000000000",
        headers=headers,
    )
    assert missing.status == 404, missing.body
    assert missing.json()["code"] == grpc.StatusCode.NOT_FOUND.value[0]

    anonymous = await http("GET", f"{gateway.url}/v1/api/users/list", headers={})
    assert anonymous.status == 401, anonymous.body


async def test_roles_and_assignment_over_rest(gateway: Gateway, merchant_id: str) -> None:
    headers = merchant_headers(merchant_id, PERMISSIONS)
    created = await http(
        "POST",
        f"{gateway.url}/v1/api/roles/create",
        headers=headers,
        json_body={
            "role": {"name": "Analyst", "permissions": ["points:read", "admin:analytics"]},
            "idempotency_key": "role-analyst",
        },
    )
    assert created.status == 200, created.body
    role = created.json()["role"]
    assert role["permissions"] == ["admin:analytics", "points:read"]

    got = await http(
        "GET", f"{gateway.url}/v1/api/roles/get?role_id={role['role_id']}", headers=headers
    )
    assert got.status == 200 and got.json()["role"] == role, got.body

    user = (
        await http(
            "POST",
            f"{gateway.url}/v1/api/users/create",
            headers=headers,
            json_body={"user": {"kind": "USER_KIND_STAFF"}, "idempotency_key": "staff-1"},
        )
    ).json()["user"]
    assigned = await http(
        "POST",
        f"{gateway.url}/v1/api/roles/assign",
        headers=headers,
        json_body={
            "user_id": user["user_id"],
            "role_id": role["role_id"],
            "idempotency_key": "assign-1",
        },
    )
    assert assigned.status == 200, assigned.body
    of_user = await http(
        "GET", f"{gateway.url}/v1/api/roles/user/{user['user_id']}", headers=headers
    )
    assert of_user.status == 200, of_user.body
    assert of_user.json()["role"]["name"] == "Analyst"

    bad = await http(
        "POST",
        f"{gateway.url}/v1/api/roles/update",
        headers=headers,
        json_body={
            "role": {"role_id": role["role_id"], "permissions": ["Admin Full"]},
            "update_mask": "permissions",
            "idempotency_key": "bad-1",
        },
    )
    assert bad.status == 400, bad.body
    readonly = merchant_headers(merchant_id, ("roles:read",))
    forbidden = await http(
        "POST",
        f"{gateway.url}/v1/api/roles/update",
        headers=readonly,
        json_body={
            "role": {"role_id": role["role_id"], "name": "x"},
            "update_mask": "name",
            "idempotency_key": "k",
        },
    )
    assert forbidden.status == 403, forbidden.body


async def test_control_characters_are_invalid_input_not_internal(
    gateway: Gateway, merchant_id: str
) -> None:
    # Found by the REST fuzzer: a NUL in the key reached PostgreSQL (text cannot hold it): 500.
    headers = merchant_headers(merchant_id, PERMISSIONS)
    for body in (
        {"user": {"kind": "USER_KIND_STAFF"}, "idempotency_key": "k\u0000"},
        {"user": {"email": "a\u0000@b.co", "kind": "USER_KIND_STAFF"}, "idempotency_key": "k"},
    ):
        refused = await http(
            "POST", f"{gateway.url}/v1/api/users/create", headers=headers, json_body=body
        )
        assert refused.status == 400, refused.body
        assert refused.json()["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    listed = await http("GET", f"{gateway.url}/v1/api/users/list", headers=headers)
    assert listed.json()["users"] == []
