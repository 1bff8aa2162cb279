"""Every error a REST caller gets from the gateway is a google.rpc.Status JSON, whoever
answers: the backend (through the transcoder) or Envoy itself (transcoder request errors,
jwt_authn, RBAC, the body limit, the rate limits, an unreachable backend). gRPC and gRPC-Web
callers keep plain gRPC statuses. A real Envoy in front of real Points and edge services."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest

from loyalnest.devstack.postgres import free_port
from loyalnest.gateway import Upstream, openapi
from loyalnest.gateway.edge import EdgePolicy, JwtProvider, PublicRateLimit
from loyalnest.gen.auth.v1 import auth_pb2
from loyalnest.gen.points.v1 import points_pb2
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.server import running
from loyalnest.services.auth.service import SPEC as AUTH
from loyalnest.services.edge.service import SERVICE_NAME as EDGE_SERVICE
from loyalnest.services.edge.service import SPEC as EDGE
from loyalnest.services.points.service import SERVICE_NAME as POINTS_SERVICE
from tests.auth import JWKS_PATH, merchant_headers, merchant_metadata
from tests.integration.conftest import serving
from tests.integration.shopify_standin import ShopifyStandIn
from tests.integration.test_auth_service import auth_settings
from tests.integration.test_edge_gateway import edge_settings
from tests.integration.test_gateway_validate import (
    DESCRIPTOR_SET,
    Gateway,
    Response,
    gateway_config,
    http,
    points_worker,
    running_gateway,
)

pytestmark = pytest.mark.integration

RATE_LIMIT_BURST = 5  # test_edge_gateway.edge_settings: the free plan's burst
PUBLIC_BURST = 3
AUTH_SERVICE = "loyalnest.auth.v1.AuthService"


@pytest.fixture
async def gateway(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    async with contextlib.AsyncExitStack() as stack:
        points = await stack.enter_async_context(points_worker(database_url))
        edge = await stack.enter_async_context(
            running(EDGE, edge_settings(database_url, redis_url))
        )
        await asyncio.wait_for(edge.health.started.wait(), 30)
        upstreams = (
            Upstream("points", (POINTS_SERVICE,), (("127.0.0.1", points.port),)),
            Upstream("edge", (EDGE_SERVICE,), (("127.0.0.1", edge.port),)),
            # Nobody listens: Envoy answers 503 for its RPCs (and RBAC 403 for admin ones).
            Upstream("auth", (AUTH_SERVICE,), (("127.0.0.1", free_port()),)),
        )
        config = gateway_config(
            upstreams[0],
            upstreams=upstreams,
            openapi_path=openapi.write(DESCRIPTOR_SET, tmp_path / "openapi.json"),
            policy=EdgePolicy(
                jwt=JwtProvider(JWKS_PATH, ServiceSettings().jwt_issuer),
                admin_allowed_cidrs=("10.99.0.0/16",),  # loopback is outside
                rate_limit_upstream="edge",
                public_rate_limit=PublicRateLimit(burst=PUBLIC_BURST, refill_seconds=60),
            ),
        )
        yield await stack.enter_async_context(
            running_gateway(config, tmp_path, {"points": 1, "edge": 1})
        )


def assert_status_json(reply: Response, http_status: int, code: grpc.StatusCode) -> dict[str, Any]:
    """The reply is `http_status` with a google.rpc.Status body of `code`; returns the body."""
    assert reply.status == http_status, (reply.status, reply.body)
    assert reply.headers["content-type"].startswith("application/json"), reply.headers
    body: dict[str, Any] = reply.json()
    assert set(body) == {"code", "message", "details"}, body
    assert body["code"] == code.value[0], body
    assert isinstance(body["message"], str) and isinstance(body["details"], list), body
    for detail in body["details"]:
        assert detail["@type"].startswith("type.googleapis.com/google.rpc."), detail
    return body


async def test_transcoder_request_errors_are_json(gateway: Gateway, merchant_id: str) -> None:
    headers = merchant_headers(merchant_id)
    wrong_type = await http(
        "POST",
        f"{gateway.url}/v1/api/points/earn",
        headers=headers,
        json_body={"customer_id": "c1", "points": "abc", "idempotency_key": "k"},
    )
    body = assert_status_json(wrong_type, 400, grpc.StatusCode.INVALID_ARGUMENT)
    assert "points" in body["message"], body
    (info,) = body["details"]
    assert info["@type"] == "type.googleapis.com/google.rpc.RequestInfo" and info["request_id"]

    not_json = await http(
        "POST",
        f"{gateway.url}/v1/api/points/earn",
        headers=headers | {"content-type": "application/json"},
        body=b'{"customer_id" "c1"}',
    )
    assert_status_json(not_json, 400, grpc.StatusCode.INVALID_ARGUMENT)

    unknown_param = await http(
        "GET", f"{gateway.url}/v1/api/points/balance/c1?colour=red", headers=headers
    )
    assert_status_json(unknown_param, 400, grpc.StatusCode.INVALID_ARGUMENT)

    unknown_path = await http("GET", f"{gateway.url}/v1/api/points/nowhere", headers=headers)
    body = assert_status_json(unknown_path, 404, grpc.StatusCode.NOT_FOUND)
    assert "Could not resolve" in body["message"]
    # A backend's own error keeps its details (convert_grpc_status), untouched by the mappers.
    missing = await http("GET", f"{gateway.url}/v1/api/points/balance/nobody", headers=headers)
    body = assert_status_json(missing, 404, grpc.StatusCode.NOT_FOUND)
    assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.ResourceInfo"


async def test_edge_refusals_are_json(gateway: Gateway, merchant_id: str) -> None:
    anonymous = await http("GET", f"{gateway.url}/v1/api/points/balance/c1")
    body = assert_status_json(anonymous, 401, grpc.StatusCode.UNAUTHENTICATED)
    assert body["message"] == "Jwt is missing"
    forged = await http(
        "GET",
        f"{gateway.url}/v1/api/points/balance/c1",
        headers={"authorization": "Bearer not.a.jwt"},
    )
    assert_status_json(forged, 401, grpc.StatusCode.UNAUTHENTICATED)

    admin = await http(
        "POST",
        f"{gateway.url}/admin/v1/auth/revoke",
        headers=merchant_headers(merchant_id, ("auth:revoke",)),
        json_body={"token_id": "t"},
    )
    assert_status_json(admin, 403, grpc.StatusCode.PERMISSION_DENIED)

    big = b'{"customer_id": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    too_large = await http(
        "POST",
        f"{gateway.url}/v1/api/points/earn",
        headers=merchant_headers(merchant_id) | {"content-type": "application/json"},
        body=big,
    )
    assert_status_json(too_large, 413, grpc.StatusCode.RESOURCE_EXHAUSTED)

    # The per-merchant limit (the edge service's RLS): Envoy's 429 has no body of its own.
    limits = merchant_headers(merchant_id, ("gateway:read",))
    replies = [
        await http("GET", f"{gateway.url}/v1/api/rate-limits", headers=limits)
        for _ in range(RATE_LIMIT_BURST + 1)
    ]
    assert [r.status for r in replies[:-1]] == [200] * RATE_LIMIT_BURST
    body = assert_status_json(replies[-1], 429, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert "Retry-After" in body["message"] and int(replies[-1].headers["retry-after"]) >= 1

    # Past every policy, a backend nobody serves: the router's 503.
    down = await http("GET", f"{gateway.url}/v1/api/auth/jwks")
    body = assert_status_json(down, 503, grpc.StatusCode.UNAVAILABLE)
    assert body["message"], body


async def test_headers_that_are_not_grpc_metadata_keys_are_dropped(
    gateway: Gateway, merchant_id: str
) -> None:
    # Legal HTTP header names, illegal gRPC metadata keys: found by the fuzzer as a 500
    # (the backend's gRPC server refused the call: "Illegal header key").
    headers = merchant_headers(merchant_id) | {"`r": "x", "a~b": "y", "x-fine.key-1": "z"}
    reply = await http("GET", f"{gateway.url}/v1/api/points/balance/nobody", headers=headers)
    assert_status_json(reply, 404, grpc.StatusCode.NOT_FOUND)


async def test_openapi_document_is_served_without_a_token(gateway: Gateway) -> None:
    served = await http("GET", f"{gateway.url}/v1/api/openapi.json")
    assert served.status == 200, served.body
    assert served.headers["content-type"] == "application/json"
    document = served.json()
    assert document == openapi.render(DESCRIPTOR_SET)
    assert document["openapi"].startswith("3.")
    login = document["paths"]["/v1/api/auth/login"]["get"]
    assert login["security"] == []  # public
    assert "security" not in document["paths"]["/v1/api/points/earn"]["post"]  # the bearer
    # Only GET is answered there; anything else is an unknown REST path (JSON 404).
    posted = await http("POST", f"{gateway.url}/v1/api/openapi.json", json_body={})
    assert_status_json(posted, 404, grpc.StatusCode.NOT_FOUND)


async def test_grpc_and_grpc_web_callers_keep_grpc_statuses(gateway: Gateway) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        call = channel.unary_unary(
            f"/{POINTS_SERVICE}/GetPointsBalance",
            request_serializer=points_pb2.GetPointsBalanceRequest.SerializeToString,
            response_deserializer=points_pb2.GetPointsBalanceResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await call(points_pb2.GetPointsBalanceRequest(customer_id="c1"))
        with pytest.raises(grpc.aio.AioRpcError) as down:
            await channel.unary_unary(
                f"/{AUTH_SERVICE}/GetJwks",
                request_serializer=lambda _: b"",
                response_deserializer=lambda raw: raw,
            )(None, metadata=merchant_metadata("m-grpc"))
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert anonymous.value.details() == "Jwt is missing"  # Envoy's text, not a JSON document
    assert down.value.code() == grpc.StatusCode.UNAVAILABLE
    assert not (down.value.details() or "").startswith("{")

    message = points_pb2.GetPointsBalanceRequest(customer_id="c1").SerializeToString()
    grpc_web = await http(
        "POST",
        f"{gateway.url}/{POINTS_SERVICE}/GetPointsBalance",
        body=struct.pack(">BI", 0, len(message)) + message,
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
    )
    # As before: the grpc_web filter passes Envoy's 401 on without a body, which gRPC-Web
    # clients read as UNAUTHENTICATED; no JSON document in it.
    assert grpc_web.status == 401, grpc_web
    assert grpc_web.body == b"" and "json" not in grpc_web.headers.get("content-type", "")


# --- unauthenticated routes: a limit per source address ------------------------------------


@pytest.fixture
async def auth_gateway(
    database_url: str, redis_url: str, shopify: ShopifyStandIn, tmp_path: Path
) -> AsyncIterator[Gateway]:
    async with serving(AUTH, auth_settings(database_url, redis_url, shopify)) as auth:
        upstream = Upstream("auth", (AUTH_SERVICE,), (("127.0.0.1", auth.port),))
        config = gateway_config(
            upstream,
            policy=EdgePolicy(
                jwt=JwtProvider(JWKS_PATH, ServiceSettings().jwt_issuer),
                public_rate_limit=PublicRateLimit(burst=PUBLIC_BURST, refill_seconds=60),
            ),
        )
        async with running_gateway(config, tmp_path, {"auth": 1}) as gateway:
            yield gateway


def _oauth_states(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM auth.oauth_states").fetchone()
    assert row is not None
    return int(row[0])


async def test_public_rpcs_are_limited_per_direct_source_address(
    auth_gateway: Gateway, database_url: str
) -> None:
    login = f"{auth_gateway.url}/v1/api/auth/login?shop=limited.myshopify.com"
    replies = [await http("GET", login) for _ in range(PUBLIC_BURST)]
    assert [r.status for r in replies] == [200] * PUBLIC_BURST, replies[-1].body
    # X-Forwarded-For is the client's to write: a new value must not buy a new bucket.
    refused = await http("GET", login, headers={"x-forwarded-for": "203.0.113.7"})
    body = assert_status_json(refused, 429, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert "Retry-After" in body["message"]
    assert refused.headers["retry-after"] == "60"
    # Nothing reached Auth for the refused call: one state row per accepted login only.
    assert _oauth_states(database_url) == PUBLIC_BURST

    # Native gRPC: the same bucket (the policy is on the method), RESOURCE_EXHAUSTED.
    async with grpc.aio.insecure_channel(auth_gateway.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as limited:
            await channel.unary_unary(
                f"/{AUTH_SERVICE}/Login",
                request_serializer=auth_pb2.LoginRequest.SerializeToString,
                response_deserializer=auth_pb2.LoginResponse.FromString,
            )(auth_pb2.LoginRequest(shop="limited.myshopify.com"))
    assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    # Each public RPC has its own bucket, and the JWKS (which Envoy itself fetches through
    # this listener) is not limited at all.
    refresh = await http(
        "POST", f"{auth_gateway.url}/v1/api/auth/refresh", json_body={"refresh_token": "x"}
    )
    assert refresh.status == 401, refresh.body
    jwks = [await http("GET", f"{auth_gateway.url}/v1/api/auth/jwks") for _ in range(5)]
    assert [r.status for r in jwks] == [200] * 5
    # Calls with a token are the per-merchant limiter's business, not this one's.
    staff = [
        await http(
            "POST",
            f"{auth_gateway.url}/v1/api/auth/staff-sessions",
            headers=merchant_headers("m-limit", ("roles:write",)),
            json_body={"user_id": "u"},
        )
        for _ in range(PUBLIC_BURST + 1)
    ]
    assert 429 not in [r.status for r in staff], [r.status for r in staff]
