"""Cost as data grows (issue 15 item 4): Points' reads and writes on a big ledger vs an empty one.

    .venv/bin/python bench/bench_scale.py [--customers 1000000] [--transactions 10000000]
                                          [--samples 400] [--long-history 5000] [--json]

One run, one throwaway PostgreSQL (fsync off, as the tests), two databases migrated alike:

- `empty`: only the customers the measurement touches (`--sample-customers`, 10 earns each,
  and one customer with `--long-history` transactions);
- `big`: the same, plus one merchant's `--customers` customers with `--transactions` ledger
  transactions between them, loaded with COPY (the load time is printed).

Then, for each database in turn, the real Points service in a spawned process (production
defaults: interceptors, tracing, token verification; no Redis, so every balance read reaches
PostgreSQL, which is what grows) and one sequential gRPC client measuring p50/p99 of
GetPointsBalance, EarnPoints, RedeemPoints, ListTransactions (first page and a deep page through
page tokens) and GetPointsBalance with points expiry on (which reads the customer's history),
and, in this process against the same database, the order consumer's apply path
(`OrderEarnings.record`: an orders/create credited). The ratio big/empty of each is printed;
the goal is <= 1.5x. See README.md "Cost as data grows".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from harness import (
    exit_on_sigterm,
    percentile,
    server_process,
    service_process,
    throwaway_postgres,
    throwaway_root,
)

from loyalnest.platform.auth.keys import KeySet
from loyalnest.platform.auth.tokens import TokenIssuer
from loyalnest.platform.config import ServiceSettings

KEYSET = KeySet.generate(local=True)
TOKEN_ISSUER = TokenIssuer(
    KEYSET, issuer=ServiceSettings().jwt_issuer, audience=ServiceSettings().jwt_audience
)
MERCHANT = "bench-scale-merchant"
LONG_CUSTOMER = "long-history"
# As long a history, but a redemption every tenth transaction spends the balance (few open lots).
REDEEMER = "long-redeemer"
EARN = 10  # points per seeded transaction
GOAL = 1.5
COPY_BATCH = 20_000
HISTORY_START = datetime(2025, 1, 1, tzinfo=UTC)


# ------------------------------------------------------------------------------------ seeding


def _history_rows(
    id_base: int, customer_id: str, count: int, out: list[str], first_sequence: int = 1
) -> int:
    """COPY text rows of `count` earns for one customer (two years apart at most)."""
    step = max(1, 2 * 365 * 86400 // max(count, 1))
    balance = earned = redeemed = 0
    for sequence in range(first_sequence, first_sequence + count):
        at = HISTORY_START + timedelta(seconds=step * (sequence - 1))
        kind, points = "earn", EARN
        if customer_id == REDEEMER and sequence % 10 == 0:
            kind, points = "redeem", EARN - balance  # one lot's worth stays
        balance += points
        earned += max(points, 0)
        redeemed -= min(points, 0)
        out.append(
            f"{id_base + sequence:032x}\t{MERCHANT}\t{customer_id}\t{sequence}\t{kind}\t{points}\t"
            f"seed\t{balance}\t{earned}\t{redeemed}\t{at.isoformat()}\t\n"
        )
    return count


async def seed(
    database_url: str, customers: list[tuple[str, int]], *, id_prefix: int
) -> tuple[int, float]:
    """COPYs `customers` (id, transaction count) into the ledger: (transactions, seconds)."""
    import psycopg

    started = time.perf_counter()
    total = 0
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        # The rows are consistent by construction: skip the per-row foreign key triggers.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("SET search_path = points")
        async with conn.cursor() as cursor:
            async with cursor.copy(
                "COPY ledgers (merchant_id, customer_id, balance, lifetime_earned,"
                " lifetime_redeemed, last_sequence) FROM STDIN"
            ) as copy:
                batch: list[str] = []
                for customer_id, count in customers:
                    points = EARN * count
                    earned, redeemed = points, 0
                    if customer_id == REDEEMER:  # as _history_rows: spent every tenth
                        rows: list[str] = []
                        _history_rows(0, customer_id, count, rows)
                        last = rows[-1].split("\t")
                        points, earned, redeemed = int(last[7]), int(last[8]), int(last[9])
                    batch.append(
                        f"{MERCHANT}\t{customer_id}\t{points}\t{earned}\t{redeemed}\t{count}\n"
                    )
                    if len(batch) >= COPY_BATCH:
                        await copy.write("".join(batch))
                        batch.clear()
                await copy.write("".join(batch))
            async with cursor.copy(
                "COPY points_transactions (transaction_id, merchant_id, customer_id, sequence,"
                " type, points, reason, balance_after, lifetime_earned_after,"
                " lifetime_redeemed_after, created_at, rule_id) FROM STDIN"
            ) as copy:
                rows: list[str] = []
                for index, (customer_id, count) in enumerate(customers):
                    # Transaction ids ascend with the load order: the uuid index is appended to.
                    total += _history_rows(
                        (id_prefix << 96) + (index << 32), customer_id, count, rows
                    )
                    if len(rows) >= COPY_BATCH:
                        await copy.write("".join(rows))
                        rows.clear()
                await copy.write("".join(rows))
        await conn.execute("ANALYZE ledgers")
        await conn.execute("ANALYZE points_transactions")
    return total, time.perf_counter() - started


def bulk_customers(customers: int, transactions: int) -> list[tuple[str, int]]:
    """The merchant's other customers: transactions spread evenly (at least one each)."""
    per, extra = divmod(transactions, customers)
    return [(f"c{i:08d}", max(1, per + (1 if i < extra else 0))) for i in range(customers)]


