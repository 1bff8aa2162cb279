"""Signed Shopify orders/create webhooks through Envoy to the edge service, against a bare
baseline, in one run.

    .venv/bin/python bench/bench_webhooks.py [--rate 500] [--concurrency 64] [--duration 10]
                                             [--warmup 3] [--workers 1] [--clients 1]
                                             [--tracing/--no-tracing] [--broker/--no-broker]
                                             [--relay-process] [--pg-durable] [--json]

Starts a throwaway PostgreSQL, Valkey and tansu (Kafka-protocol broker), then, one after the
other, three targets behind a real Envoy running the gateway config our code generates:

1. baseline: a bare `grpc.aio` server implementing EdgeService/ReceiveWebhook that answers at
   once (no interceptors, no verification, no storage);
2. the real edge service (`loyalnest.platform.server.running`, production defaults): HMAC
   verification, idempotency key (the dedupe) + outbox row in one PostgreSQL statement,
   the outbox relay publishing to the broker;
3. the floor (`--no-floor` skips it), measured after the edge: the bare server of 1 that also
   INSERTs each delivery (event id, body) in PostgreSQL, on the edge's loop: the least a
   Python server does to accept a webhook durably. The edge's distance to it is its own work.

Each target gets an open-loop phase (a fixed offered rate, latency measured from each send's
scheduled time) and a closed-loop phase (N concurrent senders, peak throughput), driven by the
same HTTP client processes (aiohttp, keep-alive) with the same kind of ~3 KB signed deliveries.
Then the edge run is checked: every response 200, one idempotency key and one outbox row per
accepted delivery, every event on the broker. See README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
from harness import (
    CpuCounter,
    ServerProcess,
    descendants,
    exit_on_sigterm,
    postmaster_pid,
    server_process,
    service_process,
    stop_event,
    throwaway_root,
)
from ingress import (
    EDGE_MODULE,
    TOPIC,
    Clients,
    Environment,
    PhaseResult,
    add_kafka_producer_option,
    add_pseudonyms_option,
    client_processes,
    edge_settings,
    environment,
    envoy_gateway,
    envoy_version,
    grpc_codes,
    has_uvloop,
    payload_sizes,
    query_count,
    query_strings,
    run_phase,
)

from loyalnest.platform import asyncio_loop
from loyalnest.platform.asyncio_loop import EventLoop
from loyalnest.platform.config import ServerSettings

GOAL_P99_MS = 100.0
GOAL_PEAK_PER_SECOND = 1000.0
FLOOR_TABLE = "bench_floor_deliveries"


# ---------------------------------------------------------------------------- server processes


def baseline_server_process(ready: Connection) -> None:
    """Child process entry point: a bare grpc.aio server with EdgeService/ReceiveWebhook
    answering at once (and grpc.health.v1, which Envoy's health checks need)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        asyncio.run(_baseline_main(ready))
    except BaseException as exc:
        with contextlib.suppress(OSError):
            ready.send(("error", "".join(traceback.format_exception(exc))))
        raise SystemExit(1) from None


async def _baseline_main(ready: Connection, database_url: str | None = None) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

    from loyalnest.gen.edge.v1 import edge_pb2, edge_pb2_grpc
    from loyalnest.services.edge.service import SERVICE_NAME
    from loyalnest.services.edge.webhooks import EVENT_ID_HEADER

    # As large as the edge's answer (the event id is a UUID), so the transcoder's work on the
    # way back is the same.
    response = edge_pb2.ReceiveWebhookResponse(
        outcome=edge_pb2.WEBHOOK_OUTCOME_ACCEPTED, topic=TOPIC, shopify_event_id=str(uuid.uuid4())
    )

    class BareEdge(edge_pb2_grpc.EdgeServiceServicer):
        async def ReceiveWebhook(  # noqa: N802 - the gRPC method's name
            self, request: edge_pb2.ReceiveWebhookRequest, context: Any
        ) -> edge_pb2.ReceiveWebhookResponse:
            return response

    servicer: edge_pb2_grpc.EdgeServiceServicer = BareEdge()
    pool = None
    if database_url is not None:
        from psycopg_pool import AsyncConnectionPool

        # The edge's pool settings (platform/postgres.py): autocommit, a statement is one
        # round trip.
        recording = AsyncConnectionPool(
            database_url, min_size=4, max_size=10, kwargs={"autocommit": True}, open=False
        )
        pool = recording
        await recording.open(wait=True)
        async with recording.connection() as conn:
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {FLOOR_TABLE}"
                " (event_id text PRIMARY KEY, body bytea NOT NULL)"
            )
        insert = f"INSERT INTO {FLOOR_TABLE} VALUES (%s, %s) ON CONFLICT DO NOTHING"

        class RecordingEdge(edge_pb2_grpc.EdgeServiceServicer):
            async def ReceiveWebhook(  # noqa: N802 - the gRPC method's name
                self, request: edge_pb2.ReceiveWebhookRequest, context: Any
            ) -> edge_pb2.ReceiveWebhookResponse:
                event_id = next(
                    (v for k, v in context.invocation_metadata() if k == EVENT_ID_HEADER), ""
                )
                async with recording.connection() as conn:
                    await conn.execute(insert, (event_id, request.body.data), prepare=True)
                return response

        servicer = RecordingEdge()

    stop, watchdog = stop_event()
    server = grpc.aio.server()
    edge_pb2_grpc.add_EdgeServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for name in ("", SERVICE_NAME):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ready.send(("ok", f"127.0.0.1:{port}"))
    await stop.wait()
    await server.stop(1.0)
    if pool is not None:
        await pool.close()
    await watchdog


