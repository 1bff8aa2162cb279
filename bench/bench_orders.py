"""Shopify orders/create webhooks to points credited, end to end, in one run.

    .venv/bin/python bench/bench_orders.py [--rate 300[,400,...]] [--duration 15] [--warmup 3]
                                           [--workers 1] [--clients 1] [--tracing/--no-tracing]
                                           [--pg-durable] [--drain-timeout 120] [--json]
                                           [--tiers-ab PAIRS]

Path of one order: aiohttp client -> Envoy (our generated gateway config) -> the edge service
(HMAC, idempotency key (the dedupe) + outbox row) -> its outbox relay -> tansu
(`loyalnest.edge.events`, webhook.received) -> Points' consumer -> the order recorded and, with
a pending period of 0, credited at once (ledger posting, points.earned in Points' outbox) ->
the balance stored in Redis and PUBLISHed on `points:stream:{merchant}:{customer}`.

The benchmark PSUBSCRIBEs `points:stream:*` on the run's Valkey and timestamps each message on
arrival; every order is a new customer, so one message per order. Latency = arrival - the
order's scheduled send time (open loop on a timetable: a stall shows in the latency of
everything scheduled behind it).

Phases, all against one Envoy and the same edge process(es):

1. ingress only: Points not running yet; the edge accepts and its relay publishes. The same
   client at the same rate: the baseline the orders phase is read against.
2. Points catch-up: Points starts and credits the backlog phase 1 left on the topic, as fast as
   it can with no HTTP load: Points' own peak rate.
3. orders: the open loop at each `--rate` with Points consuming: completed orders/s, latency
   from the webhook to the balance update, the backlog at the end of the window.

Then the check: every response 200 ACCEPTED, every order credited exactly once (one
`order:<id>` transaction per order sent, none twice), one balance message per order. Last,
the floor (`--no-floor` skips it): a bare consumer applying the same events, one INSERT each
(floor_consumer.py), its CPU per event to set Points' per order against. See README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import floor_consumer
import grpc
import rule_cost
from harness import (
    CpuCounter,
    ServerProcess,
    cpu_percent,
    descendants,
    exit_on_sigterm,
    percentile,
    postmaster_pid,
    server_process,
    service_process,
    throwaway_root,
)
from ingress import (
    AUTH_MODULE,
    EDGE_MODULE,
    POINTS_MODULE,
    SHOPS,
    SLOT_CUSTOMER,
    SLOT_ORDER,
    TOPIC,
    Clients,
    Environment,
    PhaseResult,
    ServiceIdentities,
    add_kafka_producer_option,
    add_pseudonyms_option,
    auth_settings,
    client_processes,
    edge_settings,
    environment,
    envoy_gateway,
    envoy_version,
    has_uvloop,
    install_shops,
    payload_sizes,
    query_count,
    query_strings,
    run_phase,
    service_settings,
)

GOAL_RATE = 300.0
GOAL_P99_MS = 1000.0
# "Sustained": the orders completed per second reach this share of the offered rate.
SUSTAINED_SHARE = 0.98
STREAM_PATTERN = "points:stream:*"
# No balance message for this long while orders are outstanding: they are not coming.
QUIET_SECONDS = 10.0


# ------------------------------------------------------------------------ the balance watcher


@dataclass(frozen=True)
class RepeatedMessage:
    """A customer's balance message after its first: when, and whether it was the same
    snapshot (published again) or another one (a second posting)."""

    customer: int
    after_seconds: float
    same: bool


class CreditWatcher:
    """PSUBSCRIBE points:stream:* on one connection, in a thread of the benchmark process:
    records when the first balance message of each customer arrived (no polling of Points).

    A thread rather than another process: it costs a few microseconds per message, and the
    benchmark process otherwise only sleeps during a phase (its CPU is in the `client` column).
    """

    def __init__(self, redis_url: str) -> None:
        import redis

        self._client = redis.Redis.from_url(redis_url)
        self._pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="credit-watcher", daemon=True)
        # customer id -> time.monotonic() of its first message; repeats counted per customer.
        self.arrivals: dict[int, float] = {}
        self.repeats: dict[int, int] = {}
        # customer id -> its first message; and for a repeat, how it differed from it.
        self._first: dict[int, bytes] = {}
        self.repeated: list[RepeatedMessage] = []
        self.messages = 0
        self.error = ""

    def start(self) -> None:
        self._pubsub.psubscribe(STREAM_PATTERN)
        # Wait for the confirmation: from then on no message can be missed.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = self._pubsub.get_message(timeout=0.5)
            if message is not None and message["type"] == "psubscribe":
                break
        else:
            raise RuntimeError("PSUBSCRIBE not confirmed")
        self._thread.start()

    def _run(self) -> None:
        arrivals, repeats = self.arrivals, self.repeats
        try:
            while not self._stop.is_set():
                message = self._pubsub.get_message(timeout=0.2)
                if message is None or message["type"] != "pmessage":
                    continue
                now = time.monotonic()  # first, before any parsing
                self.messages += 1
                customer = int(message["channel"].rpartition(b":")[2])
                if customer in arrivals:
                    repeats[customer] = repeats.get(customer, 0) + 1
                    self.repeated.append(
                        RepeatedMessage(
                            customer,
                            now - arrivals[customer],
                            same=message["data"] == self._first[customer],
                        )
                    )
                else:
                    arrivals[customer] = now
                    self._first[customer] = message["data"]
        except Exception as exc:  # reported; the phases then time out waiting for credits
            self.error = repr(exc)

    def wait_for(self, customers: Sequence[int], timeout: float) -> None:
        """Waits until every one of `customers` has a message, or `timeout`, or no message
        at all came for QUIET_SECONDS once the first of them arrived: a webhook that was not
        accepted (the check reports it) is never credited and must not hold up the run."""
        started = time.monotonic()
        pending = [c for c in customers if c not in self.arrivals]
        seen, last_progress = self.messages, started
        while pending and time.monotonic() - started < timeout and not self.error:
            time.sleep(0.05)
            pending = [c for c in pending if c not in self.arrivals]
            now = time.monotonic()
            if self.messages != seen:
                seen, last_progress = self.messages, now
            elif len(pending) < len(customers) and now - last_progress > QUIET_SECONDS:
                return

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with contextlib.suppress(Exception):
            self._pubsub.close()
            self._client.close()


@contextlib.contextmanager
def credit_watcher(redis_url: str) -> Iterator[CreditWatcher]:
    watcher = CreditWatcher(redis_url)
    try:
        watcher.start()
        yield watcher
    finally:
        watcher.close()


# ---------------------------------------------------------------------------------- the setup

# Points' program cache under --tiers-ab (seconds).
PROGRAM_CACHE_SECONDS = 1.0
# --tiers-ab's programs, in the order each round runs them (see tiered_program).
AB_PROGRAMS = ("plain", "tiers", "rules")


def tiered_program(tiers: bool = True) -> Any:
    """--tiers-ab's "tiers" program: the default rate as an explicit rule, a POS-only bonus (never
    applies: the orders are online), a punch card (5th order), a goal (500 in 30 days), a
    Gold-only bonus, and VIP tiers Silver (100 points earned) and Gold (300, earning x1.5):
    every order earns (a point per currency unit, as A), Points reads the customer's tier for
    it, and evaluates the tier after each points.earned (an upgrade: a tier.changed).
    `tiers` False: the same rules without the tiers and the Gold-only bonus (the C program:
    what the rules cost without tiers)."""
    from loyalnest.gen.events.v1 import core_pb2
    from loyalnest.platform.program_settings import default_program

    program: core_pb2.ProgramSettings = default_program()
    rule, order = core_pb2.EarningRule, core_pb2.EARNING_RULE_TYPE_PLACE_ORDER
    program.earning_rules.extend(
        [
            rule(rule_id="spend", enabled=True, type=order, points_per_currency_unit="1"),
            *rule_cost.bonus_rules(),
            rule(
                rule_id="gold-bonus", enabled=True, type=order, points=10, eligible_tiers=["gold"]
            ),
        ]
    )
    if not tiers:
        del program.earning_rules[-1]
        return program
    program.vip_metric = core_pb2.VIP_METRIC_POINTS_EARNED
    program.vip_term = core_pb2.VIP_TERM_ROLLING_12_MONTHS
    program.vip_tiers.add(tier_id="silver", name="Silver", threshold=100)
    program.vip_tiers.add(tier_id="gold", name="Gold", threshold=300, earning_multiplier="1.5")
    return program


async def _seed_programs(database_url: str, *, kind: str = "plain", version: int = 1) -> int:
    """Points' schema (its migrations, as Points would run them on start) and its copy of every
    bench shop's program with `pending_period` 0, through the store API, before Points starts:
    so the first order it consumes is already credited at once. (Core is not run: its
    PATCH /v1/api/core/settings would reach the same rows via program_settings.updated.)
    Again with a higher `version` while Points runs: --tiers-ab switches the programs."""
    import logging

    import structlog

    from loyalnest.gen.events.v1 import core_pb2
    from loyalnest.platform.postgres import Database
    from loyalnest.platform.program_settings import default_program
    from loyalnest.platform.tenancy import merchant_id_for_shop
    from loyalnest.services.points.service import DATABASE, PointsSettings
    from loyalnest.services.points.store.postgres import PostgresLedgerStore

    # This process's only log lines would be the migrations' (info): keep the output clean.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    database = Database(PointsSettings(database_url=database_url), DATABASE)
    await database.open()
    try:
        await database.migrate()
        store = PostgresLedgerStore(database)
        program: core_pb2.ProgramSettings = (
            default_program() if kind == "plain" else tiered_program(tiers=kind == "tiers")
        )
        program.version = version
        program.pending_period.FromTimedelta(timedelta(0))
        raw = program.SerializeToString(deterministic=True)
        saved = 0
        for shop in SHOPS:
            saved += await store.save_program_settings(merchant_id_for_shop(shop), version, raw)
        return saved
    finally:
        await database.close()


def order_of(customer_id: int) -> int:
    """The order id of the delivery whose customer is `customer_id` (ingress.DeliveryFactory
    gives each delivery a block of SLOT_STRIDE ids)."""
    return customer_id - SLOT_CUSTOMER + SLOT_ORDER


# ---------------------------------------------------------------------------------- the phases


@dataclass
class OrdersResult:
    """What happened to one phase's orders after their webhooks were accepted."""

    label: str
    rate: float
    orders_measured: int  # scheduled inside the window
    credited_measured: int
    throughput: float  # credited orders per second (measured ones)
    p50_ms: float
    p99_ms: float
    max_ms: float
    # Sent (scheduled before the window's end) but not credited by the window's end.
    backlog_at_end: int
    # After the window, until the last order was credited (or the drain timeout).
    drain_seconds: float
    not_credited: int  # warm-up included, after the drain timeout
    http: dict[str, Any]  # the webhook side (acceptance latency, statuses), PhaseResult.public
    cpu_percent: dict[str, float]


