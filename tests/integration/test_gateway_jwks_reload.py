"""Key rotation reaches a running Envoy: the gateway fetches Auth's JWKS through its own
listener (remote_jwks + async_fetch), so a token signed with a newly published key is accepted
within the cache period, with no restart. Real Envoy, Auth, Points, PostgreSQL and Valkey."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2

from loyalnest.devstack.postgres import free_port
from loyalnest.gateway import Upstream
from loyalnest.gateway.edge import EdgePolicy, JwtProvider
from loyalnest.gateway.jwt_rules import GatewayJwks
from loyalnest.platform.auth import interceptor
from loyalnest.platform.auth.keys import KeySet
from loyalnest.platform.auth.tokens import TokenIssuer
from loyalnest.services.auth.service import SERVICE_NAME as AUTH_SERVICE
from loyalnest.services.auth.service import SPEC as AUTH_SPEC
from loyalnest.services.points.service import SERVICE_NAME as POINTS_SERVICE
from loyalnest.services.points.service import SPEC as POINTS_SPEC
from tests.integration.conftest import points_settings, serving
from tests.integration.shopify_standin import ShopifyStandIn
from tests.integration.test_auth_service import auth_settings
from tests.integration.test_gateway_validate import (
    Gateway,
    gateway_config,
    http,
    running_gateway,
)

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
CACHE_SECONDS = 2


def _publish(directory: Path, keyset: KeySet) -> None:
    """What an operator does: the keyset for Auth, its public half for everyone else."""
    (directory / "signing-keys.json").write_text(keyset.to_json())
    (directory / "jwks.json").write_text(json.dumps(keyset.public_jwks()))


@pytest.fixture
async def stack(
    database_url: str,
    redis_url: str,
    shopify: ShopifyStandIn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[Gateway, Path, KeySet]]:
    # Points re-reads its JWKS file quickly here, so only the gateway decides the timing.
    monkeypatch.setattr(interceptor, "JWKS_RELOAD_SECONDS", 0.2)
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    keyset = KeySet.generate(local=True)
    _publish(keys_dir, keyset)
    jwks = keys_dir / "jwks.json"
    async with contextlib.AsyncExitStack() as stack:
        auth = await stack.enter_async_context(
            serving(
                AUTH_SPEC,
                auth_settings(
                    database_url,
                    redis_url,
                    shopify,
                    auth_signing_keys_path=keys_dir / "signing-keys.json",
                    jwt_jwks_path=jwks,
                    auth_signing_keys_reload_seconds=0.2,
                ),
            )
        )
        points = await stack.enter_async_context(
            serving(
                POINTS_SPEC,
                points_settings(database_url).model_copy(update={"jwt_jwks_path": jwks}),
            )
        )
        port = free_port()
        remote = GatewayJwks(port, cache_seconds=CACHE_SECONDS)
        config = gateway_config(
            Upstream("points", (POINTS_SERVICE,), (("127.0.0.1", points.port),)),
            listen_port=port,
            upstreams=(
                Upstream("points", (POINTS_SERVICE,), (("127.0.0.1", points.port),)),
                Upstream("auth", (AUTH_SERVICE,), (("127.0.0.1", auth.port),)),
            ),
            policy=EdgePolicy(jwt=JwtProvider(remote, "loyalnest-auth")),
        )
        gateway = await stack.enter_async_context(
            running_gateway(config, tmp_path, {"points": 1, "auth": 1})
        )
        yield gateway, keys_dir, keyset


async def earn(gateway: Gateway, access_token: str) -> Any:
    return await http(
        "POST",
        f"{gateway.url}/v1/api/points/earn",
        json_body={"customer_id": "c-1", "points": 5, "idempotency_key": os.urandom(6).hex()},
        headers={"authorization": f"Bearer {access_token}"},
    )


def mint(keyset: KeySet, merchant_id: str) -> str:
    issuer = TokenIssuer(keyset, issuer="loyalnest-auth", audience="loyalnest")
    return issuer.mint(subject="ops", merchant_id=merchant_id, permissions=["points:write"])


async def test_a_newly_published_key_is_accepted_without_restarting_envoy(
    stack: tuple[Gateway, Path, KeySet], merchant_id: str
) -> None:
    gateway, keys_dir, keyset = stack
    # Until the first background fetch lands, nothing verifies; then the current key does.
    deadline = time.monotonic() + 15
    while (response := await earn(gateway, mint(keyset, merchant_id))).status != 200:
        assert time.monotonic() < deadline, (response.status, response.body)
        await asyncio.sleep(0.2)

    # A key the gateway has never seen: Envoy itself refuses the token (401, its plain text).
    rotated = keyset.with_new_key(activate=True)
    new_token = mint(rotated, merchant_id)
    refused = await earn(gateway, new_token)
    assert refused.status == 401 and b"Jwt" in refused.body, refused.body

    # Publish it (Auth serves the keyset's keys, old and new, at GET /v1/api/auth/jwks).
    _publish(keys_dir, rotated)
    published = time.monotonic()
    pid = gateway.process.pid
    while (response := await earn(gateway, new_token)).status != 200:
        waited = time.monotonic() - published
        # The cache period, a failed-fetch retry, Auth's and Points' re-read: well under 10 s.
        assert waited < CACHE_SECONDS + 8, (response.status, response.body)
        await asyncio.sleep(0.2)
    assert gateway.process.pid == pid and gateway.process.returncode is None
    # Tokens of the old key still pass during the overlap.
    assert (await earn(gateway, mint(keyset, merchant_id))).status == 200
