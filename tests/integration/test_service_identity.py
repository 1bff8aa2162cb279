"""Service identity over real gRPC: a real Auth (PostgreSQL, Valkey) issues service tokens to a
service proving itself with its credential; a real Users service honours them for one merchant
only; a probe service shows what the callee's auth context records."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import AbstractAsyncContextManager
from typing import Any

import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2

from loyalnest.gen.auth.v1 import auth_pb2, auth_pb2_grpc
from loyalnest.gen.options.v1.access_pb2 import AccessPolicy
from loyalnest.gen.users.v1 import users_pb2, users_pb2_grpc
from loyalnest.platform.auth.context import acting_for, current_principal
from loyalnest.platform.auth.keys import KeySet
from loyalnest.platform.auth.policy import declare_access
from loyalnest.platform.auth.service_identity import request_signature, service_credential
from loyalnest.platform.auth.service_tokens import ServiceTokenSource
from loyalnest.platform.auth.tokens import SERVICE, TokenIssuer
from loyalnest.platform.client import open_channel
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.server import (
    Registration,
    RunningService,
    ServiceComponents,
    ServiceSpec,
    running,
)
from loyalnest.services.auth.service import SPEC as AUTH_SPEC
from loyalnest.services.users.service import SPEC as USERS_SPEC
from tests.auth import ISSUER, merchant_metadata, token
from tests.integration.conftest import serving, stub_for
from tests.integration.shopify_standin import ShopifyStandIn
from tests.integration.test_auth_service import auth_settings, install
from tests.integration.test_users_service import users_settings

# Generic handlers have no proto to declare access in: any valid token (fail closed otherwise).
for _service in (
    "test.Probe",
    "test.Relay",
):
    declare_access(_service, AccessPolicy(authenticated=True))

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
MASTER_KEY = os.urandom(32)
POINTS_CREDENTIAL = service_credential(MASTER_KEY, "points")


def serving_auth(
    database_url: str, redis_url: str, shopify: ShopifyStandIn, **overrides: Any
) -> AbstractAsyncContextManager[RunningService]:
    settings = auth_settings(
        database_url,
        redis_url,
        shopify,
        auth_service_credential_key=base64.b64encode(MASTER_KEY).decode(),
        **overrides,
    )
    return serving(AUTH_SPEC, settings)


@pytest.fixture
async def auth(
    database_url: str, redis_url: str, shopify: ShopifyStandIn
) -> AsyncIterator[RunningService]:
    async with serving_auth(database_url, redis_url, shopify) as service:
        yield service


@pytest.fixture
async def auth_stub(auth: RunningService) -> AsyncIterator[auth_pb2_grpc.AuthServiceStub]:
    async with stub_for(auth, auth_pb2_grpc.AuthServiceStub) as stub:
        yield stub


@pytest.fixture
async def users(database_url: str, redis_url: str) -> AsyncIterator[RunningService]:
    async with serving(USERS_SPEC, users_settings(database_url, redis_url)) as service:
        yield service


@pytest.fixture
async def merchants(auth_stub, shopify) -> tuple[str, str]:
    a = await install(auth_stub, shopify, "shop-a.myshopify.com")
    b = await install(auth_stub, shopify, "shop-b.myshopify.com")
    return a.merchant.merchant_id, b.merchant.merchant_id


@pytest.fixture
async def points_tokens(auth: RunningService) -> AsyncIterator[ServiceTokenSource]:
    source = ServiceTokenSource("points", POINTS_CREDENTIAL, auth.address)
    try:
        yield source
    finally:
        await source.close()


def _probe_spec(name: str) -> ServiceSpec[ServiceSettings]:
    """A service named `name` whose one RPC (no permission declared: any valid token) answers
    with what its auth context holds."""

    async def whoami(request: bytes, context: Context) -> bytes:
        p = current_principal()
        return f"{p.subject}|{p.merchant_id or ''}|{p.service or ''}".encode()

    def register(servicer: object, server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(whoami)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("test.Probe", {"WhoAmI": handler}),)
        )

    async def build(settings: ServiceSettings) -> ServiceComponents:
        return ServiceComponents(registrations=[Registration("test.Probe", register, None)])

    return ServiceSpec(name=name, settings_type=ServiceSettings, build=build)


def _relay_spec(target: str, source: ServiceTokenSource) -> ServiceSpec[ServiceSettings]:
    """A service relaying its caller's call to the probe at `target`."""

    async def relay(request: bytes, context: Context) -> bytes:
        async with open_channel(target, service_tokens=source) as channel:
            response: bytes = await channel.unary_unary("/test.Probe/WhoAmI")(request)
        return response

    def register(servicer: object, server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(relay)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("test.Relay", {"Relay": handler}),)
        )

    async def build(settings: ServiceSettings) -> ServiceComponents:
        return ServiceComponents(registrations=[Registration("test.Relay", register, None)])

    return ServiceSpec(name="relay", settings_type=ServiceSettings, build=build)


def _settings() -> ServiceSettings:
    return ServiceSettings(grpc_port=0, metrics_enabled=False, shutdown_grace_seconds=0)


