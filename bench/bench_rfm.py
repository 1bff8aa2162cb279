"""The nightly RFM rescore at scale: N customers with about 10 orders each for one merchant.

Generated orders are loaded with COPY into a throwaway PostgreSQL, each customer's facts are
aggregated from them in SQL (what the per-order path maintains incrementally), then
`loyalnest rfm rescore --merchant M` runs as its own process, twice: the first scoring (every
customer changes: history rows, group moves and one rfm.updated each) and a steady night (the
same data: nothing changes). Wall time and the process' peak RSS are reported for both, beside
a baseline measured in the same run on the same rows: three `ntile(5)` windows, the textbook
quintile query the rescore replaces (DESIGN §9).

    .venv/bin/python bench/bench_rfm.py --customers 100000          # ~1M orders
    .venv/bin/python bench/bench_rfm.py --customers 1000000         # the issue's size

Goal (issue 17): <= 60 s and <= 500 MB for 1M customers / 10M orders on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import throwaway_postgres, throwaway_root

from loyalnest.platform.tenancy import merchant_id_for_shop
from loyalnest.services.rfm.domain import EPOCH
from loyalnest.services.rfm.service import DATABASE

SHOP = "bench-rfm.myshopify.com"
HALF_LIFE_DAYS = 90.0
NOW = datetime(2026, 12, 1, tzinfo=UTC)
_BLOCK = 50_000


def load_orders(url: str, merchant: str, customers: int, orders_per_customer: float) -> int:
    """COPYs about customers * orders_per_customer orders (skewed: most customers order once
    or twice, a few many times), amounts 5-500, over the last three years."""
    rng = random.Random(17)
    written = 0
    order_id = 1
    with psycopg.connect(url, options="-c search_path=rfm") as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY orders (merchant_id, order_id, customer_id, placed_at, amount, currency)"
            " FROM STDIN"
        ) as copy:
            lines: list[str] = []
            for customer in range(customers):
                count = max(1, int(rng.expovariate(1 / orders_per_customer)))
                for _ in range(count):
                    placed = NOW - timedelta(seconds=rng.randrange(3 * 365 * 86400))
                    amount = rng.randrange(500, 50000) / 100
                    lines.append(
                        f"{merchant}\t{order_id}\tc{customer}\t{placed.isoformat()}\t{amount}\tUSD\n"
                    )
                    order_id += 1
                if len(lines) >= _BLOCK:
                    copy.write("".join(lines))
                    written += len(lines)
                    lines.clear()
            copy.write("".join(lines))
            written += len(lines)
        conn.commit()
    return written


def aggregate_facts(url: str, merchant: str) -> float:
    """Each customer's facts from their orders (as the per-order path leaves them)."""
    started = time.perf_counter()
    with psycopg.connect(url, options="-c search_path=rfm") as conn:
        conn.execute(
            """
            INSERT INTO customer_rfm (merchant_id, customer_id, orders, monetary, currency,
                                      first_order_at, last_order_at, activity_key)
            SELECT merchant_id, customer_id, count(*), sum(amount), 'USD',
                   min(placed_at), max(placed_at),
                   max(top) + ln(sum(power(2::float8, x - top))) / ln(2::float8)
            FROM (
                SELECT *, max(x) OVER (PARTITION BY customer_id) AS top FROM (
                    SELECT merchant_id, customer_id, amount, placed_at,
                           extract(epoch FROM placed_at - %s::timestamptz)::float8
                               / 86400 / %s AS x
                    FROM orders WHERE merchant_id = %s) o) t
            GROUP BY merchant_id, customer_id
            """,
            (EPOCH, HALF_LIFE_DAYS, merchant),
        )
        conn.execute(
            "INSERT INTO rfm_segment_counts (merchant_id, rfm_group, customers)"
            " SELECT %s, 'prospect', count(*) FROM customer_rfm WHERE merchant_id = %s",
            (merchant, merchant),
        )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE customer_rfm")
    return time.perf_counter() - started


def baseline_ntile(url: str, merchant: str) -> float:
    """Three ntile(5) windows over the same customers (the query the rescore replaces)."""
    started = time.perf_counter()
    with psycopg.connect(url, options="-c search_path=rfm") as conn:
        conn.execute(
            # sum(): every window's value is used, so none can be planned away.
            "SELECT sum(r + f + m) FROM (SELECT customer_id,"
            " ntile(5) OVER (ORDER BY activity_key) AS r,"
            " ntile(5) OVER (ORDER BY orders) AS f,"
            " ntile(5) OVER (ORDER BY monetary) AS m"
            " FROM customer_rfm WHERE merchant_id = %s) s",
            (merchant,),
        ).fetchone()
    return time.perf_counter() - started


