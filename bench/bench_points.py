"""GetPointsBalance throughput against a bare grpc.aio echo server, in one run.

    .venv/bin/python bench/bench_points.py [--concurrency 32] [--duration 10] [--warmup 2]
                                           [--tracing/--no-tracing] [--channels 1] [--json]
                                           [--profile-server PATH]
                                           [--event-loops uvloop,asyncio] [--rounds 1]
                                           [--rate CALLS_PER_SECOND]

Starts a throwaway PostgreSQL and Valkey, then, one after the other, three servers in their
own processes:

1. baseline: a raw `grpc.aio` server with one generic bytes-in/bytes-out unary handler;
2. the floor (with Redis, the default): the same server, on Points' loop, reading a hash from
   Redis (one HGET) before it answers, as Points reads a cached balance: what that round trip
   costs any Python server;
3. the real Points service (`loyalnest.platform.server.running`) with production defaults,
   on the event loop `loyalnest serve` picks (LOYALNEST_EVENT_LOOP, default uvloop); with
   `--event-loops uvloop,asyncio --rounds 3` once per loop, alternating, in the same run (the
   echo baseline stays on asyncio's loop, the raw grpc.aio of the issue's goal).

All are driven by the same closed-loop client in this process (N asyncio workers sharing
one or a few grpc.aio channels, raw bytes on the wire, no protobuf work in the client), with a
warm-up period each, and the GetPointsBalance/echo and floor/echo throughput ratios are
printed. See README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
from harness import (
    READY_TIMEOUT_SECONDS,
    children,
    exit_on_sigterm,
    percentile,
    postmaster_pid,
    proc_cpu_seconds,
    server_process,
    stop_event,
    valkey,
)

from loyalnest.platform import asyncio_loop
from loyalnest.platform.asyncio_loop import EventLoop
from loyalnest.platform.auth.keys import KeySet
from loyalnest.platform.auth.tokens import TokenIssuer
from loyalnest.platform.config import ServerSettings, ServiceSettings

# Real token verification on every call, as in production: a keyset for this run only.
KEYSET = KeySet.generate(local=True)
TOKEN_ISSUER = TokenIssuer(
    KEYSET, issuer=ServiceSettings().jwt_issuer, audience=ServiceSettings().jwt_audience
)

ECHO_METHOD = "/bench.Echo/Echo"
BALANCE_METHOD = "/loyalnest.points.v1.PointsService/GetPointsBalance"
EARN_METHOD = "/loyalnest.points.v1.PointsService/EarnPoints"
GOAL_RATIO = 0.70
FLOOR_KEY = "bench:floor"
CALL_TIMEOUT_SECONDS = 10.0

Metadata = tuple[tuple[str, str], ...]
UnaryCall = Callable[..., Any]  # grpc.aio.UnaryUnaryMultiCallable, bytes in / bytes out


# --------------------------------------------------------------------------- server processes


async def _echo_main(ready: Connection, response: bytes, redis_url: str | None) -> None:
    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return response

    handler = echo
    if redis_url is not None:
        import redis.asyncio as redis

        client = redis.Redis.from_url(redis_url)
        # Shaped as a cached balance (platform/cache.py): a hash of version and value.
        await client.hset(FLOOR_KEY, mapping={"version": 1, "value": response})

        async def cached_echo(
            request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
        ) -> bytes:
            value = await client.hget(FLOOR_KEY, "value")
            assert isinstance(value, bytes)
            return value

        handler = cached_echo

    stop, watchdog = stop_event()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(handler)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ready.send(("ok", f"127.0.0.1:{port}"))
    await stop.wait()
    await server.stop(1.0)
    await watchdog


def echo_server_process(
    ready: Connection,
    response: bytes,
    redis_url: str | None = None,
    event_loop: EventLoop = "asyncio",
) -> None:
    """Child process entry point: a bare grpc.aio server answering `response` to every call;
    with `redis_url`, read from Redis first (one HGET per call, as a cached balance is)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        asyncio_loop.run(_echo_main(ready, response, redis_url), event_loop)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            ready.send(("error", "".join(traceback.format_exception(exc))))
        raise SystemExit(1) from None  # the parent reports the traceback


