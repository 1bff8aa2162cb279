"""Points' new REST paths through a real Envoy: rewards, offline sync, and StreamPoints as
NDJSON (GET /v1/api/points/stream/{customer_id}) seeing an earn within a second."""

from __future__ import annotations

import asyncio
import contextlib
import http.client as httpclient
import json
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loyalnest.gateway import Upstream
from loyalnest.platform.server import running
from loyalnest.services.points.service import SERVICE_NAME, SPEC
from tests.auth import merchant_headers
from tests.integration.conftest import points_settings
from tests.integration.test_gateway_validate import Gateway, gateway_config, http, running_gateway

pytestmark = pytest.mark.integration

PERMISSIONS = ("points:read", "points:write", "rewards:write")


@pytest.fixture
async def gateway(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    async with contextlib.AsyncExitStack() as stack:
        points = await stack.enter_async_context(
            running(SPEC, points_settings(database_url, redis_url=redis_url))
        )
        upstream = Upstream("points", (SERVICE_NAME,), (("127.0.0.1", points.port),))
        yield await stack.enter_async_context(
            running_gateway(gateway_config(upstream), tmp_path, {"points": 1})
        )


async def test_rewards_and_sync_over_rest(gateway: Gateway, merchant_id: str) -> None:
    headers = merchant_headers(merchant_id, PERMISSIONS)
    created = await http(
        "POST",
        f"{gateway.url}/v1/api/rewards",
        headers=headers,
        json_body={
            "reward": {
                "name": "Free shipping",
                "kind": "REWARD_KIND_FREE_SHIPPING",
                "points_cost": 50,
            },
            "idempotency_key": "reward-1",
        },
    )
    assert created.status == 200, created.body
    reward = created.json()["reward"]
    assert (reward["active"], reward["points_cost"]) == (True, "50")
    listed = await http("GET", f"{gateway.url}/v1/api/rewards", headers=headers)
    assert [r["reward_id"] for r in listed.json()["rewards"]] == [reward["reward_id"]]

    synced = await http(
        "POST",
        f"{gateway.url}/v1/api/points/sync",
        headers=headers,
        json_body={
            "device_id": "pos-1",
            "transactions": [
                {
                    "client_transaction_id": "t1",
                    "customer_id": "c-9",
                    "kind": "OFFLINE_TRANSACTION_KIND_EARN",
                    "points": 20,
                    "device_time": "2026-11-01T12:00:00Z",
                },
                {
                    "client_transaction_id": "t2",
                    "customer_id": "c-9",
                    "kind": "OFFLINE_TRANSACTION_KIND_REDEEM",
                    "points": 99,
                    "device_time": "2026-11-01T12:01:00Z",
                },
            ],
        },
    )
    assert synced.status == 200, synced.body
    results = synced.json()["results"]
    assert [r["status"] for r in results] == [
        "OFFLINE_SYNC_STATUS_APPLIED",
        "OFFLINE_SYNC_STATUS_REJECTED",
    ]


async def test_stream_points_is_ndjson_through_envoy(gateway: Gateway, merchant_id: str) -> None:
    headers = merchant_headers(merchant_id, PERMISSIONS)
    earned = await http(
        "POST",
        f"{gateway.url}/v1/api/points/earn",
        headers=headers,
        json_body={"customer_id": "c-1", "points": 10, "idempotency_key": "e1"},
    )
    assert earned.status == 200, earned.body

    lines: list[tuple[float, dict[str, object]]] = []
    first_line = threading.Event()
    host, port = gateway.address.split(":")
    connection = httpclient.HTTPConnection(host, int(port), timeout=10)

    def read() -> None:
        connection.request("GET", "/v1/api/points/stream/c-1", headers=headers)
        response = connection.getresponse()
        assert response.status == 200
        while len(lines) < 2:
            line = response.readline()
            if not line:
                return
            if line.strip():
                lines.append((time.monotonic(), json.loads(line)))
                first_line.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert await asyncio.to_thread(first_line.wait, 10), "no first line"
    assert lines[0][1]["balance"]["balance"] == "10"  # int64 as a JSON string

    written_at = time.monotonic()
    second = await http(
        "POST",
        f"{gateway.url}/v1/api/points/earn",
        headers=headers,
        json_body={"customer_id": "c-1", "points": 5, "idempotency_key": "e2"},
    )
    assert second.status == 200
    await asyncio.to_thread(reader.join, 5)
    assert len(lines) == 2, lines
    received_at, update = lines[1]
    assert update["balance"]["balance"] == "15"
    assert received_at - written_at < 1.0
    connection.close()
