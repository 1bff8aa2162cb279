"""CPU per order of Points' apply path for orders/create, no pending period, alone.

    .venv/bin/python bench/order_credit_cost.py [--orders 2000] [--rounds 3] [--concurrency 6]
        [--variant NAME=PKG_DIR ...] [--program plain|rules|tiers ...] [--json]

`bench_orders.py` measures Points' CPU per order end to end, with Kafka, gRPC and the other
engineers' work on the same two cores moving it by 10-25% between runs. This measures only
what a store change moves: `OrderEarnings.record` (the program from the process memo, the
order row, the ledger credit with its idempotency key and points.earned in the outbox, the
approval) against a throwaway PostgreSQL (fsync off), `--concurrency` orders in flight (the
consumer applies six partitions in parallel), no Redis (the balance publish is the same in
every variant). Per order: this process's CPU (all threads, /proc), PostgreSQL's (postmaster
and backends), and the transactions committed (`pg_stat_database.xact_commit`).

`--variant NAME=PKG_DIR` (repeatable) runs the measurement in a child process importing
`loyalnest` from PKG_DIR (e.g. a `git archive` of main in /tmp), so two versions of the code
are compared in the same run, rounds alternating A, B, A, B, ...; default: this tree only.

`--program` (repeatable, default plain): bench_orders' programs (`tiered_program()`): plain
(the default rate), rules (the history rules, no tiers), tiers (the rules and VIP tiers; each
order is followed by what Points' consumer does with its points.earned, `VipTiers.evaluate`).
Rounds alternate over variants x programs. `statements` per order: the statements Points
sent (psycopg's execute, counted in the child).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from harness import (
    descendants,
    postmaster_pid,
    proc_cpu_seconds,
    throwaway_postgres,
    throwaway_root,
)

HERE = Path(__file__).resolve().parent
MERCHANT = "bench-order-credit"


async def measure(
    url: str, orders: int, concurrency: int, warmup: int, kind: str = "plain"
) -> dict[str, float]:
    """In the child: `orders` new orders recorded and credited, `concurrency` at a time."""
    import psycopg
    import structlog
    from bench_orders import tiered_program

    from loyalnest.gen.events.v1 import core_pb2, gateway_pb2
    from loyalnest.platform.events.envelope import decode
    from loyalnest.platform.postgres import Database
    from loyalnest.platform.program_settings import default_program
    from loyalnest.services.points.earning import OrderEarnings, ProgramCopies
    from loyalnest.services.points.ledger import Ledger
    from loyalnest.services.points.service import DATABASE, PointsSettings
    from loyalnest.services.points.store.postgres import PostgresLedgerStore
    from loyalnest.services.points.tiers import VipTiers

    sent = [0]
    # AsyncConnection.execute goes through AsyncCursor.execute; executemany is a statement
    # per row's parameters in one pipeline: counted once (one round trip).
    for name in ("execute", "executemany"):
        original = getattr(psycopg.AsyncCursor, name)

        def counted(self: Any, *a: Any, _original: Any = original, **k: Any) -> Any:
            sent[0] += 1
            return _original(self, *a, **k)

        setattr(psycopg.AsyncCursor, name, counted)

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    database = Database(PointsSettings(database_url=url), DATABASE)
    await database.open()
    try:
        await database.migrate()
        store = PostgresLedgerStore(database)
        program: core_pb2.ProgramSettings = (
            default_program() if kind == "plain" else tiered_program(kind == "tiers")
        )
        program.version = 1
        program.pending_period.FromTimedelta(timedelta(0))
        # A merchant per program: the store keeps the first copy of a version it is given.
        merchant = f"{MERCHANT}-{kind}"
        await store.save_program_settings(merchant, 1, program.SerializeToString())
        ledger = Ledger(store, None)
        programs = ProgramCopies(ledger, cache_seconds=600.0)
        earnings = OrderEarnings(ledger, programs)
        tiers = VipTiers(ledger, programs)
        run = uuid.uuid4().hex[:8]

        async def worker(first: int, count: int, step: int) -> None:
            for i in range(first, count, step):
                order = gateway_pb2.ShopifyOrder(
                    order_id=f"{run}-{i}",
                    customer_id=f"{run}-c{i}",  # a new customer per order, as in bench_orders
                    currency="USD",
                    line_items=[gateway_pb2.ShopifyLineItem(quantity=2, price="25.00")],
                )
                if not await earnings.record(merchant, order):
                    raise RuntimeError("order recorded before")

        async def consumer(events: list[Any], first: int, step: int) -> None:
            for event in events[first::step]:
                await tiers.on_ledger_event(event)

        def earned_since(outbox_id: int) -> tuple[int, list[Any]]:
            """The points.earned enqueued after `outbox_id`, as Points' consumer gets them
            (read outside the measurement: Kafka delivers them)."""
            options = f"-c search_path={DATABASE.schema}"
            with psycopg.connect(url, autocommit=True, options=options) as conn:
                rows = conn.execute(
                    "SELECT id, envelope FROM outbox WHERE id > %s"
                    " AND event_type = 'points.earned' ORDER BY id",
                    (outbox_id,),
                ).fetchall()
                last = conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()
            assert last is not None
            records = [
                SimpleNamespace(
                    topic="points", partition=0, offset=i, key=None, value=bytes(e), headers=()
                )
                for i, e in rows
            ]
            return int(last[0]), [decode(r, "points") for r in records]

        async def batch(offset: int, count: int) -> None:
            await asyncio.gather(
                *(worker(offset + w, offset + count, concurrency) for w in range(concurrency))
            )

        async def consume(events: list[Any]) -> None:
            # Points' consumer of the orders' points.earned: the liability table and the tier
            # (the tier only here: the liability table is the same for every program).
            await asyncio.gather(*(consumer(events, w, concurrency) for w in range(concurrency)))

        def commits() -> int:
            with psycopg.connect(url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
                ).fetchone()
            assert row is not None
            return int(row[0])

        outbox_id, _ = earned_since(0)
        await batch(0, warmup)
        if kind == "tiers":
            outbox_id, events = earned_since(outbox_id)
            await consume(events)
        pg_pids = lambda: descendants(int(os.environ["BENCH_POSTMASTER"]))  # noqa: E731
        await asyncio.sleep(0.6)  # pg_stat_database is updated at most every 500 ms
        commits_before = commits()
        pg_before = sum(proc_cpu_seconds(pid) for pid in pg_pids())
        cpu_before = proc_cpu_seconds(os.getpid())
        sent_before = sent[0]
        loop = asyncio.get_running_loop()
        started = loop.time()
        await batch(warmup, orders)
        elapsed = loop.time() - started
        cpu = proc_cpu_seconds(os.getpid()) - cpu_before
        statements = sent[0] - sent_before
        pg_cpu = sum(proc_cpu_seconds(pid) for pid in pg_pids()) - pg_before
        if kind == "tiers":
            outbox_id, events = earned_since(outbox_id)
            assert len(events) == orders, len(events)
            pg_before = sum(proc_cpu_seconds(pid) for pid in pg_pids())
            cpu_before = proc_cpu_seconds(os.getpid())
            sent_before = sent[0]
            started = loop.time()
            await consume(events)
            elapsed += loop.time() - started
            cpu += proc_cpu_seconds(os.getpid()) - cpu_before
            statements += sent[0] - sent_before
            pg_cpu += sum(proc_cpu_seconds(pid) for pid in pg_pids()) - pg_before
        await asyncio.sleep(0.6)
        committed = commits() - commits_before - 2  # the two commits() sessions' own reads
        return {
            "points_us": cpu / orders * 1e6,
            "postgres_us": pg_cpu / orders * 1e6,
            "wall_us": elapsed / orders * 1e6,
            "commits_per_order": committed / orders,
            "statements_per_order": statements / orders,
        }
    finally:
        await database.close()


def child(args: argparse.Namespace) -> None:
    report = asyncio.run(
        measure(args.child, args.orders, args.concurrency, args.warmup, args.program[0])
    )
    print(json.dumps(report))


def run_variant(
    pkg: str | None, url: str, postmaster: int, args: argparse.Namespace, kind: str
) -> dict[str, float]:
    env = {**os.environ, "BENCH_POSTMASTER": str(postmaster)}
    if pkg is not None:
        env["PYTHONPATH"] = pkg
    command = [
        sys.executable,
        str(HERE / "order_credit_cost.py"),
        "--child",
        url,
        "--orders",
        str(args.orders),
        "--concurrency",
        str(args.concurrency),
        "--warmup",
        str(args.warmup),
        "--program",
        kind,
    ]
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    report: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000, help="measured orders per round")
    parser.add_argument("--warmup", type=int, default=300, help="unmeasured orders first")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per variant")
    parser.add_argument("--concurrency", type=int, default=6, help="orders in flight")
    parser.add_argument(
        "--variant", action="append", default=[], help="NAME=PKG_DIR (loyalnest from there)"
    )
    parser.add_argument(
        "--program", action="append", choices=("plain", "rules", "tiers"), help="(repeatable)"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.program = args.program or ["plain"]
    if args.child:
        child(args)
        return
    trees: list[tuple[str, str | None]] = [
        (name, pkg) for name, _, pkg in (v.partition("=") for v in args.variant)
    ] or [("this tree", None)]
    variants = [
        (f"{name}/{kind}" if len(args.program) > 1 else name, pkg, kind)
        for name, pkg in trees
        for kind in args.program
    ]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in variants}
    with throwaway_root("loyalnest-bench-credit-") as root, throwaway_postgres(root) as pg:
        postmaster = postmaster_pid(root / "data")
        assert postmaster is not None
        pg.create_database("bench")
        url = pg.url("bench")
        for round_ in range(args.rounds):
            for name, pkg, kind in variants:
                report = run_variant(pkg, url, postmaster, args, kind)
                results[name].append(report)
                if not args.json:
                    print(
                        f"round {round_ + 1} {name:>12}: Points {report['points_us']:7.0f} us,"
                        f" PostgreSQL {report['postgres_us']:6.0f} us,"
                        f" wall {report['wall_us']:6.0f} us,"
                        f" {report['commits_per_order']:.2f} commits,"
                        f" {report['statements_per_order']:.2f} statements per order",
                        flush=True,
                    )
    summary: dict[str, Any] = {
        name: {
            key: statistics.median(r[key] for r in reports)
            for key in (
                "points_us",
                "postgres_us",
                "wall_us",
                "commits_per_order",
                "statements_per_order",
            )
        }
        for name, reports in results.items()
    }
    if args.json:
        print(json.dumps({"rounds": results, "median": summary}, indent=2))
        return
    print(f"\nmedians, {args.rounds} rounds of {args.orders} orders, {args.concurrency} in flight:")
    base = next(iter(summary.values()))
    for name, figures in summary.items():
        print(
            f"  {name:>12}: Points {figures['points_us']:.0f} us"
            f" ({figures['points_us'] / base['points_us']:.2f}x),"
            f" PostgreSQL {figures['postgres_us']:.0f} us"
            f" ({figures['postgres_us'] / base['postgres_us']:.2f}x),"
            f" {figures['commits_per_order']:.2f} commits,"
            f" {figures['statements_per_order']:.2f} statements per order"
        )


if __name__ == "__main__":
    main()