async def _points_main(
    ready: Connection, database_url: str, tracing: bool, jwks_path: str, redis_url: str | None
) -> None:
    from loyalnest.platform.observability import configure_logging
    from loyalnest.platform.server import running
    from loyalnest.services.points.service import SPEC, PointsSettings

    settings = PointsSettings(
        grpc_port=0,
        metrics_enabled=True,
        metrics_port=0,  # a free port
        database_url=database_url,
        # Balances cached in Redis (and token revocation checked there), as in production.
        redis_url=redis_url,
        jwt_jwks_path=Path(jwks_path),
        # No broker in this benchmark: it measures the RPC path, not the outbox relay.
        events_enabled=False,
        points_ledger_store="postgres",
        access_log=False,
        tracing_enabled=tracing,
        otel_exporter_otlp_endpoint=None,
        shutdown_grace_seconds=1.0,
        log_level="WARNING",  # keep the benchmark's terminal readable; no per-RPC logs anyway
        log_format="console",
        # No Auth here: Points' declared callee is nowhere, and without a service credential
        # it never calls it.
        call_target_template="unix:///nonexistent/loyalnest-{service}.sock",
    )
    configure_logging(settings, SPEC.name)
    stop, watchdog = stop_event()
    async with running(SPEC, settings) as service:
        await asyncio.wait_for(service.health.started.wait(), READY_TIMEOUT_SECONDS)
        ready.send(("ok", service.address))
        await stop.wait()
    await watchdog


