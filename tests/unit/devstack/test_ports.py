"""The local stack's port reservations: its fixed ports are held from the start, so no
outgoing connection takes one as its source port, and released to the server that serves
each one as it starts."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time

import pytest

from loyalnest.devstack.ports import FREE_PORTS_ENV, PortReservations, bindable, free_port
from loyalnest.devstack.servers import tcp_ready
from loyalnest.devstack.supervisor import ProcessSpec, Supervisor


async def test_a_reserved_port_is_held_until_its_server_starts(tmp_path):
    port = free_port()
    reservations = PortReservations(lambda message: None)
    await reservations.reserve([port])
    assert reservations.held == {port} and not bindable(port)

    async def listening() -> bool:
        return await tcp_ready("127.0.0.1", port)

    supervisor = Supervisor(tmp_path, lambda name, message: None, reservations)
    server = (
        "import http.server as h;"
        f" h.HTTPServer(('127.0.0.1', {port}), h.BaseHTTPRequestHandler).serve_forever()"
    )
    try:
        await supervisor.start(
            ProcessSpec("server", [sys.executable, "-c", server], listening, ports=[port])
        )
        assert reservations.held == set()
    finally:
        await supervisor.stop_all()


async def test_a_port_still_held_by_a_closing_connection_is_waited_for():
    port = free_port()
    closing = socket.socket()
    closing.bind(("127.0.0.1", port))  # as a connection in TIME_WAIT holds it: bound, no server
    said: list[str] = []
    reservations = PortReservations(said.append)
    waiting = asyncio.create_task(reservations.reserve([port], wait_seconds=10))
    await asyncio.sleep(0.8)
    assert not waiting.done() and str(port) in said[0]
    closing.close()
    await asyncio.wait_for(waiting, 5)
    assert reservations.held == {port}
    reservations.release_all()
    assert bindable(port)


async def test_a_port_a_server_listens_on_is_left_to_the_components_own_check():
    port = free_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        reservations = PortReservations(lambda message: None)
        started = time.monotonic()
        await reservations.reserve([port], wait_seconds=10)
        assert time.monotonic() - started < 2 and reservations.held == set()


def test_free_ports_come_from_the_configured_slice(monkeypatch):
    monkeypatch.setenv(FREE_PORTS_ENV, "41000-41999")
    ports = {free_port() for _ in range(50)}
    assert len(ports) == 50 and all(41_000 <= port <= 41_999 for port in ports)


@pytest.mark.parametrize("configured", ["41000", "41000-", "42000-41000", "0-99", "65000-70000"])
def test_a_malformed_slice_is_refused_naming_the_setting(monkeypatch, configured):
    monkeypatch.setenv(FREE_PORTS_ENV, configured)
    with pytest.raises(ValueError, match=FREE_PORTS_ENV):
        free_port()


def test_a_slice_narrower_than_a_thousand_ports_is_still_used(monkeypatch):
    monkeypatch.setenv(FREE_PORTS_ENV, "41500-41509")
    assert 41_500 <= free_port() <= 41_509


def test_each_test_worker_draws_from_its_own_slice():
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        pytest.skip("the suite runs in one process here (TEST_WORKERS=0): no slices to check")
    low, _, high = os.environ[FREE_PORTS_ENV].partition("-")
    assert 10_000 <= int(low) < int(high) < 20_000