async def migrate(database_url: str) -> None:
    from loyalnest.platform.postgres import Database
    from loyalnest.services.points.service import DATABASE, PointsSettings

    database = Database(PointsSettings(database_url=database_url), DATABASE)
    await database.open()
    try:
        await database.migrate()
    finally:
        await database.close()


async def set_program(database_url: str, *, expiry_days: int, version: int) -> None:
    """Points' copy of the merchant's program (what Core's settings event leaves there)."""
    import psycopg

    from loyalnest.gen.events.v1 import core_pb2

    program = core_pb2.ProgramSettings(
        program_enabled=True,
        points_per_currency_unit="1",
        points_expiry_days=expiry_days,
        points_expiry_notice_days=30 if expiry_days else 0,
    )
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO points.program_settings_copies (merchant_id, version, settings)"
            " VALUES (%s, %s, %s) ON CONFLICT (merchant_id) DO UPDATE"
            " SET version = excluded.version, settings = excluded.settings",
            (MERCHANT, version, program.SerializeToString()),
        )


# ------------------------------------------------------------------------------ measurement


Timed = Callable[[int], Awaitable[Any]]


async def timed(samples: int, calls: dict[str, Timed]) -> dict[str, dict[str, float]]:
    """Sequential calls (one in flight), alternating between the databases call by call so
    that the machine's other load hits both alike: p50/p99 in ms each, after a warm-up."""
    for i in range(min(20, samples)):
        for call in calls.values():
            await call(-1 - i)
    latencies: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(samples):
        for name, call in calls.items():
            start = time.perf_counter()
            await call(i)
            latencies[name].append((time.perf_counter() - start) * 1000)
    found = {}
    for name, values in latencies.items():
        values.sort()
        found[name] = {
            "p50_ms": percentile(values, 0.50),
            "p99_ms": percentile(values, 0.99),
            "n": float(samples),
        }
    return found