def points_server_process(
    ready: Connection,
    database_url: str,
    tracing: bool,
    profile: str | None,
    jwks_path: str,
    redis_url: str | None,
    event_loop: EventLoop,
) -> None:
    """Child process entry point: the real Points service on `event_loop`, until SIGTERM,
    run as `loyalnest serve` runs it (platform/asyncio_loop.py).

    With `profile`, the event-loop thread runs under cProfile (which slows it down: use the
    profile for where the time goes, not for throughput) and the stats are dumped there.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    profiler = cProfile.Profile() if profile else None
    try:
        if profiler is not None:
            profiler.enable()
        asyncio_loop.run(
            _points_main(ready, database_url, tracing, jwks_path, redis_url), event_loop
        )
    except BaseException as exc:
        with contextlib.suppress(OSError):
            ready.send(("error", "".join(traceback.format_exception(exc))))
        raise SystemExit(1) from None  # the parent reports the traceback
    finally:
        if profiler is not None and profile:
            profiler.disable()
            profiler.dump_stats(profile)


@dataclass
class CpuProbe:
    """CPU seconds used by the client (this process), the server and PostgreSQL."""

    server_pid: int
    postmaster_pid: int | None

    def sample(self) -> dict[str, float]:
        times = os.times()
        sample = {
            "client": times.user + times.system,
            "server": proc_cpu_seconds(self.server_pid),
        }
        if self.postmaster_pid is not None:
            pids = [self.postmaster_pid, *children(self.postmaster_pid)]
            sample["postgres"] = sum(proc_cpu_seconds(p) for p in pids)
        return sample


# ----------------------------------------------------------------------------------- the client


@dataclass
class LoadResult:
    name: str
    requests: int
    seconds: float
    throughput: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]
    # Percent of one core, over the measured window (absent where /proc is unavailable).
    cpu_percent: dict[str, float] = field(default_factory=dict)


class Pacer:
    """Open loop (`--rate`): hands out send times `1/rate` apart, so every server gets the
    same calls per second and CPU per call compares at equal load (in a closed loop, a server
    slowed by the machine also does fewer calls per second, over which its fixed per-second
    costs, such as the span exporter's and metrics' threads, are spread)."""

    def __init__(self, rate: float, start: float) -> None:
        self._interval = 1.0 / rate
        self._next = start

    async def wait(self) -> None:
        due = self._next
        self._next += self._interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)


async def _worker(
    call: UnaryCall,
    request: bytes,
    metadata: Metadata,
    measure_from: float,
    measure_until: float,
    latencies: list[float],
    errors: Counter[str],
    pacer: Pacer | None,
) -> None:
    perf = time.perf_counter
    while True:
        if pacer is not None:
            await pacer.wait()
        started = perf()
        try:
            await call(request, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            finished = perf()
            if measure_from <= finished <= measure_until:
                errors[exc.code().name] += 1
        else:
            finished = perf()
            if measure_from <= finished <= measure_until:
                latencies.append(finished - started)
        if finished >= measure_until:
            return


async def run_load(
    name: str,
    channels: Sequence[grpc.aio.Channel],
    method: str,
    request: bytes,
    metadata: Metadata,
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    cpu: CpuProbe | None,
    rate: float | None = None,
) -> LoadResult:
    """Closed loop: `concurrency` workers, each sending its next call when the last returns;
    with `rate`, the workers send on a schedule of `rate` calls per second instead (as long as
    `concurrency` calls in flight keep up).

    Only calls that complete inside the measured window count, so the window is exactly
    `duration` seconds; warm-up calls are discarded.
    """
    # No serializers: the client moves raw bytes, so it costs the same for both servers.
    calls = [
        channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        for channel in channels
    ]
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    start = time.perf_counter()
    measure_from = start + warmup
    measure_until = measure_from + duration
    pacer = Pacer(rate, start) if rate else None
    tasks = [
        asyncio.create_task(
            _worker(
                calls[i % len(calls)],
                request,
                metadata,
                measure_from,
                measure_until,
                latencies,
                errors,
                pacer,
            )
        )
        for i in range(concurrency)
    ]
    cpu_before: dict[str, float] = {}
    cpu_after: dict[str, float] = {}
    try:
        if cpu is not None:
            await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
            cpu_before = cpu.sample()
            await asyncio.sleep(max(0.0, measure_until - time.perf_counter()))
            cpu_after = cpu.sample()
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    latencies.sort()
    return LoadResult(
        name=name,
        requests=len(latencies),
        seconds=duration,
        throughput=len(latencies) / duration,
        p50_ms=percentile(latencies, 0.50) * 1e3,
        p99_ms=percentile(latencies, 0.99) * 1e3,
        errors=dict(errors),
        cpu_percent={
            key: 100.0 * (cpu_after[key] - cpu_before[key]) / duration
            for key in cpu_after
            if key in cpu_before
        },
    )


@contextlib.asynccontextmanager
async def open_channels(address: str, count: int) -> AsyncIterator[list[grpc.aio.Channel]]:
    # A local subchannel pool per channel: otherwise gRPC would share one connection.
    channels = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(count)
    ]
    try:
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), READY_TIMEOUT_SECONDS)
        yield channels
    finally:
        for channel in channels:
            await channel.close(grace=None)


# ---------------------------------------------------------------------------------- the phases


@dataclass(frozen=True)
class Workload:
    merchant_id: str
    customer_id: str
    request: bytes  # a serialized GetPointsBalanceRequest
    response_size: int  # bytes of a typical GetPointsBalanceResponse

    token: str  # an access token for merchant_id, verified by the server on every call

    @property
    def metadata(self) -> Metadata:
        return (("authorization", f"Bearer {self.token}"),)


def make_workload() -> Workload:
    from google.protobuf import timestamp_pb2

    from loyalnest.gen.points.v1 import points_pb2

    suffix = uuid.uuid4().hex[:8]
    customer_id = f"bench-customer-{suffix}"
    request = points_pb2.GetPointsBalanceRequest(customer_id=customer_id)
    sample = points_pb2.GetPointsBalanceResponse(
        balance=points_pb2.PointsBalance(
            customer_id=customer_id,
            balance=1_000,
            lifetime_earned=1_000,
            lifetime_redeemed=0,
            update_time=timestamp_pb2.Timestamp(seconds=int(time.time()), nanos=999_999_000),
        )
    )
    merchant_id = f"bench-merchant-{suffix}"
    return Workload(
        merchant_id=merchant_id,
        token=TOKEN_ISSUER.mint(
            subject="bench", merchant_id=merchant_id, permissions=["points:read", "points:write"]
        ),
        customer_id=customer_id,
        request=request.SerializeToString(),
        response_size=sample.ByteSize(),
    )


async def seed_ledger(channel: grpc.aio.Channel, workload: Workload) -> int:
    """Opens the customer's ledger (EarnPoints) and checks GetPointsBalance sees it."""
    from loyalnest.gen.points.v1 import points_pb2

    earn = channel.unary_unary(
        EARN_METHOD,
        request_serializer=points_pb2.EarnPointsRequest.SerializeToString,
        response_deserializer=points_pb2.EarnPointsResponse.FromString,
    )
    await earn(
        points_pb2.EarnPointsRequest(
            customer_id=workload.customer_id,
            points=1_000,
            reason="benchmark seed",
            idempotency_key=f"bench-seed-{workload.customer_id}",
        ),
        metadata=workload.metadata,
        timeout=CALL_TIMEOUT_SECONDS,
    )
    balance = channel.unary_unary(
        BALANCE_METHOD, request_serializer=None, response_deserializer=None
    )
    raw: bytes = await balance(
        workload.request, metadata=workload.metadata, timeout=CALL_TIMEOUT_SECONDS
    )
    response = points_pb2.GetPointsBalanceResponse.FromString(raw)
    if response.balance.balance != 1_000:
        raise RuntimeError(f"unexpected seeded balance: {response}")
    return len(raw)