def _e2e(
    phase: PhaseResult, arrivals: dict[int, float], measure_from: float, duration: float
) -> dict[str, Any]:
    measure_until = measure_from + duration
    measured = {c: t for c, t in phase.scheduled.items() if t >= measure_from}
    latencies = sorted(arrivals[c] - t for c, t in measured.items() if c in arrivals)
    last = max((arrivals[c] for c in measured if c in arrivals), default=measure_until)
    seconds = max(duration, last - measure_from)
    backlog = sum(
        1
        for c, t in phase.scheduled.items()
        if t < measure_until and arrivals.get(c, math.inf) > measure_until
    )
    return {
        "orders_measured": len(measured),
        "credited_measured": len(latencies),
        "throughput": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "max_ms": (latencies[-1] * 1e3) if latencies else float("nan"),
        "backlog_at_end": backlog,
        "not_credited": sum(1 for c in phase.scheduled if c not in arrivals),
    }


@dataclass
class CatchUp:
    orders: int
    credited: int
    seconds: float  # first to last credit
    throughput: float
    wait_seconds: float  # from Points' start to the last credit (group join included)
    cpu_percent: dict[str, float] = field(default_factory=dict)


@dataclass
class Stack:
    env: Environment
    clients: Clients
    edge: list[ServerProcess]
    points: list[ServerProcess]
    envoy_pid: int
    url: str

    def cpu(self) -> CpuCounter:
        pg = postmaster_pid(self.env.pg_data_dir)
        broker = self.env.broker_pid
        return CpuCounter(
            {
                # The client processes and this one (the balance watcher's thread).
                "client": lambda: [*self.clients.pids, os.getpid()],
                "envoy": lambda: [self.envoy_pid],
                "edge": lambda: [s.pid for s in self.edge],
                "points": lambda: [s.pid for s in self.points],
                "postgres": lambda: descendants(pg) if pg else [],
                "redis": lambda: [self.env.redis_pid],
                "broker": lambda: [broker] if broker else [],
            }
        )


