"""`loyalnest consul-sync` against a local stand-in of the Consul agent HTTP API.

No Consul agent can be installed on these machines, so this test starts its own small HTTP
server that implements the three agent endpoints the sidecar uses (register, read, deregister)
with the agent's status codes, and can "restart" (forget every service, refuse connections for a
while). It proves the sidecar's side of the contract, not Consul's behaviour.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from loyalnest.consul import AgentClient, CatalogSync, Registration


class FakeAgent:
    """In-memory stand-in for a Consul agent's /v1/agent/service/* endpoints."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.down = False
        self.lock = threading.Lock()
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _reply(self, status: int, body: object = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                if agent.down:  # a restarting agent: drop the connection unanswered
                    self.close_connection = True
                    self.connection.close()
                    return None
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                path = self.path.split("?", 1)[0]
                with agent.lock:
                    agent.calls.append((self.command, self.path, dict(self.headers)))
                    if self.command == "PUT" and path == "/v1/agent/service/register":
                        agent.services[body["ID"]] = body
                        return self._reply(200)
                    if self.command == "GET" and path.startswith("/v1/agent/service/"):
                        service = agent.services.get(path.rsplit("/", 1)[1])
                        if service is None:
                            return self._reply(404)
                        # The agent's view: Service is the name, plus what was registered.
                        return self._reply(
                            200,
                            {
                                "ID": service["ID"],
                                "Service": service["Name"],
                                "Address": service["Address"],
                                "Port": service["Port"],
                                "Tags": service["Tags"],
                                "Meta": service["Meta"],
                            },
                        )
                    if self.command == "PUT" and path.startswith("/v1/agent/service/deregister/"):
                        if agent.services.pop(path.rsplit("/", 1)[1], None) is None:
                            return self._reply(404)
                        return self._reply(200)
                return self._reply(405)

            do_GET = _handle  # noqa: N815 (BaseHTTPRequestHandler's naming)
            do_PUT = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def restart(self, downtime: float) -> None:
        """Forgets everything (an agent restarted without persisted state) after `downtime`
        seconds of refusing to answer."""
        self.down = True
        with self.lock:
            self.services.clear()
        time.sleep(downtime)
        self.down = False

    def registrations(self) -> int:
        with self.lock:
            return sum(
                1 for method, path, _ in self.calls if method == "PUT" and "register?" in path
            )


@pytest.fixture
def agent() -> Iterator[FakeAgent]:
    fake = FakeAgent()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@contextmanager
def sidecar(agent: FakeAgent, *extra: str) -> Iterator[subprocess.Popen[str]]:
    """The real CLI in its own process, as the container runs it."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loyalnest.cli",
            "consul-sync",
            "--service-name",
            "points",
            "--service-id",
            "points-pod-1",
            "--address",
            "10.1.2.3",
            "--port",
            "50051",
            "--consul-addr",
            agent.url,
            "--resync-interval",
            "0.1",
            "--tag",
            "grpc",
            "--meta",
            "k8s-pod=points-pod-1",
            *extra,
        ],
        env={"CONSUL_HTTP_TOKEN": "secret-token", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(5)


def test_registers_with_grpc_check_and_deregisters_on_sigterm(agent: FakeAgent) -> None:
    with sidecar(agent) as process:
        wait_for(lambda: "points-pod-1" in agent.services)
        service = agent.services["points-pod-1"]
        assert service["Name"] == "points"
        assert (service["Address"], service["Port"]) == ("10.1.2.3", 50051)
        assert service["Tags"] == ["grpc"] and service["Meta"] == {"k8s-pod": "points-pod-1"}
        assert service["Check"] == {
            "CheckID": "points-pod-1:grpc",
            "Name": "gRPC health",
            "GRPC": "10.1.2.3:50051",
            "GRPCUseTLS": False,
            "Interval": "10s",
            "Timeout": "2s",
            "DeregisterCriticalServiceAfter": "1m",
        }
        # The ACL token travels in the header, from the environment.
        assert all(h.get("X-Consul-Token") == "secret-token" for _, _, h in agent.calls)
        process.send_signal(signal.SIGTERM)
        assert process.wait(5) == 0
        output = process.stdout.read() if process.stdout else ""
    assert "points-pod-1" not in agent.services
    assert any("deregister/points-pod-1" in path for _, path, _ in agent.calls), output


def test_reregisters_after_the_agent_restarts(agent: FakeAgent) -> None:
    with sidecar(agent) as process:
        wait_for(lambda: "points-pod-1" in agent.services)
        time.sleep(0.3)  # several resyncs: a present registration is not registered again
        assert agent.registrations() == 1
        agent.restart(downtime=0.5)
        wait_for(lambda: "points-pod-1" in agent.services)
        assert agent.registrations() == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(5) == 0


def test_changed_registration_is_replaced(agent: FakeAgent) -> None:
    client = AgentClient(agent.url)
    registration = Registration(
        service_id="points-a", name="points", address="10.0.0.1", port=50051
    )
    sync = CatalogSync(client, registration, resync_interval=0.05)
    assert sync.sync_once() is True
    assert sync.sync_once() is False
    # Someone (an older pod with the same id) registered another address: ours wins.
    agent.services["points-a"]["Address"] = "10.9.9.9"
    assert sync.sync_once() is True
    assert agent.services["points-a"]["Address"] == "10.0.0.1"


def test_unreachable_agent_does_not_crash_and_stop_still_returns() -> None:
    client = AgentClient("http://127.0.0.1:9", timeout=0.2)  # discard port: refused
    registration = Registration(service_id="x", name="points", address="10.0.0.1", port=50051)
    sync = CatalogSync(client, registration, resync_interval=0.05, max_backoff=0.1)
    runner = threading.Thread(target=sync.run)
    runner.start()
    time.sleep(0.3)
    sync.stop()
    runner.join(5)
    assert not runner.is_alive()
    assert sync.registrations == 0
