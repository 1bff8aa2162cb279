"""`loyalnest up --detach | status | down`: the whole local mesh as a developer runs it."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from loyalnest.devstack.servers import port_in_use
from loyalnest.devstack.stack import StackState

pytestmark = pytest.mark.timeout(240)


def loyalnest(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loyalnest.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# Below the kernel's ephemeral range (32768+), so client sockets of other tests cannot
# squat a port between the check and the stack's bind; each run takes a random block.
_BLOCK = 64


def _ports() -> dict[str, int]:
    """A block of free ports: seven fixed components, then service gRPC ports from `base`
    (metrics ports are base + 1000), all verified free."""
    names = ["gateway", "gateway-admin", "postgres", "redis", "kafka", "reflection", "posthog"]
    rng = random.Random()
    while True:
        start = rng.randrange(20000, 30000 - 1000 - _BLOCK, _BLOCK)
        block = [*range(start, start + _BLOCK), *range(start + 1000, start + 1000 + _BLOCK)]
        if not any(port_in_use(port) for port in block):
            break
    ports = dict(zip(names, range(start, start + len(names)), strict=True))
    ports["base"] = start + 16
    return ports


def _port_args(ports: dict[str, int]) -> list[str]:
    return [
        "--gateway-port",
        str(ports["gateway"]),
        "--gateway-admin-port",
        str(ports["gateway-admin"]),
        "--postgres-port",
        str(ports["postgres"]),
        "--redis-port",
        str(ports["redis"]),
        "--kafka-port",
        str(ports["kafka"]),
        "--reflection-port",
        str(ports["reflection"]),
        "--posthog-port",
        str(ports["posthog"]),
        "--base-port",
        str(ports["base"]),
    ]


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Path, dict[str, int]]]:
    state = Path(tempfile.mkdtemp(prefix="loyalnest-e2e-"))
    state.chmod(0o755)
    ports = _ports()
    started = loyalnest(
        "up", "--detach", "--workers", "2", "--state-dir", str(state), *_port_args(ports)
    )
    assert started.returncode == 0, started.stdout + started.stderr
    assert "REST base URL" in started.stdout
    _STATE["dir"] = state
    try:
        yield state, ports
    finally:
        stopped = loyalnest("down", "--state-dir", str(state))
        assert stopped.returncode == 0, stopped.stderr


_STATE: dict[str, Path] = {}


def _token(ports: dict[str, int], permissions: str = "points:read,points:write") -> str:
    """A token from `loyalnest token`, signed with the stack's own local key."""
    minted = loyalnest(
        "token",
        "--merchant",
        "e2e-shop",
        "--permissions",
        permissions,
        "--state-dir",
        str(_STATE["dir"]),
    )
    assert minted.returncode == 0, minted.stderr
    return minted.stdout.strip()


def _rest(ports: dict[str, int], method: str, path: str, body: dict | None = None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{ports['gateway']}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"authorization": f"Bearer {_token(ports)}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_rest_through_the_gateway_reaches_points(stack):
    _, ports = stack
    status, body = _rest(
        ports,
        "POST",
        "/v1/api/points/earn",
        {"customer_id": "c-1", "points": 120, "idempotency_key": "order-1001"},
    )
    assert status == 200, body
    assert body["balance"]["balance"] == "120"
    status, body = _rest(ports, "GET", "/v1/api/points/balance/c-1")
    assert (status, body["balance"]["lifetime_redeemed"]) == (200, "0")
    status, body = _rest(
        ports,
        "POST",
        "/v1/api/points/redeem",
        {"customer_id": "c-1", "points": 500, "idempotency_key": "r-1"},
    )
    assert status == 400  # FAILED_PRECONDITION maps to 400
    assert body["details"][0]["violations"][0]["type"] == "INSUFFICIENT_POINTS"


def test_the_gateway_rejects_calls_without_a_valid_token(stack):
    _, ports = stack
    url = f"http://127.0.0.1:{ports['gateway']}/v1/api/points/balance/c-1"
    for headers in ({}, {"authorization": "Bearer not-a-token"}):
        request = urllib.request.Request(url, headers=headers)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == 401


def test_grpcurl_lists_every_service_through_the_gateway(stack):
    _, ports = stack
    grpcurl = str(Path(sys.executable).parent / "grpcurl")
    listed = subprocess.run(
        [grpcurl, "-plaintext", f"127.0.0.1:{ports['gateway']}", "list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "loyalnest.points.v1.PointsService" in listed.stdout.split()


def test_status_reports_every_component_healthy(stack):
    state_dir, _ = stack
    result = loyalnest("status", "--state-dir", str(state_dir))
    assert result.returncode == 0, result.stdout
    for component in ("postgres", "redis", "kafka", "points-0", "points-1", "gateway"):
        assert component in result.stdout


def test_a_crashed_worker_is_restarted(stack):
    state_dir, _ = stack
    state = StackState.load(state_dir)
    assert state is not None
    victim = next(c for c in state.components if c.name == "points-1")
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = StackState.load(state_dir)
        assert state is not None
        current = next(c for c in state.components if c.name == "points-1")
        restarted = current.restarts >= 1 and current.pid != victim.pid
        if restarted and loyalnest("status", "--state-dir", str(state_dir)).returncode == 0:
            return
        time.sleep(0.5)
    pytest.fail("points-1 was not restarted and healthy again within 60 s")


def test_a_busy_port_fails_naming_the_component():
    state = Path(tempfile.mkdtemp(prefix="loyalnest-e2e-busy-"))
    state.chmod(0o755)
    ports = _ports()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["redis"]))
        squatter.listen()
        result = loyalnest("up", "--state-dir", str(state), *_port_args(ports))
    assert result.returncode == 1
    assert f"redis could not start: port {ports['redis']} is already in use" in result.stderr
    # What had started (PostgreSQL) was stopped again.
    assert "postgres         stopped" in result.stdout
    assert loyalnest("status", "--state-dir", str(state)).returncode == 3