def _open_phase(stack: Stack, rate: float, args: argparse.Namespace) -> PhaseResult:
    return run_phase(
        "edge", stack.clients, stack.cpu(), {"kind": "open", "url": stack.url, "rate": rate}, args
    )


def catch_up(
    stack: Stack,
    watcher: CreditWatcher,
    backlog: Sequence[int],
    args: argparse.Namespace,
    start_points: Callable[[], None],
) -> CatchUp:
    """Starts Points (which finds `backlog` on the topic) and waits until it is credited."""
    counter = stack.cpu()
    started = time.monotonic()
    start_points()
    # CPU from the first credit on: Points' start-up and its joining the group stay out.
    watcher.wait_for(backlog[:1], args.drain_timeout)
    before = counter.sample()
    sampled_at = time.monotonic()
    watcher.wait_for(backlog, args.drain_timeout)
    after = counter.sample()
    times = sorted(watcher.arrivals[c] for c in backlog if c in watcher.arrivals)
    seconds = times[-1] - times[0] if len(times) > 1 else 0.0
    return CatchUp(
        orders=len(backlog),
        credited=len(times),
        seconds=seconds,
        throughput=(len(times) - 1) / seconds if seconds > 0 else 0.0,
        wait_seconds=(times[-1] if times else time.monotonic()) - started,
        cpu_percent=cpu_percent(before, after, time.monotonic() - sampled_at),
    )


