"""REST `GET /v1/api/points/balance/{id}` through Envoy (JWT, rate limits, transcoding) to
Points, against a bare grpc.aio echo server, in one run, driven by h2load.

    .venv/bin/python bench/bench_rest.py [--duration 10] [--warmup 2] [--connections 4]
                                         [--streams 8] [--workers 1] [--tracing/--no-tracing]
                                         [--json]

Starts a throwaway PostgreSQL and Valkey, the edge (the gateway's rate-limit service) and
Points as deployed (`loyalnest.platform.server.running`, production defaults), and Envoy with
the gateway config our code generates (JWT verified in Envoy, rate limits, transcoding). Then
two phases, each h2load with the same connections x streams in flight:

1. echo: a bare `grpc.aio` server (bench_points.py's), native gRPC, no Envoy: what grpc.aio
   does at all on this machine (the figure DESIGN §10 compares with);
2. rest: the REST read through Envoy to Points, with a real access token.

Prints req/s, the ratio rest ÷ echo, and the CPU per request of every process on the path
(the steadiest figures on a shared machine). See README.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from bench_points import KEYSET, TOKEN_ISSUER, echo_server_process
from harness import (
    binary_process,
    children,
    exit_on_sigterm,
    machine_busy_seconds,
    postmaster_pid,
    proc_cpu_seconds,
    server_process,
    service_process,
    throwaway_postgres,
    throwaway_root,
    valkey_server,
)
from ingress import EDGE_MODULE, NO_CALLEES, envoy_version

GOAL_RATIO = 0.45
# The edge refuses to start without a master key outside a developer machine.
EDGE_EXTRA = {
    "shopify_api_secret": "bench",
    "edge_encryption_key": base64.b64encode(os.urandom(32)).decode(),
    # Every request is checked, none refused: the bench measures the cost of the check.
    "rate_limit_plans": {"free": {"burst": 1_000_000_000, "requests_per_second": 1_000_000_000}},
}
BALANCE_PATH = "/v1/api/points/balance/{customer_id}"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class H2Result:
    name: str
    requests: int  # succeeded in the measured window
    failed: int
    seconds: float
    throughput: float
    statuses: dict[str, int]
    mean_ms: float
    # CPU seconds per process group over the measured window.
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    other_seconds: float = 0.0

    def us_per_request(self, key: str) -> float:
        return 1e6 * self.cpu_seconds.get(key, 0.0) / max(1, self.requests)


def h2load_binary() -> str:
    found = shutil.which("h2load")
    if found is None:
        raise SystemExit(
            "h2load not found: `make bench-rest` installs it (tools/ensure-h2load.sh),"
            " or apt-get install nghttp2-client"
        )
    return found


def _parse_h2load(text: str) -> tuple[int, int, float, dict[str, int], float]:
    done = re.search(
        r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", text
    )
    finished = re.search(r"finished in ([\d.]+)(m?s)", text)
    statuses = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", text)
    if not done or not finished or not statuses:
        raise RuntimeError(f"unexpected h2load output:\n{text}")
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    codes = dict(zip(("2xx", "3xx", "4xx", "5xx"), map(int, statuses.groups()), strict=True))
    mean_ms = 0.0
    if mean:
        value = mean.group(1)
        mean_ms = float(value[:-2]) if value.endswith("ms") else float(value.rstrip("us")) / 1e3
        if value.endswith("s") and not value.endswith(("ms", "us")):
            mean_ms = float(value[:-1]) * 1e3
    return int(done.group(1)), int(done.group(2)), seconds, codes, mean_ms


def run_h2load(
    name: str,
    url: str,
    args: argparse.Namespace,
    groups: dict[str, Sequence[int]],
    *,
    headers: Sequence[str] = (),
    data: Path | None = None,
) -> H2Result:
    """h2load for warm-up + duration; CPU sampled over the measured part only."""
    argv = [
        h2load_binary(),
        "-c", str(args.connections),
        "-m", str(args.streams),
        "-t", "1",
        "-D", f"{round(args.duration * 1000)}ms",
        "--warm-up-time", f"{round(args.warmup * 1000)}ms",
    ]  # fmt: skip
    for header in headers:
        argv += ["-H", header]
    if data is not None:
        argv += ["-d", str(data)]
    argv.append(url)

    def sample() -> dict[str, float]:
        return {k: sum(proc_cpu_seconds(p) for p in pids) for k, pids in groups.items()}

    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(args.warmup + 0.3)  # h2load connects, then warms up
    before, busy_before = sample(), machine_busy_seconds()
    before["h2load"] = proc_cpu_seconds(process.pid)
    out, _ = process.communicate(timeout=args.duration + args.warmup + 60)
    # h2load has exited: its CPU is gone from /proc, so it is estimated from the window.
    after, busy_after = sample(), machine_busy_seconds()
    if process.returncode != 0:
        raise RuntimeError(f"h2load failed ({process.returncode}):\n{out}")
    ok, failed, seconds, codes, mean_ms = _parse_h2load(out)
    cpu = {k: after[k] - before[k] for k in after}
    ours = sum(cpu.values())
    return H2Result(
        name=name,
        requests=ok,
        failed=failed,
        seconds=seconds,
        throughput=ok / seconds if seconds else 0.0,
        statuses=codes,
        mean_ms=mean_ms,
        cpu_seconds=cpu,
        other_seconds=max(0.0, (busy_after - busy_before) - ours),
    )


def grpc_frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


# ------------------------------------------------------------------------------ the services


def _settings(env: dict[str, Any], tracing: bool) -> dict[str, Any]:
    return {
        "grpc_port": 0,
        "metrics_enabled": True,
        "metrics_port": 0,
        "database_url": env["database_url"],
        "redis_url": env["redis_url"],
        "jwt_jwks_path": str(env["jwks_path"]),
        "events_enabled": False,  # reads only: no events on this path
        "tracing_enabled": tracing,
        "otel_exporter_otlp_endpoint": None,
        "access_log": False,
        "shutdown_grace_seconds": 1.0,
        "log_level": "WARNING",
        "log_format": "console",
        "call_target_template": NO_CALLEES,
    }


@dataclass
class Gateway:
    url: str
    admin_url: str
    pid: int


def _healthy(admin_url: str, clusters: dict[str, int]) -> bool:
    try:
        with _NO_PROXY.open(f"{admin_url}/clusters", timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return False
    for cluster, count in clusters.items():
        healthy = sum(
            line.startswith(f"{cluster}::") and "health_flags::healthy" in line
            for line in text.splitlines()
        )
        if healthy != count:
            return False
    return True


@contextlib.contextmanager
def gateway(
    root: Path, edges: Sequence[str], points: Sequence[str], jwks: Path, *, reads_in_envoy: bool
) -> Iterator[Gateway]:
    from loyalnest.devstack.postgres import free_port
    from loyalnest.gateway import GatewayConfig, Upstream, write
    from loyalnest.gateway.edge import LOOPBACK_CIDRS, EdgePolicy, JwtProvider, ReadRateLimit
    from loyalnest.gateway.envoy_binary import envoy_command
    from loyalnest.gateway.reflection import DEFAULT_DESCRIPTOR_SET
    from loyalnest.platform.config import ServiceSettings
    from loyalnest.services.edge.service import SERVICE_NAME as EDGE
    from loyalnest.services.points.service import SERVICE_NAME as POINTS

    def hosts(addresses: Sequence[str]) -> tuple[tuple[str, int], ...]:
        return tuple((a.rpartition(":")[0], int(a.rpartition(":")[2])) for a in addresses)

    config = GatewayConfig(
        listen_port=free_port(),
        admin_port=free_port(),
        descriptor_set_path=DEFAULT_DESCRIPTOR_SET,
        upstreams=(
            Upstream("edge", (EDGE,), hosts(edges)),
            Upstream("points", (POINTS,), hosts(points)),
        ),
        access_log_path=str(root / "envoy-access.log"),
        policy=EdgePolicy(
            jwt=JwtProvider(jwks, ServiceSettings().jwt_issuer),
            admin_allowed_cidrs=LOOPBACK_CIDRS,
            rate_limit_upstream="edge",
            # Checked on every read, never refused: the bench measures the check's cost.
            read_rate_limit=ReadRateLimit(burst=10**9, requests_per_second=10**9)
            if reads_in_envoy
            else None,
        ),
    )
    name = "envoy-reads" if reads_in_envoy else "envoy-service"
    path = write(config, root / f"{name}.json")
    admin_url = f"http://127.0.0.1:{config.admin_port}"
    with binary_process(
        envoy_command(path),
        root / f"{name}.log",
        lambda: _healthy(admin_url, {"edge": len(edges), "points": len(points)}),
        "envoy",
    ) as process:
        yield Gateway(f"http://127.0.0.1:{config.listen_port}", admin_url, process.pid)


def envoy_counter(admin_url: str, pattern: str) -> int:
    total = 0
    with (
        contextlib.suppress(OSError),
        _NO_PROXY.open(f"{admin_url}/stats?filter={urllib.parse.quote(pattern)}") as r,
    ):
        for line in r.read().decode().splitlines():
            _, _, value = line.partition(": ")
            if value.strip().isdigit():
                total += int(value)
    return total


def seed(points_address: str, token: str, customer_id: str) -> None:
    from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc

    with grpc.insecure_channel(points_address) as channel:
        stub = points_pb2_grpc.PointsServiceStub(channel)
        stub.EarnPoints(
            points_pb2.EarnPointsRequest(
                customer_id=customer_id,
                points=1_000,
                reason="benchmark seed",
                idempotency_key=uuid.uuid4().hex,
            ),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )


def rest_check(url: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"})
    with _NO_PROXY.open(request, timeout=5) as reply:
        return dict(json.loads(reply.read()))


# ----------------------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    from contextlib import ExitStack

    from loyalnest.gen.points.v1 import points_pb2

    report: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "grpcio": grpc.__version__,
        "envoy": envoy_version(),
        "load_before": os.getloadavg(),
        "connections": args.connections,
        "streams": args.streams,
        "workers": args.workers,
        "tracing": args.tracing,
    }
    suffix = uuid.uuid4().hex[:8]
    merchant_id, customer_id = f"bench-merchant-{suffix}", f"bench-customer-{suffix}"
    token = TOKEN_ISSUER.mint(
        subject="bench", merchant_id=merchant_id, permissions=["points:read", "points:write"]
    )
    response = points_pb2.GetPointsBalanceResponse(
        balance=points_pb2.PointsBalance(customer_id=customer_id, balance=1_000)
    ).SerializeToString()
    with ExitStack() as stack:
        root = stack.enter_context(throwaway_root("loyalnest-bench-rest-"))
        jwks = root / "jwks.json"
        jwks.write_text(json.dumps(KEYSET.public_jwks()))
        postgres = stack.enter_context(throwaway_postgres(root))
        postgres.create_database("bench")
        redis = stack.enter_context(valkey_server(root))
        env = {"database_url": postgres.url("bench"), "redis_url": redis.url, "jwks_path": jwks}
        pg_pid = postmaster_pid(postgres.data_dir)

        # 1. echo, alone on the machine's cores
        frame = root / "echo-request.bin"
        frame.write_bytes(
            grpc_frame(
                points_pb2.GetPointsBalanceRequest(customer_id=customer_id).SerializeToString()
            )
        )
        with server_process(echo_server_process, response) as echo:
            echo_result = run_h2load(
                "echo (raw grpc.aio)",
                f"http://{echo.address}/bench.Echo/Echo",
                args,
                {"server": [echo.pid]},
                headers=("content-type: application/grpc", "te: trailers"),
                data=frame,
            )

        # 2. the REST read through Envoy
        settings = _settings(env, args.tracing)
        edges = [
            stack.enter_context(server_process(service_process, EDGE_MODULE, settings | EDGE_EXTRA))
            for _ in range(args.workers)
        ]
        points = [
            stack.enter_context(
                server_process(
                    service_process,
                    "loyalnest.services.points.service",
                    settings | {"points_ledger_store": "postgres"},
                )
            )
            for _ in range(args.workers)
        ]
        seed(points[0].address, token, customer_id)
        groups = {
            "points": [p.pid for p in points],
            "edge (RLS)": [e.pid for e in edges],
            "postgres": [pg_pid, *children(pg_pid)] if pg_pid else [],
            "redis": [redis.pid],
        }
        results = [echo_result]
        report["rate_limit_service_calls"] = {}
        for reads_in_envoy in args.modes:
            name = "REST, reads in Envoy" if reads_in_envoy else "REST, every call RLS"
            with gateway(
                root,
                [e.address for e in edges],
                [p.address for p in points],
                jwks,
                reads_in_envoy=reads_in_envoy,
            ) as envoy:
                url = envoy.url + BALANCE_PATH.format(customer_id=customer_id)
                report["check"] = rest_check(url, token)
                checks_before = envoy_counter(envoy.admin_url, r"\.ratelimit\.")
                results.append(
                    run_h2load(
                        name,
                        url,
                        args,
                        {"envoy": [envoy.pid], **groups},
                        headers=(f"authorization: Bearer {token}",),
                    )
                )
                report["rate_limit_service_calls"][name] = (
                    envoy_counter(envoy.admin_url, r"\.ratelimit\.") - checks_before
                )
    report["load_after"] = os.getloadavg()
    report["results"] = [asdict(r) for r in results]
    report["ratios"] = {
        r.name: r.throughput / echo_result.throughput if echo_result.throughput else 0
        for r in results[1:]
    }
    return report


def print_report(report: dict[str, Any]) -> None:
    print(
        f"cpus: {report['cpus']}   python {report['python']}   grpcio {report['grpcio']}   "
        f"envoy {report['envoy']}   tracing {'on' if report['tracing'] else 'off'}"
    )
    print(
        "load average before: {:.2f} {:.2f} {:.2f}".format(*report["load_before"]),
        "  after: {:.2f} {:.2f} {:.2f}".format(*report["load_after"]),
    )
    print(
        f"h2load: {report['connections']} connections x {report['streams']} streams; "
        f"{report['workers']} process(es) each of edge and Points"
    )
    print()
    for result in report["results"]:
        cpu = result["cpu_seconds"]
        n = max(1, result["requests"])
        parts = "  ".join(f"{k} {1e6 * v / n:.0f}" for k, v in cpu.items() if k != "h2load")
        other = 1e6 * result["other_seconds"] / n
        print(
            f"{result['name']:<22} {result['throughput']:>8.0f} req/s"
            f"  mean {result['mean_ms']:6.2f} ms"
            f"  failed {result['failed']}  statuses {result['statuses']}"
        )
        print(f"{'':<22} CPU us/request: {parts}  | other (machine) {other:.0f}")
        busy = "  ".join(
            f"{k} {100 * v / result['seconds']:.0f}" for k, v in cpu.items() if k != "h2load"
        )
        print(f"{'':<22} cpu% (of one core): {busy}")
    print()
    for name, calls in report["rate_limit_service_calls"].items():
        print(f"{name}: Envoy -> rate-limit service calls: {calls}")
    for name, ratio in report["ratios"].items():
        met = "met" if ratio >= GOAL_RATIO else "NOT met"
        print(f"ratio {name} / echo throughput: {ratio:.2f}x  (goal >= {GOAL_RATIO:.2f}x: {met})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--tracing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--reads",
        choices=("both", "envoy", "service"),
        default="both",
        help="gateway config(s) to measure: reads limited in Envoy, by the service, or both",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    args.modes = {"both": (False, True), "envoy": (True,), "service": (False,)}[args.reads]
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report)
    ok = all(r["failed"] == 0 and r["statuses"]["2xx"] == r["requests"] for r in report["results"])
    return 0 if ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