async def run_benchmark(
    args: argparse.Namespace, database_url: str, pg_data_dir: Path, redis_url: str | None = None
) -> dict[str, Any]:
    workload = make_workload()
    jwks_path = pg_data_dir.parent / "jwks.json"
    jwks_path.write_text(json.dumps(KEYSET.public_jwks()))
    # The echo server answers with a payload as large as a real GetPointsBalanceResponse.
    echo_response = b"x" * workload.response_size

    # One server at a time; each one is stopped before the next starts.
    with server_process(echo_server_process, echo_response) as echo:
        async with open_channels(echo.address, args.channels) as channels:
            probe = CpuProbe(echo.process.pid or 0, None)
            echo_result = await run_load(
                "echo (raw grpc.aio)",
                channels,
                ECHO_METHOD,
                workload.request,
                workload.metadata,
                cpu=probe,
                concurrency=args.concurrency,
                warmup=args.warmup,
                duration=args.duration,
                rate=args.rate,
            )

    # The floor of a cached read in Python: echo plus the one Redis round trip Points makes
    # per call, on Points' loop. Points' distance to it is what its own code costs.
    floor_result: LoadResult | None = None
    if redis_url is not None:
        floor_loop = args.event_loops[0]
        with server_process(echo_server_process, echo_response, redis_url, floor_loop) as floor:
            async with open_channels(floor.address, args.channels) as channels:
                floor_result = await run_load(
                    f"echo + Redis HGET {floor_loop}",
                    channels,
                    ECHO_METHOD,
                    workload.request,
                    workload.metadata,
                    cpu=CpuProbe(floor.process.pid or 0, None),
                    concurrency=args.concurrency,
                    warmup=args.warmup,
                    duration=args.duration,
                    rate=args.rate,
                )

    # Alternating loops round after round: on a shared machine the load drifts, so each
    # loop's figures are a range over rounds measured side by side.
    points_results: list[LoadResult] = []
    response_size = 0
    for _ in range(args.rounds):
        for event_loop in args.event_loops:
            with server_process(
                points_server_process,
                database_url,
                args.tracing,
                args.profile_server,
                str(jwks_path),
                redis_url,
                event_loop,
            ) as points:
                async with open_channels(points.address, args.channels) as channels:
                    response_size = await seed_ledger(channels[0], workload)
                    probe = CpuProbe(points.process.pid or 0, postmaster_pid(pg_data_dir))
                    points_results.append(
                        await run_load(
                            f"GetPointsBalance {event_loop}",
                            channels,
                            BALANCE_METHOD,
                            workload.request,
                            workload.metadata,
                            cpu=probe,
                            concurrency=args.concurrency,
                            warmup=args.warmup,
                            duration=args.duration,
                            rate=args.rate,
                        )
                    )

    def ratio_of(result: LoadResult) -> float:
        return result.throughput / echo_result.throughput if echo_result.throughput else 0.0

    ratio = ratio_of(points_results[0])
    return {
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "grpc": grpc.__version__,
        "concurrency": args.concurrency,
        "rate": args.rate,
        "channels": args.channels,
        "warmup_seconds": args.warmup,
        "duration_seconds": args.duration,
        "tracing": args.tracing,
        "redis": redis_url is not None,
        "request_bytes": len(workload.request),
        "response_bytes": {"echo": len(echo_response), "GetPointsBalance": response_size},
        "event_loops": args.event_loops,
        "rounds": args.rounds,
        "results": [
            asdict(echo_result),
            *([asdict(floor_result)] if floor_result is not None else []),
            *(asdict(r) for r in points_results),
        ],
        "ratio": ratio,
        "ratios": [ratio_of(r) for r in points_results],
        "floor_ratio": None if floor_result is None else ratio_of(floor_result),
        "goal": GOAL_RATIO,
        "goal_met": ratio >= GOAL_RATIO,
    }


# ---------------------------------------------------------------------------------- reporting


