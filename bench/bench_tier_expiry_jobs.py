"""The VIP tier job (`loyalnest points tiers`) and the expiry job (`loyalnest points expire`)
over a big merchant's ledgers (issue 21 item 6: 1,000,000 customers within 2 minutes each).

N customers of one merchant, each with a ledger and one earn of 1-500 points, are COPYed into a
throwaway PostgreSQL with the merchant's program (tiers Silver 100 / Gold 300 on points earned
in the calendar year, 30 days' grace; points expire 365 days after earned, 14 days' notice).
As on a day the CronJobs run:

    tiers    every customer already holds the tier their points give (the job ran yesterday),
             except 1 % whose Gold term ended 40 days ago (past the grace) with fewer points:
             the first run downgrades them (a write and a tier.changed each), the rerun finds
             nothing; the baseline is one SQL statement summing every customer's points;
    expiry   1 % of the earns are older than 365 days: the first run expires them (a ledger
             transaction each), the rerun finds nothing due; the baseline is one SQL count of
             the lots past their life.

    .venv/bin/python bench/bench_tier_expiry_jobs.py --customers 100000
    .venv/bin/python bench/bench_tier_expiry_jobs.py --customers 1000000 --job tiers
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import throwaway_postgres, throwaway_root

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.platform.program_settings import default_program
from loyalnest.services.points.service import (
    DATABASE,
    PointsSettings,
    expire_points,
    recalculate_tiers,
)

MERCHANT = "bench-jobs"
NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
YEAR_END = datetime(2027, 1, 1, tzinfo=UTC)


def tier_of(points: int) -> str:
    return "gold" if points >= 300 else "silver" if points >= 100 else ""


def load(url: str, customers: int) -> tuple[int, int]:
    """The ledgers; (downgrades due, lots expired) as the data is built."""
    rng = random.Random(21)
    due = expired = 0
    with psycopg.connect(url, options="-c search_path=points") as conn, conn.cursor() as cur:
        rows = []
        for index in range(customers):
            customer = f"c{index:08d}"
            points = rng.randint(1, 500)
            old = rng.random() < 0.01  # earned over a year ago: expires, counts for no tier
            earned_at = (
                NOW - timedelta(days=400 + rng.random() * 30)
                if old
                else YEAR_START
                + timedelta(seconds=rng.random() * (NOW - YEAR_START).total_seconds())
            )
            expired += old
            tier = "" if old else tier_of(points)
            term_end: datetime | None = YEAR_END if tier else None
            if not old and tier != "gold" and rng.random() < 0.01:
                # Gold reached last year; this year's points are short of it, 40 days past
                # the term: due for a downgrade (the 30 days' grace are over).
                tier, term_end = "gold", NOW - timedelta(days=40)
                due += 1
            rows.append((customer, points, earned_at, tier, term_end))
        with cur.copy(
            "COPY ledgers (merchant_id, customer_id, balance, lifetime_earned, last_sequence,"
            " created_at) FROM STDIN"
        ) as copy:
            for customer, points, earned_at, _, _ in rows:
                copy.write_row((MERCHANT, customer, points, points, 1, earned_at))
        with cur.copy(
            "COPY points_transactions (transaction_id, merchant_id, customer_id, sequence, type,"
            " points, reason, balance_after, lifetime_earned_after, lifetime_redeemed_after,"
            " created_at) FROM STDIN"
        ) as copy:
            for customer, points, earned_at, _, _ in rows:
                copy.write_row(
                    (
                        uuid.UUID(int=rng.getrandbits(128)),
                        MERCHANT,
                        customer,
                        1,
                        "earn",
                        points,
                        "order:bench",
                        points,
                        points,
                        0,
                        earned_at,
                    )
                )
        with cur.copy(
            "COPY customer_tiers (merchant_id, customer_id, tier_id, qualifying, term_end,"
            " changed_at) FROM STDIN"
        ) as copy:
            for customer, points, earned_at, tier, term_end in rows:
                copy.write_row((MERCHANT, customer, tier, points, term_end, earned_at))
        program = default_program()
        program.version = 1
        program.vip_metric = core_pb2.VIP_METRIC_POINTS_EARNED
        program.vip_term = core_pb2.VIP_TERM_CALENDAR_YEAR
        program.vip_grace_days = 30
        program.vip_tiers.add(tier_id="silver", name="Silver", threshold=100)
        program.vip_tiers.add(tier_id="gold", name="Gold", threshold=300)
        program.points_expiry_days = 365
        program.points_expiry_mode = core_pb2.POINTS_EXPIRY_MODE_AFTER_EARNED
        program.points_expiry_notice_days = 14
        cur.execute(
            "INSERT INTO program_settings_copies (merchant_id, version, settings)"
            " VALUES (%s, 1, %s)",
            (MERCHANT, program.SerializeToString()),
        )
        cur.execute("ANALYZE")
    return due, expired


def baseline(url: str, statement: str, *params: object) -> float:
    started = time.perf_counter()
    with psycopg.connect(url, options="-c search_path=points") as conn:
        conn.execute(statement, (MERCHANT, *params)).fetchall()
    return time.perf_counter() - started


TIER_BASELINE = (
    "SELECT count(*) FROM (SELECT customer_id, sum(points) FROM points_transactions"
    " WHERE merchant_id = %s AND type = 'earn' GROUP BY customer_id) s"
)
EXPIRY_BASELINE = (
    "SELECT count(*) FROM points_transactions WHERE merchant_id = %s AND type = 'earn'"
    " AND created_at < %s"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--job", choices=("tiers", "expiry", "both"), default="both")
    args = parser.parse_args()
    with throwaway_root("loyalnest-bench-jobs-") as root, throwaway_postgres(root) as pg:
        pg.create_database("bench")
        url = pg.url("bench")
        DATABASE.migrate(url)
        started = time.perf_counter()
        due, expired = load(url, args.customers)
        print(f"loaded {args.customers} customers in {time.perf_counter() - started:.1f} s")
        settings = PointsSettings(
            database_url=url, call_target_template="unix:///nonexistent/{service}.sock"
        )
        if args.job in ("tiers", "both"):
            base = baseline(url, TIER_BASELINE)
            for name in ("first run", "rerun"):
                started = time.perf_counter()
                changed = asyncio.run(recalculate_tiers(settings, clock=lambda: NOW))
                seconds = time.perf_counter() - started
                print(
                    f"tiers {name}: {seconds:.1f} s, {changed} changed"
                    f" ({seconds / base:.0f}x the baseline)"
                )
                assert changed == (due if name == "first run" else 0), (changed, due)
            print(f"tiers baseline (one SQL sum per customer): {base:.2f} s")
        if args.job in ("expiry", "both"):
            base = baseline(url, EXPIRY_BASELINE, NOW - timedelta(days=365))
            for name in ("first run", "rerun"):
                started = time.perf_counter()
                report = asyncio.run(expire_points(settings, clock=lambda: NOW))
                seconds = time.perf_counter() - started
                print(
                    f"expiry {name}: {seconds:.1f} s, {report.expired_customers} expired"
                    f" ({seconds / base:.0f}x the baseline)"
                )
                assert report.expired_customers == (expired if name == "first run" else 0), (
                    report,
                    expired,
                )
            print(f"expiry baseline (one SQL count of the lots past their life): {base:.2f} s")


if __name__ == "__main__":
    main()