def floor_server_process(ready: Connection, database_url: str, event_loop: EventLoop) -> None:
    """Child process entry point: the bare server that also records each delivery in
    PostgreSQL, one INSERT (its event id and body) in autocommit through a psycopg pool, on
    the edge's loop: the least a Python server does to accept a webhook durably. No
    signature check, no event, no relay: what the edge adds above it is its own cost."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        asyncio_loop.run(_baseline_main(ready, database_url), event_loop)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            ready.send(("error", "".join(traceback.format_exception(exc))))
        raise SystemExit(1) from None


# ---------------------------------------------------------------------------------- the phases


def run_target(
    target: str,
    endpoints: Sequence[ServerProcess],
    env: Environment,
    clients: Clients,
    args: argparse.Namespace,
) -> tuple[list[PhaseResult], int]:
    """Both phases against one target behind a fresh Envoy; returns them and how often
    Envoy asked the rate limiter (never, expectedly: a webhook carries no token, so the
    ratelimit filter has no merchant descriptor to send)."""
    with envoy_gateway(env.root, target, [s.address for s in endpoints], env.jwks_path) as gateway:
        groups: dict[str, Callable[[], list[int]]] = {
            "client": lambda: list(clients.pids),
            "envoy": lambda: [gateway.pid],
            "server": lambda: [s.pid for s in endpoints],
        }
        if target != "baseline":
            pg = postmaster_pid(env.pg_data_dir)
            groups["postgres"] = lambda: descendants(pg) if pg else []
        if target == "edge":
            groups["redis"] = lambda: [env.redis_pid]
            if env.broker_pid is not None:
                broker = env.broker_pid
                groups["broker"] = lambda: [broker]
        cpu = CpuCounter(groups)
        url = gateway.url + f"/v1/api/webhooks/{TOPIC}"
        results = [
            run_phase(target, clients, cpu, {"kind": "open", "url": url, "rate": args.rate}, args),
            run_phase(
                target,
                clients,
                cpu,
                {"kind": "closed", "url": url, "concurrency": args.concurrency},
                args,
            ),
        ]
        return results, gateway.rate_limit_checks()


# -------------------------------------------------------------------------------- correctness


def _read_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> tuple[int, set[str]]:
    """Reads `topic` from the start to its end offsets: (records, distinct event ids)."""
    from kafka import KafkaConsumer, TopicPartition

    from loyalnest.platform.events.envelope import EVENT_ID_HEADER

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        client_id="bench-check",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        ends = consumer.end_offsets(assigned)
        records = 0
        ids: set[str] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
            consumer.position(tp) < ends[tp] for tp in assigned
        ):
            for batch in consumer.poll(timeout_ms=500, max_records=5000).values():
                for record in batch:
                    records += 1
                    for name, value in record.headers or ():
                        if name == EVENT_ID_HEADER and value is not None:
                            ids.add(value.decode())
        return records, ids
    finally:
        consumer.close()


def verify_edge(
    env: Environment, results: Sequence[PhaseResult], drain_timeout: float
) -> dict[str, Any]:
    """Every response 200 and ACCEPTED; each accepted delivery recorded once (idempotency key
    and outbox row); with the broker, the outbox drained and every event on the topic."""
    from loyalnest.platform.events.topics import EDGE

    accepted_ids = set().union(*(r.accepted_event_ids for r in results))
    accepted = sum(r.accepted_total for r in results)
    sent = sum(r.sent_total for r in results)
    non_200 = sum(v for r in results for k, v in r.statuses.items() if k != "200")
    failures = sum(sum(r.errors.values()) for r in results)
    key_ids = query_strings(env.database_url, "SELECT event_id FROM edge.webhook_idempotency_keys")
    outbox_ids = query_strings(env.database_url, "SELECT event_id::text FROM edge.outbox")
    outbox_rows = query_count(env.database_url, "SELECT count(*) FROM edge.outbox")
    check: dict[str, Any] = {
        "deliveries_sent": sent,
        "accepted": accepted,
        "non_200": non_200,
        "client_errors": failures,
        "idempotency_keys": len(key_ids),
        "outbox_rows": outbox_rows,
        # Acknowledged (200 ACCEPTED) but not recorded: a lost webhook.
        "accepted_not_recorded": len(accepted_ids - key_ids),
        # Recorded although the client saw no 200 (it gave up, or Envoy did): Shopify would
        # deliver it again and get DUPLICATE, so nothing is lost, but the counts differ.
        "recorded_without_200": len(key_ids - accepted_ids),
    }
    ok = (
        non_200 == 0
        and failures == 0
        and accepted == sent == len(accepted_ids)
        and key_ids == accepted_ids
        and outbox_rows == len(outbox_ids) == len(key_ids)
    )
    if env.kafka is not None:
        started = time.monotonic()
        pending = -1
        while time.monotonic() - started < drain_timeout:
            pending = query_count(
                env.database_url, "SELECT count(*) FROM edge.outbox WHERE sent_at IS NULL"
            )
            if pending == 0:
                break
            time.sleep(0.2)
        check["outbox_pending_after_run"] = pending
        check["relay_drain_seconds"] = round(time.monotonic() - started, 1)
        try:
            records, on_broker = _read_topic(env.kafka, EDGE.name)
        except Exception as exc:  # reported, and the check fails
            check["broker_error"] = repr(exc)
            records, on_broker = 0, set()
        missing = outbox_ids - on_broker
        check["broker_records"] = records
        check["broker_missing_events"] = len(missing)
        # At least once: a relay retry may publish an event twice (consumers dedupe), so
        # more records than rows is not a loss; an outbox event absent from the topic is.
        ok = ok and pending == 0 and not missing and "broker_error" not in check
    check["ok"] = ok
    return check


# ---------------------------------------------------------------------------------- the run


def run_benchmark(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    import aiohttp

    load_before = os.getloadavg()
    sizes = payload_sizes("x")
    seed = random.randrange(1 << 30)
    with (
        throwaway_root("loyalnest-bench-webhooks-", args.logs) as root,
        environment(args, root) as env,
        client_processes(args.clients, env.secret, seed, args.customers) as clients,
    ):
        results: list[PhaseResult] = []
        # One target at a time; each one and its Envoy stop before the next starts.
        say(f"baseline: {args.workers} bare grpc.aio process(es) behind Envoy ...")
        with contextlib.ExitStack() as stack:
            servers = [
                stack.enter_context(server_process(baseline_server_process))
                for _ in range(args.workers)
            ]
            baseline, baseline_rls = run_target("baseline", servers, env, clients, args)
        results += baseline
        say(f"edge: {args.workers} edge service process(es) behind Envoy ...")
        with contextlib.ExitStack() as stack:
            from loyalnest.devstack.postgres import free_port

            metrics_ports = [free_port() for _ in range(args.workers)]
            settings = edge_settings(args, env)
            if args.relay_process:
                settings |= {"outbox_relay_in_process": False}
            # One after the other: the first runs the migrations.
            servers = [
                stack.enter_context(
                    server_process(
                        service_process,
                        EDGE_MODULE,
                        settings | {"metrics_port": metrics_ports[index]},
                        # Only the first worker, when asked: one profile file.
                        args.profile_server if index == 0 else None,
                    )
                )
                for index in range(args.workers)
            ]
            if args.relay_process and args.broker:
                # Not an Envoy endpoint: its CPU shows under "other".
                stack.enter_context(
                    server_process(
                        service_process,
                        EDGE_MODULE,
                        settings | {"metrics_port": free_port()},
                        None,
                        True,
                    )
                )
            edge, edge_rls = run_target("edge", servers, env, clients, args)
            results += edge
            edge_codes = grpc_codes(metrics_ports)
            say("checking the edge's records ...")
            # While the edge runs: its relay drains the outbox to the broker.
            check = verify_edge(env, edge, args.drain_timeout)
        # After the edge, so that the floor's rows and their vacuum cannot slow the edge down.
        if args.floor:
            say(f"floor: {args.workers} bare process(es) with one INSERT per delivery ...")
            with contextlib.ExitStack() as stack:
                servers = [
                    stack.enter_context(
                        server_process(
                            floor_server_process, env.database_url, ServerSettings().event_loop
                        )
                    )
                    for _ in range(args.workers)
                ]
                floor, _ = run_target("floor", servers, env, clients, args)
            results += floor
    peak = {r.target: r for r in results if r.kind == "closed"}
    open_loop = {r.target: r for r in results if r.kind == "open"}
    ratio = (
        peak["edge"].throughput / peak["baseline"].throughput
        if peak["baseline"].throughput
        else 0.0
    )
    return {
        "cpu_count": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "grpc": grpc.__version__,
        "aiohttp": aiohttp.__version__,
        "uvloop": has_uvloop(),
        "envoy": envoy_version(),
        # The edge's loop, as `loyalnest serve` picks it (LOYALNEST_EVENT_LOOP; the baseline
        # stays on asyncio's).
        "event_loop": ServerSettings().event_loop,
        "workers": args.workers,
        "clients": args.clients,
        "customers": args.customers,
        "rate": args.rate,
        "concurrency": args.concurrency,
        "warmup_seconds": args.warmup,
        "duration_seconds": args.duration,
        "tracing": args.tracing,
        "kafka_producer": args.kafka_producer,
        "kafka_consumer": args.kafka_consumer,
        "pseudonyms": args.pseudonyms,
        "broker": args.broker,
        "relay_process": args.relay_process,
        "pg_durable": args.pg_durable,
        "payload_bytes": {
            "min": sizes[0],
            "median": sizes[len(sizes) // 2],
            "max": sizes[-1],
            "mean": round(sum(sizes) / len(sizes)),
        },
        "results": [r.public() for r in results],
        "envoy_rate_limit_checks": {"baseline": baseline_rls, "edge": edge_rls},
        # The edge's own count of ReceiveWebhook calls by status code (its /metrics).
        "edge_grpc_codes": edge_codes,
        "ratio_peak_throughput": ratio,
        "ratio_floor_peak_throughput": (
            peak["floor"].throughput / peak["baseline"].throughput
            if "floor" in peak and peak["baseline"].throughput
            else None
        ),
        "goals": {
            "p99_ms_at_rate": GOAL_P99_MS,
            "p99_ms_measured": open_loop["edge"].p99_ms,
            "p99_met": open_loop["edge"].p99_ms < GOAL_P99_MS
            and open_loop["edge"].throughput >= 0.95 * args.rate,
            "peak_per_second": GOAL_PEAK_PER_SECOND,
            "peak_measured": peak["edge"].throughput,
            "peak_met": peak["edge"].throughput >= GOAL_PEAK_PER_SECOND,
        },
        "correctness": check,
    }


# ---------------------------------------------------------------------------------- reporting

CPU_COLUMNS = ("client", "envoy", "server", "postgres", "redis", "broker", "other")


def render(report: dict[str, Any]) -> str:
    sizes = report["payload_bytes"]
    load = " ".join(f"{x:.2f}" for x in report["loadavg_before"])
    load_after = " ".join(f"{x:.2f}" for x in report["loadavg_after"])
    lines = [
        f"cpus: {report['cpu_count']}   python {report['python']}   grpcio {report['grpc']}   "
        f"envoy {report['envoy']}   aiohttp {report['aiohttp']}"
        f"{' + uvloop' if report['uvloop'] else ''}",
        f"load average before: {load}   after: {load_after}",
        f"servers: {report['workers']} process(es) per target behind one Envoy; edge: "
        f"{report.get('event_loop', 'asyncio')} loop, tracing "
        f"{'on' if report['tracing'] else 'off'}, producer {report['kafka_producer']}, "
        f"customer pseudonyms {'on' if report.get('pseudonyms') else 'off'},"
        " dedupe in PostgreSQL, PostgreSQL "
        f"{'durable (fsync on)' if report['pg_durable'] else 'fsync off'}, outbox relay "
        f"{'-> tansu' if report['broker'] else 'off (rows stay in the outbox)'}",
        f"payload: signed {TOPIC}, {sizes['mean']} B mean ({sizes['min']}-{sizes['max']}), "
        "unique ids and X-Shopify-Event-Id per delivery, "
        + (
            f"customers from a pool of {report['customers']} (returning)"
            if report.get("customers")
            else "a new customer per delivery"
        ),
        f"client: {report['clients']} process(es); open loop {report['rate']:g}/s, closed loop "
        f"{report['concurrency']} concurrent; warm-up {report['warmup_seconds']:g}s, "
        f"measured {report['duration_seconds']:g}s per phase",
        "",
        f"{'phase':<15}{'target':<10}{'acc/s':>7}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
        f"{'lag99':>7}{'fail':>6} |cpu%"
        + "".join(f"{c:>9}" for c in CPU_COLUMNS)
        + f"{'srv us/req':>11}",
    ]
    for result in report["results"]:
        cpu = result["cpu_percent"]
        failures = (
            sum(v for k, v in result["statuses"].items() if k != "200")
            + sum(result["errors"].values())
            + result["outcomes"].get("duplicate", 0)
            + result["outcomes"].get("other", 0)
        )
        lag = result["send_lag_p99_ms"]
        per_request = (
            f"{cpu['server'] * 1e4 / result['throughput']:.0f}"
            if "server" in cpu and result["throughput"]
            else "-"
        )
        lines.append(
            f"{result['label']:<15}{result['target']:<10}{result['throughput']:>7.0f}"
            f"{result['p50_ms']:>8.1f}{result['p99_ms']:>8.1f}{result['max_ms']:>8.0f}"
            f"{'-' if lag is None else f'{lag:.1f}':>7}{failures:>6} |    "
            + "".join(f"{cpu[c]:>9.0f}" if c in cpu else f"{'-':>9}" for c in CPU_COLUMNS)
            + f"{per_request:>11}"
        )
        if failures:
            lines.append(
                f"{'':<25}statuses {result['statuses']} outcomes {result['outcomes']} "
                f"errors {result['errors']}"
            )
            if result["first_failure"]:
                lines.append(f"{'':<25}first: {result['first_failure'][:200]}")
    goals = report["goals"]
    check = report["correctness"]

    def verdict(met: bool) -> str:
        return "met" if met else "NOT met"

    lines += [
        "",
        f"ratio edge/baseline peak throughput: {report['ratio_peak_throughput']:.2f}x",
        *(
            [
                "ratio floor/baseline peak throughput: "
                f"{report['ratio_floor_peak_throughput']:.2f}x (the bare server plus one"
                " INSERT per delivery: the least a durable accept costs in Python)"
            ]
            if report.get("ratio_floor_peak_throughput") is not None
            else []
        ),
        f"goal p99 < {goals['p99_ms_at_rate']:g} ms at {report['rate']:g}/s: "
        f"{goals['p99_ms_measured']:.1f} ms ({verdict(goals['p99_met'])})",
        f"goal peak >= {goals['peak_per_second']:g}/s: {goals['peak_measured']:.0f}/s "
        f"({verdict(goals['peak_met'])})",
        "edge's own count of ReceiveWebhook calls by status: "
        + (", ".join(f"{k} {v}" for k, v in sorted(report["edge_grpc_codes"].items())) or "-"),
        "Envoy -> rate-limit service calls (webhooks carry no token: expect 0): "
        f"{report['envoy_rate_limit_checks']['baseline']} baseline, "
        f"{report['envoy_rate_limit_checks']['edge']} edge",
        "correctness (edge, warm-up included): "
        f"{check['deliveries_sent']} sent, {check['accepted']} accepted (200), "
        f"{check['non_200']} other statuses, {check['client_errors']} client errors",
        f"  PostgreSQL: {check['idempotency_keys']} idempotency keys, "
        f"{check['outbox_rows']} outbox rows; {check['accepted_not_recorded']} accepted but "
        f"not recorded, {check['recorded_without_200']} recorded without a 200",
    ]
    if "broker_records" in check:
        lines.append(
            f"  relay: outbox drained in {check['relay_drain_seconds']}s "
            f"({check['outbox_pending_after_run']} pending); {check['broker_records']} records "
            f"on the broker, {check['broker_missing_events']} outbox events missing there"
            + (f" ({check['broker_error']})" if "broker_error" in check else "")
        )
    lines.append(f"  => {'OK' if check['ok'] else 'FAILED'}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="open loop: deliveries/s")
    parser.add_argument("--concurrency", type=int, default=64, help="closed loop: senders")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=3.0, help="discarded seconds per phase")
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes per target (Envoy endpoints)"
    )
    parser.add_argument("--clients", type=int, default=1, help="HTTP client processes")
    parser.add_argument(
        "--tracing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="OpenTelemetry tracing in the edge service (production default: on)",
    )
    parser.add_argument(
        "--broker",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run tansu and the edge's outbox relay (production: on)",
    )
    parser.add_argument(
        "--floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the floor: the bare server plus one INSERT per delivery, on the"
        " edge's loop (the least a durable accept costs in Python)",
    )
    parser.add_argument(
        "--relay-process",
        action="store_true",
        help="run the edge's outbox relay in a process of its own (`loyalnest relay edge`,"
        " LOYALNEST_OUTBOX_RELAY_IN_PROCESS=false) instead of inside the edge process",
    )
    parser.add_argument(
        "--pg-durable",
        action="store_true",
        help="PostgreSQL with fsync and synchronous commit on (default: off, as in the tests)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the relay to empty the outbox after the load",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON report instead")
    parser.add_argument(
        "--logs",
        type=Path,
        metavar="DIR",
        help="copy the logs (Envoy's access and error logs, PostgreSQL, tansu) to DIR",
    )
    parser.add_argument(
        "--profile-server",
        metavar="PATH",
        help="run the (first) edge process under cProfile and write its stats to PATH "
        "(slows the edge; read with `python -m pstats PATH`)",
    )
    parser.add_argument(
        "--customers",
        type=int,
        default=0,
        metavar="N",
        help="orders name N customers, returning after the first N orders (default 0: a new "
        "customer per order)",
    )
    add_kafka_producer_option(parser)
    add_pseudonyms_option(parser)
    args = parser.parse_args(argv)
    if (
        args.rate <= 0
        or args.concurrency < 1
        or args.duration <= 0
        or args.warmup < 0
        or args.workers < 1
        or args.clients < 1
        or args.customers < 0
    ):
        parser.error(
            "--rate/--duration must be > 0, --concurrency/--workers/--clients >= 1,"
            " --warmup/--customers >= 0"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)

    def say(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    say("starting PostgreSQL, Valkey" + (", tansu" if args.broker else "") + " ...")
    report = run_benchmark(args, say)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0 if report["correctness"]["ok"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