def points_settings(database_url: str, jwks_path: Path) -> dict[str, Any]:
    return {
        "grpc_port": 0,
        "metrics_enabled": False,
        "database_url": database_url,
        "redis_url": None,  # no balance cache: every read reaches the ledger
        "jwt_jwks_path": str(jwks_path),
        "events_enabled": False,
        "points_ledger_store": "postgres",
        "access_log": False,
        "tracing_enabled": True,
        "otel_exporter_otlp_endpoint": None,
        "shutdown_grace_seconds": 1.0,
        "log_level": "WARNING",
        "log_format": "console",
        # The program copy read on every call, so the expiry switch applies at once.
        "points_program_cache_seconds": 0.0,
        "call_target_template": "unix:///nonexistent/loyalnest-{service}.sock",
    }


Results = dict[str, dict[str, dict[str, float]]]  # operation -> database -> figures


async def measure_rpcs(
    targets: dict[str, tuple[str, str]], sample_ids: list[str], samples: int, deep_pages: int
) -> Results:
    """`targets`: database name -> (Points address, database URL)."""
    from loyalnest.gen.points.v1 import points_pb2 as pb
    from loyalnest.gen.points.v1 import points_pb2_grpc

    token = TOKEN_ISSUER.mint(
        subject="bench", merchant_id=MERCHANT, permissions=["points:read", "points:write"]
    )
    metadata = (("authorization", f"Bearer {token}"),)
    run_id = uuid.uuid4().hex[:8]
    channels = {name: grpc.aio.insecure_channel(address) for name, (address, _) in targets.items()}
    stubs = {name: points_pb2_grpc.PointsServiceStub(c) for name, c in channels.items()}
    results: Results = {}
    try:
        # The same customer sequence for both databases.
        rngs = {name: random.Random(15) for name in targets}

        def per_db(make: Callable[[str, Any, random.Random], Timed]) -> dict[str, Timed]:
            return {name: make(name, stubs[name], rngs[name]) for name in targets}

        def balance(name: str, stub: Any, rng: random.Random) -> Timed:
            async def call(i: int) -> None:
                await stub.GetPointsBalance(
                    pb.GetPointsBalanceRequest(customer_id=rng.choice(sample_ids)),
                    metadata=metadata,
                )

            return call

        def earn(name: str, stub: Any, rng: random.Random) -> Timed:
            async def call(i: int) -> None:
                await stub.EarnPoints(
                    pb.EarnPointsRequest(
                        customer_id=rng.choice(sample_ids),
                        points=1,
                        reason="bench",
                        idempotency_key=f"e-{run_id}-{i}",
                    ),
                    metadata=metadata,
                )

            return call

        def redeem(name: str, stub: Any, rng: random.Random) -> Timed:
            async def call(i: int) -> None:
                await stub.RedeemPoints(
                    pb.RedeemPointsRequest(
                        customer_id=rng.choice(sample_ids),
                        points=1,
                        reason="bench",
                        idempotency_key=f"r-{run_id}-{i}",
                    ),
                    metadata=metadata,
                )

            return call

        def page(token_of: dict[str, str]) -> Callable[[str, Any, random.Random], Timed]:
            def make(name: str, stub: Any, rng: random.Random) -> Timed:
                async def call(i: int) -> None:
                    await stub.ListTransactions(
                        pb.ListTransactionsRequest(
                            customer_id=LONG_CUSTOMER, page_size=50, page_token=token_of[name]
                        ),
                        metadata=metadata,
                    )

                return call

            return make

        def balance_of(customer_id: str) -> Callable[[str, Any, random.Random], Timed]:
            def make(name: str, stub: Any, rng: random.Random) -> Timed:
                async def call(i: int) -> None:
                    await stub.GetPointsBalance(
                        pb.GetPointsBalanceRequest(customer_id=customer_id), metadata=metadata
                    )

                return call

            return make

        long_balance = balance_of(LONG_CUSTOMER)

        # A deep page's token: walk `deep_pages` pages of the long history once.
        deep: dict[str, str] = {}
        for name, stub in stubs.items():
            token_deep = ""
            for _ in range(deep_pages):
                response = await stub.ListTransactions(
                    pb.ListTransactionsRequest(
                        customer_id=LONG_CUSTOMER, page_size=50, page_token=token_deep
                    ),
                    metadata=metadata,
                )
                token_deep = response.next_page_token
            deep[name] = token_deep

        results["GetPointsBalance"] = await timed(samples, per_db(balance))
        results["EarnPoints"] = await timed(samples, per_db(earn))
        results["RedeemPoints"] = await timed(samples, per_db(redeem))
        first = dict.fromkeys(targets, "")
        results["ListTransactions first page"] = await timed(samples, per_db(page(first)))
        results[f"ListTransactions page {deep_pages + 1}"] = await timed(
            samples, per_db(page(deep))
        )
        results["GetPointsBalance long history"] = await timed(samples, per_db(long_balance))
        for _, url in targets.values():
            await set_program(url, expiry_days=365, version=2)
        results["GetPointsBalance +expiry"] = await timed(samples, per_db(balance))
        results["GetPointsBalance +expiry long history"] = await timed(
            max(20, samples // 10), per_db(long_balance)
        )
        results["GetPointsBalance +expiry long, redeeming"] = await timed(
            samples, per_db(balance_of(REDEEMER))
        )
        for _, url in targets.values():
            await set_program(url, expiry_days=0, version=3)
    finally:
        for channel in channels.values():
            await channel.close()
    return results


async def measure_order_credit(
    urls: dict[str, str], sample_ids: list[str], samples: int
) -> dict[str, dict[str, float]]:
    """The consumer's apply path for orders/create, in this process on each database."""
    from loyalnest.gen.events.v1 import gateway_pb2
    from loyalnest.platform.postgres import Database
    from loyalnest.services.points.earning import OrderEarnings, ProgramCopies
    from loyalnest.services.points.ledger import Ledger
    from loyalnest.services.points.service import DATABASE, PointsSettings
    from loyalnest.services.points.store.postgres import PostgresLedgerStore

    run_id = uuid.uuid4().hex[:8]
    databases = {
        name: Database(PointsSettings(database_url=url), DATABASE) for name, url in urls.items()
    }
    for database in databases.values():
        await database.open()
    try:
        calls: dict[str, Timed] = {}
        for name, database in databases.items():
            ledger = Ledger(PostgresLedgerStore(database), None)
            orders = OrderEarnings(ledger, ProgramCopies(ledger, cache_seconds=10.0))
            rng = random.Random(21)

            def credit(orders: OrderEarnings = orders, rng: random.Random = rng) -> Timed:
                async def call(i: int) -> None:
                    order = gateway_pb2.ShopifyOrder(
                        order_id=f"o-{run_id}-{i}",
                        customer_id=rng.choice(sample_ids),
                        currency="USD",
                        line_items=[gateway_pb2.ShopifyLineItem(quantity=1, price="25.00")],
                    )
                    if not await orders.record(MERCHANT, order):
                        raise RuntimeError("order recorded before")

                return call

            calls[name] = credit()
        return await timed(samples, calls)
    finally:
        for database in databases.values():
            await database.close()


EXPLAINED = {
    "ListTransactions deep page": (
        "SELECT * FROM points.points_transactions WHERE merchant_id = %s AND customer_id = %s"
        " AND sequence < %s ORDER BY sequence DESC LIMIT 51"
    ),
    "GetPointsBalance": (
        "SELECT * FROM points.ledgers WHERE merchant_id = %s AND customer_id = %s"
    ),
}


async def explain(url: str, long_history: int, deep_pages: int) -> dict[str, str]:
    """EXPLAIN ANALYZE of the reads whose cost could grow with the table, on `url`."""
    import psycopg

    plans = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for name, query in EXPLAINED.items():
            params: tuple[Any, ...] = (MERCHANT, LONG_CUSTOMER)
            if "sequence <" in query:
                params += (long_history - 50 * deep_pages,)
            cursor = await conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query}", params)
            plans[name] = "\n".join(row[0] for row in await cursor.fetchall())
    return plans


