"""Shared fixtures: one real PostgreSQL for the whole run, started and torn down here."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loyalnest.devstack.ports import FREE_PORTS_ENV
from loyalnest.devstack.postgres import LocalPostgres, free_port


@contextlib.contextmanager
def new_postgres(*, ephemeral: bool) -> Iterator[LocalPostgres]:
    """A not-yet-started cluster in a fresh directory; stopped if running and its directory
    removed on exit (a cluster is 40 MB before its first database)."""
    # Under /tmp with 0755 parents: as root the server runs as `postgres`, which must reach it.
    root = Path(tempfile.mkdtemp(prefix="loyalnest-test-pg-"))
    root.chmod(0o755)
    server = LocalPostgres(root / "data", free_port(), ephemeral=ephemeral)
    try:
        yield server
    finally:
        server.stop(mode="immediate")
        # A database per test leaves ~7 MB each, gigabytes in hundreds of thousands of files
        # by the end of a full run: a detached `rm` removes them without holding up the run.
        subprocess.Popen(
            ["rm", "-rf", str(root)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    with new_postgres(ephemeral=True) as server:
        server.start()
        yield server


@pytest.fixture
def database_url(postgres: LocalPostgres) -> str:
    """A fresh database per test, so tests never see each other's rows."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres.create_database(name)
    return postgres.url(name)


@pytest.fixture
def merchant_id() -> str:
    return f"merchant-{uuid.uuid4().hex[:8]}"


def pytest_configure(config: pytest.Config) -> None:
    # Keep test logs readable; services log JSON in production.
    os.environ.setdefault("LOYALNEST_LOG_FORMAT", "console")
    # Every service under test (in-process or a subprocess) trusts the test keyset.
    from tests.auth import JWKS_PATH

    os.environ["LOYALNEST_JWT_JWKS_PATH"] = str(JWKS_PATH)
    refuse_outside_names()
    give_each_worker_its_own_ports()


# `make test` runs the suite in worker processes (pytest-xdist). Tests that start the whole
# fleet (every service, Envoy, the stand-ins) share one worker and run one after the other:
# two fleets at once on two cores more than tripled the local stack's start-up.
WHOLE_FLEET = pytest.mark.xdist_group("whole-fleet")
# Where the workers' free ports are drawn, a slice each; the local stack's port blocks in
# tests/e2e lie above it (20000-30000).
_WORKER_PORTS = range(10_000, 20_000)


def give_each_worker_its_own_ports() -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ... (unset: one process)
    if worker is None:
        return
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    width = len(_WORKER_PORTS) // count
    low = _WORKER_PORTS.start + int(worker.removeprefix("gw")) * width
    os.environ[FREE_PORTS_ENV] = f"{low}-{low + width - 1}"


def refuse_outside_names() -> None:
    """Tests never depend on this machine's resolver. A lookup of an outside name (a shop's
    myshopify.com domain that a test forgot to point at its stand-in) fails at once, as it does
    where the resolver answers "no such name", instead of blocking a thread for as long as an
    unreachable resolver takes: the in-process services share this process's few executor
    threads with the tests' own HTTP calls, and a run where lookups hung stalled them all."""
    resolve = socket.getaddrinfo
    local = {"localhost", "ip6-localhost", socket.gethostname()}

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is None or name in local or _is_address(name):
            return resolve(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, f"tests resolve no outside names: {name}")

    socket.getaddrinfo = getaddrinfo


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    return True