def orders_phase(
    stack: Stack, watcher: CreditWatcher, rate: float, args: argparse.Namespace
) -> tuple[OrdersResult, PhaseResult]:
    """The open loop at `rate` with Points consuming; waits for the phase's last credit."""
    http = _open_phase(stack, rate, args)
    watcher.wait_for(list(http.scheduled), args.drain_timeout)
    measure_until = http.measure_from + args.duration
    last_credit = max(
        (watcher.arrivals[c] for c in http.scheduled if c in watcher.arrivals),
        default=measure_until,
    )
    result = OrdersResult(
        label=f"orders {rate:g}/s",
        rate=rate,
        drain_seconds=max(0.0, last_credit - measure_until),
        http=http.public(),
        cpu_percent=http.cpu_percent,
        **_e2e(http, watcher.arrivals, http.measure_from, args.duration),
    )
    return result, http


# ---------------------------------------------------------------------------------- the check


def verify(
    env: Environment, http_phases: Sequence[PhaseResult], watcher: CreditWatcher
) -> dict[str, Any]:
    """Every webhook 200 ACCEPTED; every order credited once: one `order:<id>` transaction per
    order sent and none twice, each order APPROVED, one balance message per order."""
    sent_customers = {c for phase in http_phases for c in phase.scheduled}
    sent = sum(p.sent_total for p in http_phases)
    accepted = sum(p.accepted_total for p in http_phases)
    non_200 = sum(v for p in http_phases for k, v in p.statuses.items() if k != "200")
    client_errors = sum(sum(p.errors.values()) for p in http_phases)
    url = env.database_url
    where = "FROM points.points_transactions WHERE reason LIKE 'order:%'"
    transactions = query_count(url, f"SELECT count(*) {where}")
    reasons = query_strings(url, f"SELECT reason {where}")
    expected = {f"order:{order_of(c)}" for c in sent_customers}
    approved = query_count(
        url, "SELECT count(*) FROM points.order_earnings WHERE status = 'approved'"
    )
    recorded = query_count(url, "SELECT count(*) FROM points.order_earnings")
    check: dict[str, Any] = {
        "webhooks_sent": sent,
        "accepted": accepted,
        "non_200": non_200,
        "client_errors": client_errors,
        "order_transactions": transactions,
        # The same order:<id> reason twice: an order credited more than once.
        "duplicate_transactions": transactions - len(reasons),
        "orders_not_credited": len(expected - reasons),
        "unexpected_credits": len(reasons - expected),
        "orders_recorded": recorded,
        "orders_approved": approved,
        "balance_messages": watcher.messages,
        "customers_with_repeated_messages": len(watcher.repeats),
        "repeated_messages": {
            "same_snapshot": sum(r.same for r in watcher.repeated),
            "other_snapshot": sum(not r.same for r in watcher.repeated),
            "after_seconds": sorted(round(r.after_seconds, 4) for r in watcher.repeated),
        },
        "watcher_error": watcher.error,
    }
    check["ok"] = (
        non_200 == 0
        and client_errors == 0
        and accepted == sent == len(sent_customers)
        and transactions == len(reasons) == sent
        and reasons == expected
        and approved == recorded == sent
        and watcher.messages == sent
        and not watcher.repeats
        and not watcher.error
    )
    return check


def _repeats_described(repeated: dict[str, Any]) -> str:
    """The repeats of a failed check: the same snapshot again or another, and how much later."""
    gaps = repeated["after_seconds"]
    if not gaps:
        return ""
    return (
        f" ({repeated['same_snapshot']} the same snapshot again, {repeated['other_snapshot']}"
        f" another; {gaps[0] * 1000:.1f}-{gaps[-1] * 1000:.1f} ms after the first)"
    )