# ----------------------------------------------------------------------------------- the run


async def run(args: argparse.Namespace, postgres: Any, root: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"cpus": os.cpu_count(), "args": vars(args)}
    jwks_path = root / "jwks.json"
    jwks_path.write_text(json.dumps(KEYSET.public_jwks()))
    sample_ids = [f"s{i:05d}" for i in range(args.sample_customers)]
    measured = [(c, 10) for c in sample_ids] + [
        (LONG_CUSTOMER, args.long_history),
        (REDEEMER, args.long_history),
    ]
    urls = {}
    for name in ("empty", "big"):
        postgres.create_database(name)
        urls[name] = postgres.url(name)
        await migrate(urls[name])
        await seed(urls[name], measured, id_prefix=1)
        await set_program(urls[name], expiry_days=0, version=1)
    print(f"seeding {args.customers:,} customers / {args.transactions:,} transactions ...")
    loaded, seconds = await seed(
        urls["big"], bulk_customers(args.customers, args.transactions), id_prefix=2
    )
    report["load"] = {"transactions": loaded, "customers": args.customers, "seconds": seconds}
    print(f"loaded {loaded:,} transactions in {seconds:.0f} s (COPY + ANALYZE)")
    with (
        server_process(
            service_process,
            "loyalnest.services.points.service",
            points_settings(urls["empty"], jwks_path),
        ) as empty,
        server_process(
            service_process,
            "loyalnest.services.points.service",
            points_settings(urls["big"], jwks_path),
        ) as big,
    ):
        targets = {"empty": (empty.address, urls["empty"]), "big": (big.address, urls["big"])}
        results = await measure_rpcs(targets, sample_ids, args.samples, args.deep_pages)
    results["order credit (consumer apply)"] = await measure_order_credit(
        urls, sample_ids, args.samples
    )
    report["plans"] = await explain(urls["big"], args.long_history, args.deep_pages)
    report["results"] = results
    return report


