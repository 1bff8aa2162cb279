"""Shared fixtures: one real PostgreSQL for the whole run, started and torn down here."""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from loyalnest.devstack.postgres import LocalPostgres, free_port


def new_postgres(*, ephemeral: bool) -> LocalPostgres:
    """A not-yet-started cluster in a fresh directory."""
    # Under /tmp with 0755 parents: as root the server runs as `postgres`, which must reach it.
    root = Path(tempfile.mkdtemp(prefix="loyalnest-test-pg-"))
    root.chmod(0o755)
    return LocalPostgres(root / "data", free_port(), ephemeral=ephemeral)


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    server = new_postgres(ephemeral=True)
    server.start()
    try:
        yield server
    finally:
        server.stop(mode="immediate")
        # A database per test leaves ~7 MB each, gigabytes in hundreds of thousands of files
        # by the end of a full run: a detached `rm` removes them without holding up the run.
        subprocess.Popen(
            ["rm", "-rf", str(server.data_dir.parent)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


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
