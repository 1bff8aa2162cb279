"""The local stack gives each service the addresses of exactly the services it declares."""

from __future__ import annotations

import json
from pathlib import Path

from loyalnest.devstack.stack import Ports, Stack
from loyalnest.platform.config import CallSettings
from loyalnest.services.registry import SERVICES, spec_for


def _stack(tmp_path: Path, workers: int = 2) -> Stack:
    stack = object.__new__(Stack)  # only the parts that compute environments
    stack.workers = workers
    stack.ports = Ports(first_service=61000)
    stack.jwks_path = tmp_path / "keys" / "jwks.json"
    return stack


def test_each_service_gets_the_workers_of_its_declared_callees(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    addresses = stack._addresses()
    assert list(addresses) == list(SERVICES)
    ports = [a.rsplit(":", 1)[1] for workers in addresses.values() for a in workers]
    assert len(set(ports)) == 2 * len(SERVICES)
    for service in SERVICES:
        calls = spec_for(service).calls.services
        env = stack._call_env(calls, addresses)
        if not calls:
            assert env == {}
            continue
        targets = json.loads(env["LOYALNEST_CALL_TARGETS"])
        assert set(targets) == set(calls), service
        for callee, target in targets.items():
            assert target == "ipv4:" + ",".join(addresses[callee])
        # What the service reads back from that environment.
        assert CallSettings(call_targets=env["LOYALNEST_CALL_TARGETS"]).call_targets == targets


def test_only_callers_of_auth_get_a_credential(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    assert "LOYALNEST_AUTH_SERVICE_CREDENTIAL_KEY" in stack._identity_env("auth", ("roles",))
    points = stack._identity_env("points", ("auth",))
    assert set(points) == {"LOYALNEST_SERVICE_CREDENTIAL"}
    assert stack._identity_env("users", ()) == {}
    # Derived from one master key: the same credential every time.
    assert stack._identity_env("points", ("auth",)) == points


def test_the_ports_held_from_the_start_are_the_ones_the_processes_listen_on(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    served = [p for *_, grpc, metrics in stack._service_processes() for p in (grpc, metrics)]
    assert len(served) == len(set(served)) == 2 * 2 * len(SERVICES)
    ports = stack.ports
    assert sorted(stack._mesh_ports()) == sorted(
        [*served, ports.reflection, ports.gateway, ports.gateway_admin]
    )
    # Every service's gRPC port is the address its callers are given.
    given = {a for workers in stack._addresses().values() for a in workers}
    assert given == {f"127.0.0.1:{grpc}" for *_, grpc, _ in stack._service_processes()}
