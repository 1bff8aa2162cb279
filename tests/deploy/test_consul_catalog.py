"""`loyalnest consul-sync --mode catalog` (agentless Consul) against a stand-in of the Consul
servers' catalog API (tests/deploy/consul_catalog_standin.py), over HTTPS with its CA, with
ACL tokens; the pod's service is a real gRPC server with grpc.health.v1."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from loyalnest.consul.agent import AgentError, Registration
from loyalnest.consul.catalog import CatalogClient, ConsulPermissionDenied
from tests.deploy.consul_catalog_standin import ConsulCatalogStandIn, Token

NODE = "loyalnest-k8s"
GOOD = "token-points"  # node:write on the virtual node, service:write on points
READ_ONLY = "token-readonly"


@pytest.fixture
def consul(tmp_path: Path) -> Iterator[ConsulCatalogStandIn]:
    standin = ConsulCatalogStandIn(
        tmp_path,
        {GOOD: Token(write={("node", NODE), ("service", "points")}), READ_ONLY: Token()},
    )
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture
def service_health() -> Iterator[tuple[int, health.HealthServicer]]:
    """The pod's service: a gRPC server whose overall health the test sets."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    try:
        yield port, servicer
    finally:
        server.stop(None)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@contextmanager
def sidecar(
    consul: ConsulCatalogStandIn, port: int, token_file: Path, *extra: str
) -> Iterator[subprocess.Popen[str]]:
    """The real CLI in its own process, as the chart's container runs it."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loyalnest.cli",
            "consul-sync",
            "--mode=catalog",
            "--service-name=points",
            "--service-id=points-pod-1",
            "--address=10.1.2.3",
            f"--port={port}",
            f"--consul-addr={consul.url}",
            f"--node={NODE}",
            f"--token-file={token_file}",
            f"--ca-file={consul.ca_file}",
            "--resync-interval=0.1",
            "--meta=k8s-pod=points-pod-1",
            *extra,
        ],
        env={"PATH": "/usr/bin:/bin"},
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


def test_registers_in_the_catalog_reports_health_and_deregisters_on_sigterm(
    consul: ConsulCatalogStandIn,
    service_health: tuple[int, health.HealthServicer],
    tmp_path: Path,
) -> None:
    port, servicer = service_health
    token_file = tmp_path / "token"
    token_file.write_text(GOOD + "\n")
    with sidecar(consul, port, token_file) as process:
        wait_for(lambda: consul.instance(NODE, "points-pod-1") is not None)
        instance = consul.instance(NODE, "points-pod-1")
        assert instance is not None
        service, status = instance
        assert service["Service"] == "points"
        assert (service["Address"], service["Port"]) == ("10.1.2.3", port)
        assert service["Meta"] == {"k8s-pod": "points-pod-1"}
        assert status == "passing"  # the pod's own grpc.health.v1 answered SERVING
        # The documented request shape: the virtual node without touching its other fields.
        registers = [r for r in consul.requests if r[1] == "/v1/catalog/register"]
        body = registers[0][2]
        assert body is not None
        assert (body["Node"], body["Address"], body["SkipNodeUpdate"]) == (NODE, "127.0.0.1", True)
        assert body["Check"]["ServiceID"] == "points-pod-1" and body["Check"]["Node"] == NODE
        assert all(token == GOOD for *_, token in consul.requests)

        # Health changes reach the catalog (nobody else runs a catalog check).
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        wait_for(lambda: (consul.instance(NODE, "points-pod-1") or ({}, ""))[1] == "critical")
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        wait_for(lambda: (consul.instance(NODE, "points-pod-1") or ({}, ""))[1] == "passing")
        # Unchanged health, present registration: no write per resync.
        writes = len([r for r in consul.requests if r[1] == "/v1/catalog/register"])
        time.sleep(0.5)
        assert len([r for r in consul.requests if r[1] == "/v1/catalog/register"]) == writes

        process.send_signal(signal.SIGTERM)
        assert process.wait(5) == 0
    assert consul.instance(NODE, "points-pod-1") is None
    (deregister,) = [r for r in consul.requests if r[1] == "/v1/catalog/deregister"]
    assert deregister[2] == {"Node": NODE, "ServiceID": "points-pod-1"}


def test_a_token_without_write_is_reported_and_a_rotated_token_is_used(
    consul: ConsulCatalogStandIn,
    service_health: tuple[int, health.HealthServicer],
    tmp_path: Path,
) -> None:
    """403 Permission denied: nothing registered, the sidecar says why; once the mounted
    Secret holds a token with the rights, the next attempt registers, without a restart."""
    port, _ = service_health
    token_file = tmp_path / "token"
    token_file.write_text(READ_ONLY)
    with sidecar(consul, port, token_file, "--resync-interval=0.05") as process:
        wait_for(lambda: any(r[1] == "/v1/catalog/register" for r in consul.requests))
        assert consul.instance(NODE, "points-pod-1") is None
        token_file.write_text(GOOD)
        wait_for(lambda: consul.instance(NODE, "points-pod-1") is not None, timeout=15)
        process.send_signal(signal.SIGTERM)
        assert process.wait(5) == 0
        output = process.stdout.read() if process.stdout else ""
    assert "Consul refused the ACL token" in output and "Permission denied" in output


def test_acl_and_tls_errors_are_distinct(consul: ConsulCatalogStandIn) -> None:
    registration = Registration(service_id="p-1", name="points", address="10.0.0.1", port=50051)
    unknown = CatalogClient(consul.url, node=NODE, token="nope", ca_file=consul.ca_file)
    with pytest.raises(ConsulPermissionDenied, match="ACL not found"):
        unknown.register(registration, "passing")
    anonymous = CatalogClient(consul.url, node=NODE, ca_file=consul.ca_file)
    with pytest.raises(ConsulPermissionDenied, match="Permission denied"):
        anonymous.deregister("p-1")
    # Without the servers' CA the connection is refused by our side, not sent in the clear.
    untrusted = CatalogClient(consul.url, node=NODE, token=GOOD)
    with pytest.raises(AgentError, match="CERTIFICATE_VERIFY_FAILED") as caught:
        untrusted.register(registration, "passing")
    assert not isinstance(caught.value, ConsulPermissionDenied)
    assert not any(r[1] == "/v1/catalog/register" and r[3] == GOOD for r in consul.requests)
    client = CatalogClient(consul.url, node=NODE, token=GOOD, ca_file=consul.ca_file)
    client.register(registration, "passing")
    assert client.lookup(registration) == {
        "ID": "p-1",
        "Service": "points",
        "Address": "10.0.0.1",
        "Port": 50051,
    }
    assert registration.matches(client.lookup(registration) or {})
