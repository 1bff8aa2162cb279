"""`loyalnest up --detach | status | down`: the whole local mesh as a developer runs it."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
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

from loyalnest.devstack.demo_merchant import DEMO_SHOP
from loyalnest.devstack.ports import bindable
from loyalnest.devstack.stack import StackState
from tests.conftest import WHOLE_FLEET
from tests.shared import shared_file

# Setup included: 14 services x 2 workers start one after another, slowly on a shared machine.
pytestmark = [pytest.mark.timeout(1200), WHOLE_FLEET]
UP_TIMEOUT_SECONDS = 900  # measured: 94 s on a quiet machine, 431 s at load 20


def loyalnest(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loyalnest.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# Below the kernel's ephemeral range (32768+), so client sockets of other tests cannot
# squat a port between the check and the stack's bind; each run takes a random block. A port
# counts as free only when it can be bound: another stack holds its ports bound but not
# listening until their servers start (devstack/ports.py), which a connect would not see.
_BLOCK = 64


def _ports() -> dict[str, int]:
    """A block of free ports: eleven fixed components, then service gRPC ports from `base`
    (metrics ports are base + 1000), all verified free."""
    names = [
        "gateway",
        "gateway-admin",
        "postgres",
        "redis",
        "kafka",
        "reflection",
        "posthog",
        "shopify",
        "klaviyo",
        "postscript",
        "ses",
    ]
    rng = random.Random()
    while True:
        start = rng.randrange(20000, 30000 - 1000 - _BLOCK, _BLOCK)
        block = [*range(start, start + _BLOCK), *range(start + 1000, start + 1000 + _BLOCK)]
        if all(bindable(port) for port in block):
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
        "--shopify-port",
        str(ports["shopify"]),
        "--klaviyo-port",
        str(ports["klaviyo"]),
        "--postscript-port",
        str(ports["postscript"]),
        "--ses-port",
        str(ports["ses"]),
        "--base-port",
        str(ports["base"]),
    ]


@contextlib.contextmanager
def _state_dir(request: pytest.FixtureRequest, prefix: str) -> Iterator[Path]:
    """A stack's state directory (its PostgreSQL, Redis and logs: 50-100 MB), removed when
    the tests that used it passed, kept for its logs when one failed or the stack did not
    start (the failure names it)."""
    state = Path(tempfile.mkdtemp(prefix=prefix))
    state.chmod(0o755)
    failed_before = request.session.testsfailed
    yield state
    if request.session.testsfailed == failed_before:
        shutil.rmtree(state)


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[tuple[Path, dict[str, int]]]:
    with _state_dir(request, "loyalnest-e2e-") as state:
        yield from _started_stack(state)


def _started_stack(state: Path) -> Iterator[tuple[Path, dict[str, int]]]:
    ports = _ports()
    try:
        started = loyalnest(
            "up",
            "--detach",
            "--workers",
            "2",
            "--state-dir",
            str(state),
            *_port_args(ports),
            timeout=UP_TIMEOUT_SECONDS,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        assert "REST base URL" in started.stdout
        # `up` installed the demo shop through OAuth (the stand-in) before reporting ready.
        assert f"{DEMO_SHOP} installed" in (state / "stack.log").read_text()
        _STATE["dir"] = state
        yield state, ports
    finally:
        # Also when `up` timed out: the detached stack keeps starting otherwise.
        stopped = loyalnest("down", "--state-dir", str(state))
        assert stopped.returncode == 0, stopped.stderr


_STATE: dict[str, Path] = {}


def _token(
    ports: dict[str, int],
    permissions: str = "points:read,points:write",
    acting_for: tuple[str, str] = ("--merchant", "e2e-shop"),
) -> str:
    """A token from `loyalnest token`, signed with the stack's own local key."""
    minted = loyalnest(
        "token",
        *acting_for,
        "--permissions",
        permissions,
        "--state-dir",
        str(_STATE["dir"]),
    )
    assert minted.returncode == 0, minted.stderr
    return minted.stdout.strip()