def rescore(url: str, merchant: str) -> tuple[float, float, str]:
    """`loyalnest rfm rescore --merchant` in a process of its own: wall seconds, peak RSS
    (MiB, the process alone: getrusage of the waited child), its output."""
    env = {
        **os.environ,
        "LOYALNEST_DATABASE_URL": url,
        "LOYALNEST_RFM_HALF_LIFE_DAYS": str(HALF_LIFE_DAYS),
        "LOYALNEST_TRACING_ENABLED": "false",
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "loyalnest.cli", "rfm", "rescore", "--merchant", merchant],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest of any waited child: the rescore is the biggest.
    return wall, max(peak, before) / 1024, done.stdout.strip()


async def incremental(url: str, merchant: str, customers: int, orders: int) -> float:
    """Orders per second through the scorer: the webhook.received handler (one consumer, one
    event per transaction, as a partition's events are applied), on random existing customers
    against the cutoffs just computed."""
    from loyalnest.gen.events.v1 import gateway_pb2
    from loyalnest.platform.events.envelope import ConsumedEvent, new_event
    from loyalnest.platform.postgres import Database
    from loyalnest.services.rfm import consumers, events
    from loyalnest.services.rfm.service import RfmSettings, parts

    settings = RfmSettings(database_url=url, rfm_half_life_days=HALF_LIFE_DAYS)
    database = Database(settings, DATABASE)
    await database.open()
    rng = random.Random(9)
    try:
        scores, live, nightly = parts(settings, database, lambda: NOW)
        handler = consumers.handlers(scores, nightly, live, clock=lambda: NOW)["webhook.received"]
        started = time.perf_counter()
        for n in range(orders):
            order = gateway_pb2.ShopifyOrder(
                order_id=f"inc-{n}",
                customer_id=f"c{rng.randrange(customers)}",
                currency="USD",
                line_items=[gateway_pb2.ShopifyLineItem(price="25.00", quantity=1)],
            )
            order.created_time.FromDatetime(NOW)
            payload = gateway_pb2.WebhookReceived(
                topic="orders/create", payload_version=2, order=order
            )
            event = new_event(merchant, payload)
            await handler(
                ConsumedEvent(
                    envelope=event.envelope,
                    spec=event.spec,
                    payload=payload,
                    consumer=events.CONSUMER_GROUP,
                    topic=event.spec.topic.name,
                    partition=0,
                    offset=n,
                )
            )
        elapsed = time.perf_counter() - started
        await live.close()
    finally:
        await database.close()
    return orders / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--orders-per-customer", type=float, default=10.0)
    parser.add_argument(
        "--incremental-orders", type=int, default=2000, help="orders fed through the scorer"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    merchant = merchant_id_for_shop(SHOP)
    report: dict[str, object] = {"customers": args.customers}
    with throwaway_root("loyalnest-bench-rfm-") as root, throwaway_postgres(root) as postgres:
        postgres.create_database("bench")
        url = postgres.url("bench")
        DATABASE.migrate(url)
        started = time.perf_counter()
        report["orders"] = load_orders(url, merchant, args.customers, args.orders_per_customer)
        report["load_copy_s"] = round(time.perf_counter() - started, 1)
        report["facts_s"] = round(aggregate_facts(url, merchant), 1)
        report["baseline_ntile_s"] = round(baseline_ntile(url, merchant), 2)
        for run in ("first", "steady"):
            wall, rss, out = rescore(url, merchant)
            report[f"rescore_{run}_s"] = round(wall, 2)
            report[f"rescore_{run}_peak_rss_mib"] = round(rss)
            report[f"rescore_{run}_output"] = out
        with psycopg.connect(url, options="-c search_path=rfm") as conn:
            row = conn.execute("SELECT count(*) FROM outbox").fetchone()
            report["rfm_updated_events"] = row[0] if row else 0
        report["incremental_orders_per_s"] = round(
            asyncio.run(incremental(url, merchant, args.customers, args.incremental_orders))
        )
    report["ratio_first_to_ntile"] = round(
        float(report["rescore_first_s"]) / float(report["baseline_ntile_s"]),
        2,  # type: ignore[arg-type]
    )
    report["ratio_steady_to_ntile"] = round(
        float(report["rescore_steady_s"]) / float(report["baseline_ntile_s"]),
        2,  # type: ignore[arg-type]
    )
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:32} {value}")


if __name__ == "__main__":
    main()
