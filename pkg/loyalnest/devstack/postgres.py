"""A throwaway or persistent PostgreSQL cluster from Debian's postgresql packages.

PostgreSQL refuses to run as root, so when we are root the server runs as the `postgres`
user, which needs every parent of the data directory to be traversable.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from loyalnest.devstack.ports import free_port

__all__ = ["LocalPostgres", "PostgresError", "find_bin_dir", "free_port"]


class PostgresError(RuntimeError):
    pass


def find_bin_dir() -> Path:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for directory in candidates:
        if (directory / "pg_ctl").exists():
            return directory
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    raise PostgresError("PostgreSQL server binaries not found; run `make setup` (apt postgresql)")


def traversable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents] if p.exists())


@dataclass
class LocalPostgres:
    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    # For throwaway test clusters: no fsync, no full-page writes.
    ephemeral: bool = False

    @property
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(find_bin_dir() / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise PostgresError(f"{args[0]} failed: {result.stderr.strip() or result.stdout}")
        return result

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def initialize(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            if not traversable_by_others(self.data_dir.parent):
                raise PostgresError(
                    f"{self.data_dir} is not reachable by the postgres user; "
                    "use a state directory under /tmp or /var/tmp"
                )
            shutil.chown(self.data_dir, "postgres", "postgres")
            self.log_file.touch()
            shutil.chown(self.log_file, "postgres", "postgres")
        self._run(
            "initdb",
            "-N",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        )

    def is_running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False).returncode == 0

    def start(self) -> None:
        self.initialize()
        if self.is_running():
            return
        with socket.socket() as probe:
            if probe.connect_ex((self.host, self.port)) == 0:
                raise PostgresError(f"port {self.port} is already in use")
        options = [
            f"-p {self.port}",
            f"-c listen_addresses={self.host}",
            "-c unix_socket_directories=''",
            "-c max_connections=200",
        ]
        if self.ephemeral:
            options += ["-c fsync=off", "-c full_page_writes=off", "-c synchronous_commit=off"]
        self._run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            " ".join(options),
        )

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            self._run("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.data_dir))

    def create_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