def render(report: dict[str, Any]) -> str:
    lines = [
        f"cpus: {report['cpu_count']}   python {report['python']}   grpcio {report['grpc']}",
        f"concurrency {report['concurrency']} on {report['channels']} channel(s)"
        + (f", open loop at {report['rate']:g}/s" if report.get("rate") else ", closed loop")
        + ", "
        f"warm-up {report['warmup_seconds']}s, measured {report['duration_seconds']}s each, "
        f"tracing {'on' if report['tracing'] else 'off'}, "
        f"Redis balance cache {'on' if report.get('redis') else 'off'}",
        f"Points' event loop(s): {', '.join(report['event_loops'])} x {report['rounds']} round(s)"
        " (echo: asyncio)",
        f"payload: request {report['request_bytes']} B, response "
        f"{report['response_bytes']['echo']} B (echo) / "
        f"{report['response_bytes']['GetPointsBalance']} B (GetPointsBalance)",
        "",
        f"{'server':<26}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'cpu% client':>13}{'server':>8}{'postgres':>10}{'server us/req':>15}",
    ]
    for result in report["results"]:
        cpu = result["cpu_percent"]

        def pct(key: str, cpu: dict[str, float] = cpu) -> str:
            return f"{cpu[key]:.0f}" if key in cpu else "-"

        per_request = (
            f"{cpu['server'] * 1e4 / result['throughput']:.0f}"
            if "server" in cpu and result["throughput"]
            else "-"
        )
        lines.append(
            f"{result['name']:<26}{result['throughput']:>9.0f}{result['p50_ms']:>9.2f}"
            f"{result['p99_ms']:>9.2f}{sum(result['errors'].values()):>8}"
            f"{pct('client'):>13}{pct('server'):>8}{pct('postgres'):>10}{per_request:>15}"
        )
        if result["errors"]:
            lines.append(f"{'':<26}errors by code: {result['errors']}")
    verdict = "met" if report["goal_met"] else "NOT met"
    lines += [
        "",
        "ratio GetPointsBalance/echo throughput: "
        + ", ".join(f"{r:.2f}x" for r in report["ratios"]),
        f"goal: >= {report['goal']:.2f}x  ({verdict})",
    ]
    if report.get("floor_ratio") is not None:
        lines.append(
            f"ratio (echo + Redis HGET)/echo throughput: {report['floor_ratio']:.2f}x"
            " (a bare server paying Points' one Redis round trip per call)"
        )
    return "\n".join(lines)


def _event_loops(value: str) -> list[EventLoop]:
    loops: list[EventLoop] = []
    for name in value.split(","):
        if name == "uvloop":
            loops.append("uvloop")
        elif name == "asyncio":
            loops.append("asyncio")
        else:
            raise argparse.ArgumentTypeError(f"unknown event loop {name!r}: uvloop or asyncio")
    return loops


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent workers")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="open loop: calls per second for every server (default: closed loop, peak)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds each")
    parser.add_argument("--warmup", type=float, default=2.0, help="discarded seconds each")
    parser.add_argument("--channels", type=int, default=1, help="client channels (connections)")
    parser.add_argument(
        "--tracing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="OpenTelemetry tracing on the Points server (production default: on)",
    )
    parser.add_argument(
        "--redis",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run a Valkey for the Points server (balance cache; production default: on)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON report instead")
    parser.add_argument(
        "--profile-server",
        metavar="PATH",
        help="run the Points server under cProfile and write its stats to PATH "
        "(slows the server; read with `python -m pstats PATH`)",
    )
    parser.add_argument(
        "--event-loops",
        type=_event_loops,
        default=[ServerSettings().event_loop],
        help="comma-separated loops the Points server runs on, one run each in this order "
        "(uvloop, asyncio; default: LOYALNEST_EVENT_LOOP or uvloop, as `loyalnest serve`)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat the --event-loops sequence this often"
    )
    args = parser.parse_args(argv)
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be > 0")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if args.concurrency < 1 or args.channels < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--concurrency/--channels must be >= 1, --duration > 0, --warmup >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from loyalnest.devstack.postgres import LocalPostgres, free_port

    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    # Under /tmp with a 0755 parent: as root, PostgreSQL runs as `postgres`, which must reach it.
    root = Path(tempfile.mkdtemp(prefix="loyalnest-bench-pg-"))
    root.chmod(0o755)
    postgres = LocalPostgres(root / "data", free_port(), ephemeral=True)
    try:
        if not args.json:
            print("starting PostgreSQL ...", file=sys.stderr)
        postgres.start()
        postgres.create_database("bench")
        with valkey(root) if args.redis else contextlib.nullcontext() as redis_url:
            report = asyncio.run(
                run_benchmark(args, postgres.url("bench"), postgres.data_dir, redis_url)
            )
    finally:
        with contextlib.suppress(Exception):
            postgres.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers and PostgreSQL stopped", file=sys.stderr)
        sys.exit(130)
