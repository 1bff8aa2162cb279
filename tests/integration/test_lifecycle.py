"""Health follows PostgreSQL; SIGTERM drains in-flight calls before the process exits, on
uvloop (the default) and on the standard asyncio loop (LOYALNEST_EVENT_LOOP=asyncio)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator

import grpc
import httpx
import psycopg
import pytest
from grpc_health.v1 import health_pb2
from prometheus_client.parser import text_string_to_metric_families

from loyalnest.devstack.postgres import LocalPostgres, free_port
from loyalnest.gen.points.v1 import points_pb2 as pb
from loyalnest.gen.points.v1 import points_pb2_grpc
from loyalnest.platform.server import running
from loyalnest.services.points.service import SERVICE_NAME, SPEC
from tests.auth import merchant_metadata
from tests.conftest import new_postgres
from tests.integration.conftest import NO_CALLEES, points_settings, wait_for_health

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def own_postgres() -> Iterator[LocalPostgres]:
    """A PostgreSQL this test may crash and restart without disturbing the others.

    Durable settings (not `ephemeral`): an immediate stop must not lose committed migrations.
    """
    with new_postgres(ephemeral=False) as server:
        server.start()
        server.create_database("loyalnest")
        yield server


async def test_health_follows_postgres(own_postgres: LocalPostgres):
    async with running(SPEC, points_settings(own_postgres.url("loyalnest"))) as service:
        await wait_for_health(service.address, SERVING)
        await wait_for_health(service.address, SERVING, service=SERVICE_NAME)

        await asyncio.to_thread(own_postgres.stop, "immediate")
        await wait_for_health(service.address, NOT_SERVING)
        await wait_for_health(service.address, NOT_SERVING, service=SERVICE_NAME)

        await asyncio.to_thread(own_postgres.start)
        await wait_for_health(service.address, SERVING)
        # And calls work again on the same pool.
        async with grpc.aio.insecure_channel(service.address) as channel:
            stub = points_pb2_grpc.PointsServiceStub(channel)
            response = await stub.EarnPoints(
                pb.EarnPointsRequest(customer_id="c", points=3, idempotency_key="k"),
                metadata=merchant_metadata("m"),
            )
            assert response.balance.balance == 3


async def test_starts_not_serving_until_postgres_is_up():
    with new_postgres(ephemeral=True) as late:
        async with running(SPEC, points_settings(late.url("postgres"))) as service:
            await wait_for_health(service.address, NOT_SERVING)
            await asyncio.sleep(0.5)
            await wait_for_health(service.address, NOT_SERVING)
            await asyncio.to_thread(late.start)
            await wait_for_health(service.address, SERVING, timeout=30)


def _event_loop_reported(metrics_url: str) -> str | None:
    """The `loop` label of loyalnest_event_loop_info on the process's /metrics."""
    for family in text_string_to_metric_families(httpx.get(metrics_url, timeout=10).text):
        if family.name == "loyalnest_event_loop_info":
            return str(family.samples[0].labels["loop"])
    return None


# A fresh `loyalnest serve` imports grpc, OpenTelemetry and the service (~4 s of CPU): on this
# shared machine that has taken over 90 s of wall time, far beyond wait_for_health's default.
START_TIMEOUT_SECONDS = 300.0


async def _wait_until_serving(process: asyncio.subprocess.Process, address: str) -> None:
    """SERVING, or fails as soon as the process has exited (a crash is not a slow start)."""
    waiting = asyncio.create_task(wait_for_health(address, SERVING, timeout=START_TIMEOUT_SECONDS))
    exited = asyncio.create_task(process.wait())
    await asyncio.wait([waiting, exited], return_when=asyncio.FIRST_COMPLETED)
    if not waiting.done():
        waiting.cancel()
        raise AssertionError(f"the service exited with {process.returncode} before serving")
    exited.cancel()
    await waiting


# The default (no setting) serves on uvloop; LOYALNEST_EVENT_LOOP=asyncio falls back.
@pytest.mark.parametrize(("setting", "expected_loop"), [(None, "uvloop"), ("asyncio", "asyncio")])
@pytest.mark.timeout(START_TIMEOUT_SECONDS + 120)
async def test_sigterm_finishes_in_flight_calls(
    database_url: str, setting: str | None, expected_loop: str
):
    metrics_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "LOYALNEST_EVENT_LOOP"},
        **({"LOYALNEST_EVENT_LOOP": setting} if setting else {}),
        "LOYALNEST_GRPC_PORT": str(free_port()),
        "LOYALNEST_METRICS_PORT": str(metrics_port),
        "LOYALNEST_DATABASE_URL": database_url,
        "LOYALNEST_SHUTDOWN_GRACE_SECONDS": "10",
        # Points declares a call to Auth: a target is required at start, none is called.
        "LOYALNEST_CALL_TARGET_TEMPLATE": NO_CALLEES,
    }
    address = f"127.0.0.1:{env['LOYALNEST_GRPC_PORT']}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loyalnest.cli", "serve", "points", env=env
    )
    try:
        await _wait_until_serving(process, address)
        loop = await asyncio.to_thread(
            _event_loop_reported, f"http://127.0.0.1:{metrics_port}/metrics"
        )
        assert loop == expected_loop
        md = merchant_metadata("m-drain")
        async with grpc.aio.insecure_channel(address) as channel:
            stub = points_pb2_grpc.PointsServiceStub(channel)
            await stub.EarnPoints(
                pb.EarnPointsRequest(customer_id="c", points=10, idempotency_key="seed"),
                metadata=md,
            )
            # Hold the customer's ledger row so the next call is in flight when SIGTERM lands.
            async with await psycopg.AsyncConnection.connect(database_url) as blocker:
                async with blocker.transaction():
                    await blocker.execute(
                        "SELECT 1 FROM points.ledgers WHERE customer_id = 'c' FOR UPDATE"
                    )
                    in_flight = asyncio.ensure_future(
                        stub.RedeemPoints(
                            pb.RedeemPointsRequest(customer_id="c", points=4, idempotency_key="r"),
                            metadata=md,
                        )
                    )
                    await asyncio.sleep(0.5)
                    assert not in_flight.done()
                    process.send_signal(signal.SIGTERM)
                    await asyncio.sleep(0.5)
                    assert process.returncode is None, "must wait for the in-flight call"
            response = await in_flight
            assert response.balance.balance == 6
        # Drained: the exit itself only waits for the loops and pools to close.
        assert await asyncio.wait_for(process.wait(), 60) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