def print_report(report: dict[str, Any]) -> None:
    load = report["load"]
    print(
        f"\ncpus {report['cpus']}; big ledger: {load['customers']:,} customers,"
        f" {load['transactions']:,} transactions, loaded in {load['seconds']:.0f} s"
    )
    print(
        f"{'operation':40} {'empty p50':>9} {'p99':>7} {'big p50':>8} {'p99':>7}"
        f" {'ratio p50':>9} {'p99':>6}"
    )
    for name, found in report["results"].items():
        e, b = found["empty"], found["big"]
        r50, r99 = b["p50_ms"] / e["p50_ms"], b["p99_ms"] / e["p99_ms"]
        flag = "" if max(r50, r99) <= GOAL else "  > 1.5x"
        print(
            f"{name:40} {e['p50_ms']:9.2f} {e['p99_ms']:7.2f} {b['p50_ms']:8.2f}"
            f" {b['p99_ms']:7.2f} {r50:8.2f}x {r99:5.2f}x{flag}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--transactions", type=int, default=10_000_000)
    parser.add_argument("--sample-customers", type=int, default=2_000)
    parser.add_argument("--long-history", type=int, default=5_000)
    parser.add_argument(
        "--deep-pages", type=int, default=40, help="pages walked for the deep token"
    )
    parser.add_argument("--samples", type=int, default=400, help="calls per operation")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        with throwaway_root("loyalnest-bench-scale-") as root, throwaway_postgres(root) as pg:
            report = asyncio.run(run(args, pg, root))
    except KeyboardInterrupt:
        return 130
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_report(report)
        for name, plan in report["plans"].items():
            print(f"\nEXPLAIN ANALYZE ({name}, big):\n{plan}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
