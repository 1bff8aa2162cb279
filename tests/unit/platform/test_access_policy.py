"""Access policies fail closed (issue 14, finding 8): every RPC of every LoyalNest proto
declares who may call it, and the auth interceptor refuses an RPC that declares nothing,
whatever valid token comes with it (it used to let any valid token through)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.descriptor import ServiceDescriptor

import loyalnest.gen
from loyalnest.platform.auth.interceptor import AuthInterceptor, JwksFile
from loyalnest.platform.auth.policy import access_policy, declares_access
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.interceptors import ErrorMappingInterceptor
from tests.auth import JWKS_PATH, token


def loyalnest_services() -> Iterator[ServiceDescriptor]:
    for module in pkgutil.walk_packages(loyalnest.gen.__path__, "loyalnest.gen."):
        if module.name.endswith("_pb2"):
            importlib.import_module(module.name)
    for name, module in sorted(sys.modules.items()):
        if name.startswith("loyalnest.gen.") and name.endswith("_pb2") and ".xds." not in name:
            yield from module.DESCRIPTOR.services_by_name.values()


def test_every_rpc_of_every_proto_declares_access() -> None:
    services = list(loyalnest_services())
    assert len(services) >= 6  # auth, users, roles, core, points, edge at least
    undeclared = [
        f"/{service.full_name}/{method.name}"
        for service in services
        for method in service.methods
        if not declares_access(access_policy(f"/{service.full_name}/{method.name}"))
    ]
    assert undeclared == []


def test_platform_services_without_a_proto_option_are_public() -> None:
    for method in (
        "/grpc.health.v1.Health/Check",
        "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
    ):
        assert access_policy(method).public


def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


@pytest.fixture
async def undeclared_server() -> Iterator[str]:
    settings = ServiceSettings()
    jwks = JwksFile(JWKS_PATH, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    # As in every service: errors mapped to statuses outside, authentication inside.
    server = grpc.aio.server(interceptors=[ErrorMappingInterceptor(), AuthInterceptor(jwks, None)])
    handler = grpc.method_handlers_generic_handler(
        "loyalnest.test.v1.Undeclared",
        {"Call": grpc.unary_unary_rpc_method_handler(_echo)},
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def test_an_rpc_declaring_no_access_is_refused_even_with_a_valid_token(
    undeclared_server: str,
) -> None:
    metadata = (("authorization", f"Bearer {token('m-1', ['admin:full'])}"),)
    async with grpc.aio.insecure_channel(undeclared_server) as channel:
        call = channel.unary_unary("/loyalnest.test.v1.Undeclared/Call")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(b"hi", metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "declares no access policy" in (caught.value.details() or "")
