"""Issue 15's benches still start, measure and report (`make bench`, `make bench-webhooks`,
`make bench-orders`): a short run of each, read back from its JSON report. They broke silently
before (a setting a service came to require); a broken bench fails here instead."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from loyalnest.deploy.paths import REPO


def run_bench(script: str, *args: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--json", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    report: dict[str, Any] = json.loads(completed.stdout)
    return report


@pytest.mark.timeout(240)
def test_the_balance_bench_measures_echo_the_floor_and_points() -> None:
    report = run_bench(
        "bench_points.py", "--duration", "1", "--warmup", "0.5", "--concurrency", "4"
    )
    names = [result["name"] for result in report["results"]]
    assert [name.split(" ")[0] for name in names] == ["echo", "echo", "GetPointsBalance"]
    assert "Redis HGET" in names[1]
    for result in report["results"]:
        assert result["requests"] > 0 and not result["errors"], result
        assert result["cpu_percent"]["server"] > 0
    assert report["ratio"] > 0 and report["floor_ratio"] > 0


@pytest.mark.timeout(240)
def test_the_webhook_bench_checks_the_edge_and_measures_the_floor() -> None:
    report = run_bench(
        "bench_webhooks.py",
        *("--duration", "1", "--warmup", "0.5", "--rate", "50", "--concurrency", "4"),
    )
    assert report["correctness"]["ok"], report["correctness"]
    phases = {(result["target"], result["kind"]) for result in report["results"]}
    assert phases == {
        (target, kind) for target in ("baseline", "edge", "floor") for kind in ("open", "closed")
    }
    for result in report["results"]:
        assert result["accepted_total"] > 0, result
    assert report["ratio_floor_peak_throughput"] > 0


@pytest.mark.timeout(240)
def test_the_order_bench_credits_every_order_once_and_measures_the_floor() -> None:
    report = run_bench(
        "bench_orders.py",
        *("--rate", "40", "--duration", "1", "--warmup", "0.5", "--clients", "1"),
    )
    assert report["correctness"]["ok"], report["correctness"]
    assert report["orders"] and report["orders"][0]["throughput"] > 0
    floor = report["floor"]
    # Every event of the run, applied by the bare consumer.
    assert floor["events"] == report["correctness"]["accepted"] > 0
    assert floor["us_per_event"] > 0
