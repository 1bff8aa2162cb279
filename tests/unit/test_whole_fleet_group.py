"""`make test` keeps the whole-fleet tests on one worker (tests/conftest.py, WHOLE_FLEET).

Two local stacks started side by side took each other's ports: one stack's held port was
released for its edge worker, the other's reservation loop took it in between, and the edge
failed with "Address already in use" (a CI run on pytest 9.2, where pytest-xdist 3.8's
`--dist loadgroup` stopped grouping without a word: pytest-dev/pytest-xdist#1386). This runs the
same plugins with the same options on a throwaway suite and checks where each test ran.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

_GROUPED = """
import pytest

pytestmark = pytest.mark.xdist_group("whole-fleet")


@pytest.mark.parametrize("n", range(6))
def test_fleet(n):
    pass
"""

_UNGROUPED = """
import pytest


@pytest.mark.parametrize("n", range(12))
def test_alone(n):
    pass
"""


def test_whole_fleet_tests_run_on_one_worker_under_make_tests_options(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_fleet_a.py").write_text(_GROUPED)
    (tmp_path / "test_fleet_b.py").write_text(_GROUPED)
    (tmp_path / "test_alone.py").write_text(_UNGROUPED)

    ran = subprocess.run(
        # The options of `make test` (Makefile); -v prints each test's worker.
        [sys.executable, "-m", "pytest", "-v", "-n", "2", "--dist", "loadgroup"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert ran.returncode == 0, ran.stdout + ran.stderr
    workers: dict[str, set[str]] = {}
    for worker, test in re.findall(r"\[(gw\d+)\] .*?PASSED (\S+)", ran.stdout):
        workers.setdefault(test.split("::")[0], set()).add(worker)
    assert set(workers) == {"test_fleet_a.py", "test_fleet_b.py", "test_alone.py"}, ran.stdout
    fleet = workers["test_fleet_a.py"] | workers["test_fleet_b.py"]
    assert len(fleet) == 1, f"the whole-fleet group ran on {sorted(fleet)}:\n{ran.stdout}"
    # Both workers were in use, so one worker for the group was the grouping, not chance.
    assert len(workers["test_alone.py"] | fleet) == 2, ran.stdout
