"""Runs the real `helm` and `kubectl` binaries (fetched by `make setup`) on the chart, offline.

Rendering with the binary rather than a library keeps what the tests check identical to what an
SRE's `helm install` produces, including `.Capabilities` (`--api-versions`, `--kube-version`).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loyalnest.deploy.paths import CHART_DIR, REPO, tool

RELEASE = "loyalnest"
NAMESPACE = "loyalnest"
MONITORING_API = "monitoring.coreos.com/v1"


class HelmError(RuntimeError):
    """helm (or kubectl) exited non-zero; the message carries its output."""


def _run(argv: Sequence[str], *, timeout: float = 60.0) -> str:
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO
    )
    if result.returncode != 0:
        # helm lint reports its findings on stdout and only a summary on stderr.
        raise HelmError(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result.stdout


@dataclass(frozen=True)
class Render:
    """One way of rendering the chart: values files (relative to the repo), inline overrides,
    and the cluster capabilities to assume."""

    values_files: tuple[str, ...] = ()
    overrides: Mapping[str, Any] = field(default_factory=dict)
    api_versions: tuple[str, ...] = ()
    kube_version: str | None = None
    release: str = RELEASE
    namespace: str = NAMESPACE

    def args(self, overrides_file: Path | None, *, lint: bool = False) -> list[str]:
        args = ["--namespace", self.namespace]
        for values in self.values_files:
            args += ["--values", str(REPO / values)]
        if overrides_file is not None:
            args += ["--values", str(overrides_file)]
        if not lint:  # `helm lint` has no --api-versions
            for api in self.api_versions:
                args += ["--api-versions", api]
        if self.kube_version:
            args += ["--kube-version", self.kube_version]
        return args


def _with_overrides(render: Render, command: Sequence[str], *, lint: bool = False) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        overrides_file: Path | None = None
        if render.overrides:
            overrides_file = Path(tmp) / "overrides.json"  # JSON is YAML: helm reads it
            overrides_file.write_text(json.dumps(render.overrides))
        return _run([*command, *render.args(overrides_file, lint=lint)])


def template(render: Render = Render(), chart: Path = CHART_DIR) -> str:
    """`helm template`: the manifests an install would apply (hooks included)."""
    return _with_overrides(render, [str(tool("helm")), "template", render.release, str(chart)])


def lint(render: Render = Render(), chart: Path = CHART_DIR) -> str:
    """`helm lint --strict` (warnings are errors; values.schema.json is enforced)."""
    return _with_overrides(render, [str(tool("helm")), "lint", "--strict", str(chart)], lint=True)


def kustomize(directory: Path) -> str:
    return _run([str(tool("kubectl")), "kustomize", str(directory)])
