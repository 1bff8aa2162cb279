"""`loyalnest new-service sample-widgets` in a copy of this checkout, then what README's "Add a
service" says comes next: codegen (`make gen`), the chart's files (`make chart`), lint, and the
generated tests, which call the new service over gRPC and as REST through a real Envoy.

Slow by nature (about a minute: mypy and a nested pytest with its own PostgreSQL), hence
the `scaffold` marker (`pytest -m "not scaffold"` leaves it out). The copy is what `git
ls-files` lists, at <tmp>/main with <tmp>/shared linked to ../shared (the seed design), and
.venv and .build linked to this checkout's: the same interpreter runs everything with
PYTHONPATH on the copy's pkg/, so nothing is installed and this checkout is never written to.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# This checkout's, used read only: the tools, codegen's xds protos, helm.
LINKED = (".venv", ".build")

pytestmark = [pytest.mark.integration, pytest.mark.scaffold, pytest.mark.timeout(300)]


def _copy_checkout(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if name.split("/")[0] in LINKED:  # linked below (a link to them may be unignored)
            continue
        source = REPO / name
        if not source.exists():  # deleted in the working tree, not yet in the index
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scaffold")
    main = root / "main"
    _copy_checkout(main)
    shared = REPO.parent / "shared"
    if shared.is_dir():
        (root / "shared").symlink_to(shared)
    for name in LINKED:
        if (REPO / name).exists():
            (main / name).symlink_to(REPO / name)
    # mypy's cache of this checkout (`make lint`, which .ci/run runs first): the copy's files
    # keep their times (copy2), so only the new service and what it touches are checked.
    if (REPO / ".mypy_cache").is_dir():
        shutil.copytree(REPO / ".mypy_cache", main / ".mypy_cache")
    return main


def _run(copy: Path, *argv: str | Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(copy / "pkg")}
    # The outer run's: the nested pytest sets its own keys, and names its own test.
    for name in ("LOYALNEST_JWT_JWKS_PATH", "PYTEST_CURRENT_TEST"):
        env.pop(name, None)
    result = subprocess.run(
        [str(a) for a in argv],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
    return result


def test_new_service_is_built_linted_and_served(copy: Path) -> None:
    python = sys.executable
    made = _run(copy, python, "-m", "loyalnest.cli", "new-service", "sample-widgets")
    assert "SampleWidgetsService is scaffolded" in made.stdout

    # make gen / make chart, without make: its setup step would re-sync the shared .venv.
    _run(copy, python, "tools/genproto.py")
    assert (copy / "pkg/loyalnest/gen/sample_widgets/v1/sample_widgets_pb2.py").is_file()
    _run(copy, python, "-m", "loyalnest.deploy", "all")
    upstreams = json.loads((copy / "charts/loyalnest/files/gateway/upstreams.json").read_text())
    assert "sample-widgets" in json.dumps(upstreams)
    # Its calls, from its code (`Calls()`), for the chart's targets and NetworkPolicies.
    calls = json.loads((copy / "charts/loyalnest/files/calls.json").read_text())
    assert calls["sample_widgets"] == []
    _run(copy, python, "-m", "loyalnest.deploy", "all", "--check")

    # make lint, on what the scaffold wrote and edited.
    service = copy / "pkg/loyalnest/services/sample_widgets"
    edited = [
        "pkg/loyalnest/services/registry.py",
        "pkg/loyalnest/deploy/callgraph.py",
        "tests/integration/test_tenant_isolation.py",
        "tests/integration/test_sample_widgets_service.py",
    ]
    _run(copy, BIN / "ruff", "check", service, *edited)
    _run(copy, BIN / "ruff", "format", "--check", service, *edited)
    _run(
        copy,
        BIN / "mypy",
        "--cache-dir",
        copy / ".mypy_cache",
        "-p",
        "loyalnest.services.sample_widgets",
    )
    image = copy / "buf-image.binpb"
    _run(copy, python, "tools/genproto.py", "--buf-image", image)
    _run(copy, BIN / "buf", "lint", image, "--config", "proto/buf.yaml", "--path", "loyalnest")

    # The service's shape (README "Anatomy of a service"), and the chart's checks of calls,
    # NetworkPolicies and credentials with the new component in it.
    _run(
        copy,
        python,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "tests/unit/test_service_shape.py",
        "tests/deploy/test_network_policies.py",
        "tests/deploy/test_secret_env.py",
    )

    # The generated tests, and its row of the mesh-wide isolation table.
    tested = _run(
        copy,
        python,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-v",
        "tests/integration/test_sample_widgets_service.py",
        "tests/integration/test_tenant_isolation.py",
        "-k",
        "sample_widgets",
    )
    passed = {line.split(" ")[0] for line in tested.stdout.splitlines() if " PASSED" in line}
    generated = "tests/integration/test_sample_widgets_service.py::"
    isolation = "tests/integration/test_tenant_isolation.py::"
    assert {
        f"{generated}test_serves_health_and_reflection",
        f"{generated}test_creates_and_reads_items",
        f"{generated}test_rest_through_the_gateway",
        f"{generated}test_a_merchant_never_sees_another_merchants_items",
        f"{isolation}test_every_tenant_scoped_rpc_has_a_case[sample_widgets]",
        f"{isolation}test_merchant_a_cannot_read_or_change_merchant_b_data[sample_widgets]",
    } <= passed, tested.stdout

    # A second run refuses: the name is taken now.
    again = subprocess.run(
        [python, "-m", "loyalnest.cli", "new-service", "sample_widgets"],  # the same name
        cwd=copy,
        env={**os.environ, "PYTHONPATH": str(copy / "pkg")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 2 and "exists already" in again.stderr
