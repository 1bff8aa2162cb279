"""Memory of the local stack (issue 15 item 5): idle RSS of every service, RSS under load, growth.

    .venv/bin/python bench/bench_memory.py [--idle 20] [--idle-cpu 20] [--load 180]
                                          [--interval 30] [--json]

Starts `loyalnest up --detach` in a throwaway state directory on free ports (every service,
one process each, with PostgreSQL, Valkey, tansu, Envoy and the stand-ins), waits `--idle`
seconds after it reports ready and reads each service process's RSS (`VmRSS` of it and its
descendants from /proc; the infrastructure is listed but left out of the total), then the
CPU each process uses over `--idle-cpu` seconds with nothing to do (polling the outbox,
Kafka's fetches and heartbeats, health checks: what an idle stack costs a laptop). Then
`--load` seconds of load through the gateway: signed Shopify orders/create webhooks (edge ->
broker -> Points' consumer, Core, ...), REST balance reads and earns with a local token;
RSS is sampled every `--interval` seconds, and growth is the last sample minus the first
sample under load. `loyalnest down` at the end, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from harness import descendants, exit_on_sigterm, proc_cpu_seconds, throwaway_root
from ingress import DeliveryFactory

from loyalnest.devstack.postgres import free_port
from loyalnest.devstack.stack import DEV_SHOPIFY_API_SECRET, StackState
from loyalnest.services.edge.signing import webhook_path

LOYALNEST = str(Path(sys.executable).parent / "loyalnest")
# What `loyalnest up` starts besides our services (left out of the total): the stand-ins
# of outside APIs (Shopify, PostHog, Klaviyo, Postscript, SES) included.
INFRASTRUCTURE = ("postgres", "redis", "kafka", "gateway", "envoy", "standin")
GOAL_MB = 1536


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` and its descendants (a service started through a wrapper counts whole)."""
    total = 0
    for p in descendants(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def is_infrastructure(name: str) -> bool:
    return any(word in name for word in INFRASTRUCTURE)


@contextlib.contextmanager
def stack(state_dir: Path) -> Iterator[StackState]:
    # Services take consecutive ports from the base port, metrics 1000 higher: a quiet range
    # that none of the other ports may fall in.
    base_port = random.randrange(21000, 29000, 100)
    taken = {*range(base_port, base_port + 100), *range(base_port + 1000, base_port + 1100)}

    def free_port_outside() -> int:
        while (port := free_port()) in taken:
            pass
        taken.add(port)
        return port

    ports = {
        "--gateway-port": free_port_outside(),
        "--gateway-admin-port": free_port_outside(),
        "--postgres-port": free_port_outside(),
        "--redis-port": free_port_outside(),
        "--kafka-port": free_port_outside(),
        "--posthog-port": free_port_outside(),
        # The other stand-ins too: their default ports collide with another stack's.
        "--shopify-port": free_port_outside(),
        "--klaviyo-port": free_port_outside(),
        "--postscript-port": free_port_outside(),
        "--ses-port": free_port_outside(),
        "--reflection-port": free_port_outside(),
        "--base-port": base_port,
    }
    argv = [LOYALNEST, "up", "--detach", "--state-dir", str(state_dir)]
    for flag, port in ports.items():
        argv += [flag, str(port)]
    started = time.monotonic()
    try:
        subprocess.run(argv, check=True, timeout=600, stdout=subprocess.DEVNULL)
        state = StackState.load(state_dir)
        if state is None or state.status != "ready":
            raise RuntimeError(f"the stack did not get ready: {state}")
        print(f"stack ready in {time.monotonic() - started:.0f} s", flush=True)
        yield state
    finally:
        subprocess.run(
            [LOYALNEST, "down", "--state-dir", str(state_dir)],
            timeout=180,
            stdout=subprocess.DEVNULL,
            check=False,
        )


def snapshot(state: StackState) -> dict[str, int]:
    return {c.name: rss_kib(c.pid) for c in state.components if c.pid}


def cpu_seconds(state: StackState) -> dict[str, float]:
    return {
        c.name: sum(proc_cpu_seconds(p) for p in descendants(c.pid))
        for c in state.components
        if c.pid
    }


def idle_cpu_percent(state: StackState, seconds: float) -> dict[str, float]:
    """Percent of one core each process used over `seconds` of nothing to do."""
    before = cpu_seconds(state)
    time.sleep(seconds)
    after = cpu_seconds(state)
    return {name: 100 * (after[name] - before[name]) / seconds for name in after if name in before}


def token(state_dir: Path) -> str:
    return subprocess.run(
        [
            LOYALNEST,
            "token",
            "--state-dir",
            str(state_dir),
            "--merchant",
            "bench-memory",
            "--permissions",
            "points:read,points:write",
            "--ttl",
            "1h",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


async def load(state: StackState, bearer: str, seconds: float, interval: float) -> dict[str, Any]:
    """Three closed-loop senders (webhooks, balance reads, earns) and RSS samples."""
    base = state.gateway_url.rstrip("/")
    headers = {"authorization": f"Bearer {bearer}"}
    counts: dict[str, int] = {}
    samples: list[dict[str, int]] = []
    deadline = time.monotonic() + seconds
    factory = DeliveryFactory(DEV_SHOPIFY_API_SECRET, 0, 1, seed=5)

    def count(what: str, status: int) -> None:
        key = f"{what} {status}"
        counts[key] = counts.get(key, 0) + 1

    async def webhooks(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            body, hook_headers = factory.next()
            response = await client.post(
                base + webhook_path("orders/create"), content=body, headers=hook_headers
            )
            count("webhook", response.status_code)

    async def reads(client: httpx.AsyncClient, n: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            response = await client.get(
                f"{base}/v1/api/points/balance/m{n}-{i % 500}", headers=headers
            )
            count("balance", response.status_code)

    async def earns(client: httpx.AsyncClient) -> None:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            response = await client.post(
                f"{base}/v1/api/points/earn",
                headers=headers,
                json={
                    "customer_id": f"m0-{i % 500}",
                    "points": 1,
                    "reason": "bench",
                    "idempotency_key": f"mem-{os.getpid()}-{i}",
                },
            )
            count("earn", response.status_code)

    async def sampler() -> None:
        while time.monotonic() < deadline:
            samples.append(snapshot(state))
            await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        samples.append(snapshot(state))

    async with httpx.AsyncClient(timeout=30.0) as client:
        await asyncio.gather(
            sampler(), webhooks(client), webhooks(client), reads(client, 0), earns(client)
        )
    return {"counts": counts, "samples": samples}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=float, default=20.0, help="seconds idle before sampling")
    parser.add_argument(
        "--idle-cpu", type=float, default=20.0, help="seconds over which idle CPU is measured"
    )
    parser.add_argument("--load", type=float, default=180.0, help="seconds of load")
    parser.add_argument("--interval", type=float, default=30.0, help="RSS sample interval")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    report: dict[str, Any] = {"cpus": os.cpu_count()}
    try:
        with throwaway_root("loyalnest-bench-memory-") as root, stack(root / "state") as state:
            time.sleep(args.idle)
            report["idle"] = snapshot(state)
            report["idle_cpu_percent"] = idle_cpu_percent(state, args.idle_cpu)
            bearer = token(root / "state")
            report.update(asyncio.run(load(state, bearer, args.load, args.interval)))
    except KeyboardInterrupt:
        return 130
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    idle, samples, idle_cpu = report["idle"], report["samples"], report["idle_cpu_percent"]
    first, last = samples[0], samples[-1]
    peak = {name: max(s.get(name, 0) for s in samples) for name in idle}
    print(
        f"\n{'process':22} {'idle MiB':>9} {'load first':>11} {'load peak':>10} {'load last':>10}"
        f" {'idle CPU %':>11}"
    )
    totals = [0, 0, 0, 0]
    cpu_total = 0.0
    for name in sorted(idle, key=lambda n: (is_infrastructure(n), -idle[n])):
        row = [idle[name], first.get(name, 0), peak[name], last.get(name, 0)]
        infra = is_infrastructure(name)
        if not infra:
            totals = [t + v for t, v in zip(totals, row, strict=True)]
            cpu_total += idle_cpu.get(name, 0.0)
        label = f"{name}{' (infra)' if infra else ''}"
        print(
            f"{label:22} "
            + " ".join(f"{v / 1024:>10.0f}" for v in row)
            + f" {idle_cpu.get(name, 0.0):>11.1f}"
        )
    print(
        f"{'services total':22} "
        + " ".join(f"{v / 1024:>10.0f}" for v in totals)
        + f" {cpu_total:>11.1f}"
    )
    print(
        f"goal: idle services total <= {GOAL_MB} MiB:"
        f" {'met' if totals[0] / 1024 <= GOAL_MB else 'NOT met'}"
    )
    print(
        f"load: {args.load:.0f} s, {len(samples)} RSS samples;"
        f" requests by status: {report['counts']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