# ---------------------------------------------------------------------------------- the run


def start_services(
    module: str,
    count: int,
    settings: dict[str, Any],
    stack: contextlib.ExitStack,
    profile: str | None = None,
) -> list[ServerProcess]:
    """`count` processes of the service, one after the other, each with its own metrics port
    (the first one under cProfile with `profile`); stopped when `stack` closes."""
    from loyalnest.devstack.postgres import free_port

    return [
        stack.enter_context(
            server_process(
                service_process,
                module,
                settings | {"metrics_port": free_port()},
                profile if index == 0 else None,
            )
        )
        for index in range(count)
    ]


def run_benchmark(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    import aiohttp

    load_before = os.getloadavg()
    sizes = payload_sizes("x")
    seed = random.randrange(1 << 30)
    say("rule evaluation CPU per order, before/after the rules engine (bench orders) ...")
    cost = rule_cost.measure(seed)
    with (
        throwaway_root("loyalnest-bench-orders-", args.logs) as root,
        environment(args, root) as env,
        client_processes(args.clients, env.secret, seed) as clients,
        # Closed in reverse: Points, the watcher, Envoy, then the edge.
        contextlib.ExitStack() as servers,
    ):
        say("Points' schema and its copy of the programs (pending period 0) ...")
        seeded = asyncio.run(_seed_programs(env.database_url))
        # As deployed, every service has a credential: the edge and Points ask Auth whether a
        # webhook's merchant is installed (cached), and with pseudonyms on Points asks the edge.
        say(f"Auth (service tokens, merchant checks); the {len(SHOPS)} shops installed ...")
        master_key = os.urandom(32)
        auth = auth_settings(env, master_key)
        (auth_process,) = start_services(AUTH_MODULE, 1, auth, servers)
        asyncio.run(install_shops(auth, SHOPS))
        identities = ServiceIdentities(master_key, auth_process.address)
        say(f"edge: {args.workers} process(es) behind Envoy ...")
        edge = start_services(
            EDGE_MODULE,
            args.workers,
            edge_settings(args, env) | identities.settings("edge"),
            servers,
            args.profile_edge,
        )
        gateway = servers.enter_context(
            envoy_gateway(root, "orders", [s.address for s in edge], env.jwks_path)
        )
        url = gateway.url + f"/v1/api/webhooks/{TOPIC}"
        stack = Stack(env, clients, edge, [], gateway.pid, url)
        watcher = servers.enter_context(credit_watcher(env.redis_url))

        say(f"ingress only (Points not running): open loop {args.rate[0]:g}/s ...")
        ingress = _open_phase(stack, args.rate[0], args)

        def start_points() -> None:
            settings = service_settings(
                env,
                tracing=args.tracing,
                kafka_producer=args.kafka_producer,
                kafka_consumer=args.kafka_consumer,
            )
            if args.tiers_ab:
                # A program switch reaches Points within a second (production: 10 s).
                settings["points_program_cache_seconds"] = PROGRAM_CACHE_SECONDS
            # Every Points process asks the first edge process for pseudonyms (one target).
            settings |= identities.settings("points", edge_address=edge[0].address) | {
                "customer_pseudonyms": args.pseudonyms
            }
            stack.points += start_services(
                POINTS_MODULE, args.workers, settings, servers, args.profile_points
            )

        say(f"Points: {args.workers} process(es), catching up {len(ingress.scheduled)} orders ...")
        caught_up = catch_up(stack, watcher, list(ingress.scheduled), args, start_points)
        orders: list[OrdersResult] = []
        ab: list[OrdersResult] = []
        http_phases = [ingress]
        for rate in args.rate:
            say(f"orders: open loop {rate:g}/s ...")
            result, http = orders_phase(stack, watcher, rate, args)
            orders.append(result)
            http_phases.append(http)
        for pair in range(args.tiers_ab):
            # A/B/C/A/B/C at the first rate: plain, tiered and rules-only programs alternate,
            # so the machine's other load falls on all alike.
            for index, name in enumerate(AB_PROGRAMS):
                version = 2 + len(AB_PROGRAMS) * pair + index
                asyncio.run(_seed_programs(env.database_url, kind=name, version=version))
                time.sleep(PROGRAM_CACHE_SECONDS + 1)
                say(f"orders, {name} programs ({pair + 1}/{args.tiers_ab}) ...")
                result, http = orders_phase(stack, watcher, args.rate[0], args)
                result.label = f"{name} {args.rate[0]:g}/s #{pair + 1}"
                ab.append(result)
                http_phases.append(http)
        say("checking the ledger ...")
        check = verify(env, http_phases, watcher)
        floor: floor_consumer.FloorRun | None = None
        if args.floor and env.kafka is not None:
            from loyalnest.platform.events.topics import EDGE

            say("floor: a bare consumer applying the same webhook events ...")
            floor = floor_consumer.measure(
                env.kafka, EDGE.name, env.database_url, expected=check["accepted"]
            )
    head = orders[0]
    ratio = head.throughput / ingress.throughput if ingress.throughput else 0.0
    return {
        "cpu_count": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "grpc": grpc.__version__,
        "aiohttp": aiohttp.__version__,
        "uvloop": has_uvloop(),
        "envoy": envoy_version(),
        "workers": args.workers,
        "clients": args.clients,
        "rates": args.rate,
        "warmup_seconds": args.warmup,
        "duration_seconds": args.duration,
        "tracing": args.tracing,
        "kafka_producer": args.kafka_producer,
        "kafka_consumer": args.kafka_consumer,
        "pseudonyms": args.pseudonyms,
        "pg_durable": args.pg_durable,
        "programs_seeded": seeded,
        "payload_bytes": {
            "min": sizes[0],
            "median": sizes[len(sizes) // 2],
            "max": sizes[-1],
            "mean": round(sum(sizes) / len(sizes)),
        },
        "ingress": ingress.public(),
        "catch_up": asdict(caught_up),
        "orders": [asdict(r) for r in [*orders, *ab]],
        "tiers_ab": _tiers_ab(ab),
        "ratio_orders_to_ingress": ratio,
        "floor": None
        if floor is None
        else {
            "events": floor.events,
            "seconds": round(floor.seconds, 2),
            "per_second": round(floor.per_second),
            "us_per_event": round(floor.us_per_event),
        },
        "goals": {
            "rate": GOAL_RATE,
            "p99_ms": GOAL_P99_MS,
            "sustained": head.rate >= GOAL_RATE
            and head.throughput >= SUSTAINED_SHARE * head.rate
            and head.not_credited == 0,
            "p99_met": head.p99_ms < GOAL_P99_MS,
        },
        "correctness": check,
        "rule_cost": cost,
    }


def _tiers_ab(phases: Sequence[OrdersResult]) -> dict[str, Any] | None:
    """Points' CPU per order (us) of each A/B phase, and the medians' ratio."""
    if not phases:
        return None
    per_order: dict[str, list[float]] = {name: [] for name in AB_PROGRAMS}
    for phase in phases:
        points = phase.cpu_percent.get("points", 0.0)
        if phase.throughput:
            per_order[phase.label.split()[0]].append(points * 1e4 / phase.throughput)
    medians = {n: statistics.median(v) if v else math.nan for n, v in per_order.items()}
    plain = medians["plain"]
    return {
        "points_us_per_order": per_order,
        "median_us": medians,
        "ratio_to_plain": {n: m / plain if plain else math.nan for n, m in medians.items()},
    }


# ---------------------------------------------------------------------------------- reporting

CPU_COLUMNS = ("client", "envoy", "edge", "points", "postgres", "redis", "broker", "other")


def _per_order(cpu: dict[str, float], name: str, per_second: float) -> str:
    return f"{cpu[name] * 1e4 / per_second:.0f}" if cpu.get(name) and per_second else "-"


def _cpu_cells(cpu: dict[str, float]) -> str:
    return "".join(f"{cpu[c]:>9.0f}" if c in cpu else f"{'-':>9}" for c in CPU_COLUMNS)


def _failures(http: dict[str, Any]) -> int:
    return int(
        sum(v for k, v in http["statuses"].items() if k != "200")
        + sum(http["errors"].values())
        + http["outcomes"].get("duplicate", 0)
        + http["outcomes"].get("other", 0)
    )


def render(report: dict[str, Any]) -> str:
    sizes = report["payload_bytes"]
    load = " ".join(f"{x:.2f}" for x in report["loadavg_before"])
    load_after = " ".join(f"{x:.2f}" for x in report["loadavg_after"])
    lines = [
        f"cpus: {report['cpu_count']}   python {report['python']}   grpcio {report['grpc']}   "
        f"envoy {report['envoy']}   aiohttp {report['aiohttp']}"
        f"{' + uvloop' if report['uvloop'] else ''}",
        f"load average before: {load}   after: {load_after}",
        f"servers: {report['workers']} edge + {report['workers']} Points process(es), one Envoy; "
        f"tracing {'on' if report['tracing'] else 'off'}; producer {report['kafka_producer']}, "
        f"consumer {report['kafka_consumer']}; customer pseudonyms "
        f"{'on' if report['pseudonyms'] else 'off'}; Auth (tokens, merchant checks); PostgreSQL "
        f"{'durable (fsync on)' if report['pg_durable'] else 'fsync off'}; tansu; "
        f"pending period 0 (Points' copy seeded for {report['programs_seeded']} shops)",
        f"payload: signed {TOPIC}, {sizes['mean']} B mean ({sizes['min']}-{sizes['max']}), "
        "a new order and customer per delivery",
        f"client: {report['clients']} process(es), open loop; warm-up "
        f"{report['warmup_seconds']:g}s, measured {report['duration_seconds']:g}s per phase",
        "",
        f"{'phase':<20}{'done/s':>7}{'e2e p50':>8}{'p99':>7}{'max':>7}{'backlog':>8}"
        f"{'drain s':>8}{'http p50':>9}{'p99':>7}{'fail':>5} |cpu%"
        + "".join(f"{c:>9}" for c in CPU_COLUMNS)
        + f"{'edge us':>8}{'pts us':>7}",
    ]
    ingress = report["ingress"]
    cpu = ingress["cpu_percent"]
    lines.append(
        f"{'ingress ' + format(report['rates'][0], 'g') + '/s':<20}{ingress['throughput']:>7.0f}"
        f"{'-':>8}{'-':>7}{'-':>7}{'-':>8}{'-':>8}"
        f"{ingress['p50_ms']:>9.1f}{ingress['p99_ms']:>7.1f}{_failures(ingress):>5} |    "
        + _cpu_cells(cpu)
        + f"{_per_order(cpu, 'edge', ingress['throughput']):>8}{'-':>7}"
    )
    catch = report["catch_up"]
    cpu = catch["cpu_percent"]
    lines.append(
        f"{'points catch-up':<20}{catch['throughput']:>7.0f}{'-':>8}{'-':>7}{'-':>7}"
        f"{catch['orders'] - catch['credited']:>8}{'-':>8}{'-':>9}{'-':>7}{'-':>5} |    "
        + _cpu_cells(cpu)
        + f"{'-':>8}{_per_order(cpu, 'points', catch['throughput']):>7}"
    )
    for result in report["orders"]:
        http = result["http"]
        cpu = result["cpu_percent"]
        lines.append(
            f"{result['label']:<20}{result['throughput']:>7.0f}{result['p50_ms']:>8.0f}"
            f"{result['p99_ms']:>7.0f}{result['max_ms']:>7.0f}{result['backlog_at_end']:>8}"
            f"{result['drain_seconds']:>8.1f}{http['p50_ms']:>9.1f}{http['p99_ms']:>7.1f}"
            f"{_failures(http):>5} |    "
            + _cpu_cells(cpu)
            + f"{_per_order(cpu, 'edge', result['throughput']):>8}"
            f"{_per_order(cpu, 'points', result['throughput']):>7}"
        )
    for phase in [report["ingress"], *(r["http"] for r in report["orders"])]:
        if _failures(phase):
            lines.append(
                f"{'':<20}statuses {phase['statuses']} outcomes {phase['outcomes']} "
                f"errors {phase['errors']} first: {phase['first_failure'][:200]}"
            )
    head = report["orders"][0]
    goals = report["goals"]
    check = report["correctness"]

    def verdict(met: bool) -> str:
        return "met" if met else "NOT met"

    lines += [
        "",
        f"points catch-up: {catch['credited']} of {catch['orders']} backlog orders credited in "
        f"{catch['seconds']:.1f}s ({catch['wait_seconds']:.1f}s after Points was started)",
        f"ratio orders/ingress-only throughput at {head['rate']:g}/s: "
        f"{report['ratio_orders_to_ingress']:.2f}x",
        *(
            [
                f"floor (a bare consumer: envelope parsed, one INSERT per event, batch commit):"
                f" {floor['events']} events at {floor['per_second']}/s,"
                f" {floor['us_per_event']} us of CPU per event"
            ]
            if (floor := report.get("floor"))
            else []
        ),
        f"goal >= {goals['rate']:g} orders/s sustained: {head['throughput']:.0f}/s at "
        f"{head['rate']:g}/s offered, {head['backlog_at_end']} behind at the end "
        f"({verdict(goals['sustained'])})",
        f"goal p99 < {goals['p99_ms']:g} ms (webhook sent -> balance updated): "
        f"{head['p99_ms']:.0f} ms ({verdict(goals['p99_met'])})",
        f"correctness (all phases, warm-up included): {check['webhooks_sent']} webhooks sent, "
        f"{check['accepted']} accepted (200), {check['non_200']} other statuses, "
        f"{check['client_errors']} client errors",
        f"  ledger: {check['order_transactions']} order credits, "
        f"{check['duplicate_transactions']} duplicates, {check['orders_not_credited']} orders "
        f"not credited, {check['unexpected_credits']} unexpected; orders approved "
        f"{check['orders_approved']} of {check['orders_recorded']} recorded",
        f"  balance messages: {check['balance_messages']}, customers with more than one: "
        f"{check['customers_with_repeated_messages']}"
        + _repeats_described(check["repeated_messages"])
        + (f" (watcher: {check['watcher_error']})" if check["watcher_error"] else ""),
        f"  => {'OK' if check['ok'] else 'FAILED'}",
    ]
    ab = report.get("tiers_ab")
    if ab:
        lines.append("points CPU per order by program (phases alternated), us:")
        for name, values in ab["points_us_per_order"].items():
            lines.append(
                f"  {name:<6} {' '.join(f'{v:.0f}' for v in values)}; median "
                f"{ab['median_us'][name]:.0f} ({ab['ratio_to_plain'][name]:.2f}x plain)"
            )
    points_cpu = head["cpu_percent"].get("points")
    lines += rule_cost.render(
        report["rule_cost"],
        points_cpu * 1e4 / head["throughput"] if points_cpu and head["throughput"] else None,
    )
    return "\n".join(lines)


def _rates(text: str) -> list[float]:
    rates = [float(part) for part in text.split(",") if part.strip()]
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError("rates must be > 0")
    return rates


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rate",
        type=_rates,
        default=[GOAL_RATE],
        metavar="R[,R2,...]",
        help="open loop: orders/s; several (a ramp) run one orders phase each, the first is "
        "also the ingress-only baseline's rate and the headline",
    )
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=3.0, help="discarded seconds per phase")
    parser.add_argument(
        "--workers", type=int, default=1, help="processes of each service (edge and Points)"
    )
    parser.add_argument("--clients", type=int, default=1, help="HTTP client processes")
    parser.add_argument(
        "--tracing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="OpenTelemetry tracing in the services (production default: on)",
    )
    parser.add_argument(
        "--floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="last, the floor: a bare kafka-python consumer applying the same webhook events"
        " (one INSERT each), its CPU per event against Points' per order (floor_consumer.py)",
    )
    parser.add_argument(
        "--pg-durable",
        action="store_true",
        help="PostgreSQL with fsync and synchronous commit on (default: off, as in the tests)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for a phase's orders to be credited after its load",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON report instead")
    parser.add_argument(
        "--rule-cost-only",
        action="store_true",
        help="only the rule evaluation CPU per order, before/after the rules engine (no stack)",
    )
    parser.add_argument(
        "--logs", type=Path, metavar="DIR", help="copy the logs (Envoy, PostgreSQL, tansu) to DIR"
    )
    for service in ("edge", "points"):
        parser.add_argument(
            f"--profile-{service}",
            metavar="PATH",
            help=f"run the (first) {service} process under cProfile and write its stats to PATH "
            "(slows it down; read with `python -m pstats PATH`)",
        )
    parser.add_argument(
        "--tiers-ab",
        type=int,
        default=0,
        metavar="PAIRS",
        help="after the rates: PAIRS rounds of orders phases at the first rate, the shops' "
        "programs switched plain / tiered / rules only (tiered_program) before each: Points' "
        "CPU per order of each",
    )
    add_kafka_producer_option(parser)
    add_pseudonyms_option(parser)
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0 or args.workers < 1 or args.clients < 1:
        parser.error("--duration must be > 0, --workers/--clients >= 1, --warmup >= 0")
    args.broker = True  # environment(): tansu is part of the path under test
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)

    def say(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    if args.rule_cost_only:
        cost = rule_cost.measure()
        print(json.dumps(cost, indent=2) if args.json else "\n".join(rule_cost.render(cost)))
        return 0
    say("starting PostgreSQL, Valkey, tansu ...")
    report = run_benchmark(args, say)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0 if report["correctness"]["ok"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