async def code_of(call: Awaitable[Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code()


def signed_request(
    credential: str = POINTS_CREDENTIAL, *, service: str = "points", **fields: Any
) -> auth_pb2.IssueServiceTokenRequest:
    values: dict[str, Any] = {
        "merchant_id": "",
        "permissions": [],
        "timestamp": int(time.time()),
        "nonce": secrets.token_hex(16),
    } | fields
    signature = request_signature(credential, service=service, **values)
    return auth_pb2.IssueServiceTokenRequest(service=service, signature=signature, **values)


def bearer(value: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {value}"),)


# ---- issuing ------------------------------------------------------------------------------


async def test_a_service_token_acts_for_one_merchant_only(
    auth_stub, users, merchants, points_tokens
) -> None:
    merchant_a, merchant_b = merchants
    users_stub_direct = users_pb2_grpc.UsersServiceStub
    rw = ("users:read", "users:write")
    async with grpc.aio.insecure_channel(users.address) as direct:
        created = {}
        for merchant in (merchant_a, merchant_b):
            response = await users_stub_direct(direct).CreateUser(
                users_pb2.CreateUserRequest(
                    user=users_pb2.User(
                        email=f"ann@{merchant[:8]}.example.com", kind=users_pb2.USER_KIND_CUSTOMER
                    ),
                    idempotency_key="k1",
                ),
                metadata=merchant_metadata(merchant, rw),
            )
            created[merchant] = response.user.user_id

    # A consumer of Points acting for merchant A: no caller token, its own service token.
    async with open_channel(users.address, service_tokens=points_tokens) as channel:
        stub = users_pb2_grpc.UsersServiceStub(channel)
        with acting_for(merchant_a):
            got = await stub.GetUser(users_pb2.GetUserRequest(user_id=created[merchant_a]))
            assert got.user.user_id == created[merchant_a]
            # Merchant B's user does not exist for a token bound to A.
            assert await code_of(
                stub.GetUser(users_pb2.GetUserRequest(user_id=created[merchant_b]))
            ) == (grpc.StatusCode.NOT_FOUND)
            # Points is granted users:read, not users:write.
            assert (
                await code_of(
                    stub.CreateUser(
                        users_pb2.CreateUserRequest(
                            user=users_pb2.User(
                                email="x@example.com", kind=users_pb2.USER_KIND_CUSTOMER
                            ),
                            idempotency_key="k2",
                        )
                    )
                )
                == grpc.StatusCode.PERMISSION_DENIED
            )
        with acting_for(merchant_b):
            got = await stub.GetUser(users_pb2.GetUserRequest(user_id=created[merchant_b]))
            assert got.user.user_id == created[merchant_b]
        # For no merchant, tenant-scoped RPCs refuse the token.
        assert (
            await code_of(stub.GetUser(users_pb2.GetUserRequest(user_id=created[merchant_a])))
            == grpc.StatusCode.PERMISSION_DENIED
        )

    claims = jwt.decode(await points_tokens.token(merchant_a), options={"verify_signature": False})
    assert claims["typ"] == SERVICE and claims["sub"] == "service:points"
    assert claims["merchant_id"] == merchant_a
    assert claims["perms"] == [
        "auth:shop-token",
        "auth:validate",
        "core:read",
        # Its relay and consumer's calls to the edge's CustomerPseudonymService.
        "edge:pseudonyms",
        "users:birthdays",
        "users:read",
    ]
    assert claims["aud"] == [
        "loyalnest/auth",
        "loyalnest/core",
        "loyalnest/edge",
        "loyalnest/users",
    ]
    assert claims["exp"] - claims["iat"] == 300


async def test_credential_and_grant_errors(auth_stub, merchants) -> None:
    merchant_a, _ = merchants
    ok = await auth_stub.IssueServiceToken(signed_request(merchant_id=merchant_a))
    assert ok.token_type == "Bearer" and ok.access_token

    wrong_secret = service_credential(os.urandom(32), "points")
    assert await code_of(auth_stub.IssueServiceToken(signed_request(wrong_secret))) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    # A credential derived correctly for a service that has no grant.
    ghost = service_credential(MASTER_KEY, "ghost")
    assert await code_of(auth_stub.IssueServiceToken(signed_request(ghost, service="ghost"))) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    # Another service's credential does not work for points.
    users_credential = service_credential(MASTER_KEY, "users")
    assert await code_of(auth_stub.IssueServiceToken(signed_request(users_credential))) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    # The signature covers every field: changing the merchant after signing fails.
    tampered = signed_request(merchant_id=merchant_a)
    tampered.merchant_id = merchants[1]
    assert await code_of(auth_stub.IssueServiceToken(tampered)) == grpc.StatusCode.UNAUTHENTICATED
    # Replayed and stale requests.
    once = signed_request()
    await auth_stub.IssueServiceToken(once)
    assert await code_of(auth_stub.IssueServiceToken(once)) == grpc.StatusCode.UNAUTHENTICATED
    stale = signed_request(timestamp=int(time.time()) - 300)
    assert await code_of(auth_stub.IssueServiceToken(stale)) == grpc.StatusCode.UNAUTHENTICATED
    # A permission outside the grant: refused at issue time.
    denied = signed_request(permissions=["users:read", "users:write"])
    assert await code_of(auth_stub.IssueServiceToken(denied)) == grpc.StatusCode.PERMISSION_DENIED
    narrowed = await auth_stub.IssueServiceToken(signed_request(permissions=["users:read"]))
    assert list(narrowed.permissions) == ["users:read"]
    assert list(narrowed.audiences) == ["loyalnest/users"]
    # An unknown merchant, and malformed input.
    unknown = signed_request(merchant_id="00000000-0000-4000-8000-000000000000")
    assert await code_of(auth_stub.IssueServiceToken(unknown)) == grpc.StatusCode.NOT_FOUND
    for bad in (
        signed_request(nonce="short"),
        signed_request(merchant_id="not-a-uuid"),
        signed_request(permissions=["NOPE"]),
    ):
        assert await code_of(auth_stub.IssueServiceToken(bad)) == (grpc.StatusCode.INVALID_ARGUMENT)


async def test_expired_forged_and_misdirected_service_tokens_are_rejected(
    auth_stub, users, merchants
) -> None:
    merchant_a, _ = merchants
    stub_for = users_pb2_grpc.UsersServiceStub

    def mint(issuer: TokenIssuer = ISSUER, **kw: Any) -> str:
        values: dict[str, Any] = {
            "subject": "service:points",
            "merchant_id": merchant_a,
            "permissions": ["users:read"],
            "token_type": SERVICE,
            "audience": ["loyalnest/users"],
        } | kw
        return issuer.mint(**values)

    list_users = users_pb2.ListUsersRequest()
    async with grpc.aio.insecure_channel(users.address) as channel:
        stub = stub_for(channel)
        assert (await stub.ListUsers(list_users, metadata=bearer(mint()))) is not None
        forged_keys = KeySet.generate(local=True)
        forged = mint(TokenIssuer(forged_keys, issuer="loyalnest-auth", audience="loyalnest"))
        header, _, signature = mint().split(".")
        other = mint(merchant_id=merchants[1]).split(".")[1]
        rejected = {
            "expired": mint(ttl_seconds=-120),
            "forged": forged,
            "tampered": f"{header}.{other}.{signature}",
            "for Points": mint(audience=["loyalnest/points"]),
            "not a service subject": mint(subject="points"),
        }
        for name, value in rejected.items():
            code = await code_of(stub.ListUsers(list_users, metadata=bearer(value)))
            assert code == grpc.StatusCode.UNAUTHENTICATED, name


async def test_refresh_before_expiry_with_one_fetch_in_flight(
    database_url, redis_url, shopify
) -> None:
    async with serving_auth(
        database_url, redis_url, shopify, auth_service_token_ttl_seconds=6
    ) as auth:
        source = ServiceTokenSource("points", POINTS_CREDENTIAL, auth.address)
        try:
            burst = await asyncio.gather(*(source.token() for _ in range(20)))
            assert len(set(burst)) == 1  # twenty callers, one fetch
            first = burst[0]
            assert await source.token() == first  # fresh: cached
            expires = jwt.decode(first, options={"verify_signature": False})["exp"]
            await asyncio.sleep(5.0)  # past the refresh point (lifetime - 1/5), before expiry
            assert time.time() < expires
            second = await source.token()
            assert second != first
            assert jwt.decode(second, options={"verify_signature": False})["exp"] > expires
            assert await source.token() == second
        finally:
            await source.close()


# ---- what the callee sees -----------------------------------------------------------------


async def test_callee_records_the_calling_service(auth, points_tokens, merchant_id) -> None:
    # The probe calls itself "users": points' service tokens are meant for it.
    async with running(_probe_spec("users"), _settings()) as probe:
        whoami_path = "/test.Probe/WhoAmI"
        async with open_channel(probe.address, service_tokens=points_tokens) as channel:
            # Acting alone: the service's own token.
            answer = await channel.unary_unary(whoami_path)(b"")
            assert answer == b"service:points||points"
        async with running(_relay_spec(probe.address, points_tokens), _settings()) as relay:
            async with grpc.aio.insecure_channel(relay.address) as channel:
                # Relaying a user's call: the user's token and merchant, plus who relayed it.
                answer = await channel.unary_unary("/test.Relay/Relay")(
                    b"", metadata=merchant_metadata(merchant_id)
                )
                assert answer == f"test-user|{merchant_id}|points".encode()
        async with grpc.aio.insecure_channel(probe.address) as channel:
            call = channel.unary_unary(whoami_path)
            user = ("authorization", f"Bearer {token(merchant_id)}")
            # A forged relaying identity fails the call instead of being ignored.
            forged = ISSUER.mint(subject="service:points", merchant_id=None)  # typ access
            for header in (forged, "garbage"):
                metadata = (user, ("loyalnest-service-token", header))
                assert await code_of(call(b"", metadata=metadata)) == (
                    grpc.StatusCode.UNAUTHENTICATED
                )
            # Without a source of service tokens there is no identity header: a plain user.
            assert await call(b"", metadata=(user,)) == f"test-user|{merchant_id}|".encode()