def _rest(
    ports: dict[str, int],
    method: str,
    path: str,
    body: dict | None = None,
    token: str | None = None,
):
    request = urllib.request.Request(
        f"http://127.0.0.1:{ports['gateway']}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "authorization": f"Bearer {token or _token(ports)}",
            "content-type": "application/json",
        },
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


def test_the_demo_shops_signed_order_webhook_credits_points(stack):
    """README "From a Shopify order to a customer's points", as written: the demo shop is
    installed by `loyalnest up` (OAuth against the Shopify stand-in), so the edge accepts its
    webhook and Points credits the order."""
    _, ports = stack
    token = _token(ports, "points:read,core:read,core:write", ("--shop", DEMO_SHOP))
    status, body = _rest(
        ports,
        "PATCH",
        "/v1/api/core/settings",
        {
            "settings": {"points_per_currency_unit": "1", "pending_period": "0s"},
            "update_mask": "points_per_currency_unit,pending_period",
            "idempotency_key": "e2e-settings-1",
        },
        token,
    )
    assert status == 200, body
    sent = loyalnest(
        "webhook",
        "--topic",
        "orders/create",
        "--shop",
        DEMO_SHOP,
        "--gateway",
        f"http://127.0.0.1:{ports['gateway']}",
        str(shared_file("fixtures", "shopify", "orders-create.json")),
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "WEBHOOK_OUTCOME_ACCEPTED" in sent.stdout, sent.stdout
    # webhook.received travels over Kafka to Points: poll what the merchant's API shows.
    deadline = time.monotonic() + 60
    while True:
        status, body = _rest(ports, "GET", "/v1/api/points/orders/5829301457001", token=token)
        if status == 200 and body["order"]["status"] == "ORDER_EARNING_STATUS_APPROVED":
            break
        assert time.monotonic() < deadline, (status, body)
        time.sleep(0.5)
    # 2 x 30.00 + 1 x 60.00 less 12.00 of discount code = 108.00 USD -> 108 points.
    assert body["order"]["approved_points"] == "108"
    status, body = _rest(ports, "GET", "/v1/api/points/balance/7390012230001", token=token)
    assert (status, body["balance"]["balance"]) == (200, "108")


def test_a_reward_redeemed_on_the_demo_shop_gets_a_discount_code(stack):
    """`loyalnest up` runs Shopify's Admin API stand-in on the OAuth one's port: a redemption
    creates its single-use code there with the shop token Auth got at install."""
    _, ports = stack
    token = _token(ports, "points:read,points:write,rewards:write", ("--shop", DEMO_SHOP))
    customer = "7390012239999"
    status, body = _rest(
        ports,
        "POST",
        "/v1/api/points/earn",
        {"customer_id": customer, "points": 500, "idempotency_key": "e2e-reward-earn"},
        token,
    )
    assert status == 200, body
    status, body = _rest(
        ports,
        "POST",
        "/v1/api/rewards",
        {
            "reward": {
                "name": "5 off",
                "kind": "REWARD_KIND_FIXED_AMOUNT",
                "value": "5.00",
                "points_cost": "200",
            },
            "idempotency_key": "e2e-reward-create",
        },
        token,
    )
    assert status == 200, body
    reward_id = body["reward"]["reward_id"]
    status, body = _rest(
        ports,
        "POST",
        f"/v1/api/rewards/{reward_id}/redeem",
        {"customer_id": customer, "idempotency_key": "e2e-reward-redeem"},
        token,
    )
    assert status == 200, body
    assert body["discount_code"] and body["balance"]["balance"] == "300"


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


def test_a_busy_port_fails_naming_the_component(request: pytest.FixtureRequest) -> None:
    with _state_dir(request, "loyalnest-e2e-busy-") as state:
        _fails_naming_the_busy_component(state)


def _fails_naming_the_busy_component(state: Path) -> None:
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
