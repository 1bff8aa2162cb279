"""The occasions job (`loyalnest points occasions`) over a big merchant's ledgers.

N ledgers for one merchant, opened on random days of the last three years, are COPYed into a
throwaway PostgreSQL with an ANNIVERSARY rule in the merchant's program; the job then runs for
a day twice, as the CronJob would: the first run credits the day's anniversaries (about N/365
ledger postings), the rerun replays them (nothing twice). Beside them, a baseline in the same
run on the same rows: one SQL query counting the day's anniversaries (what a scan cannot beat).
Birthdays come from Users (one RPC per 100 customers) and are not part of this figure.

    .venv/bin/python bench/bench_occasions.py --ledgers 100000
    .venv/bin/python bench/bench_occasions.py --ledgers 1000000    # the issue's size

Goal (issue 21, as for the tier and expiry jobs): 1,000,000 customers within 2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import throwaway_postgres, throwaway_root

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.platform.program_settings import default_program
from loyalnest.services.points.service import DATABASE, PointsSettings, credit_occasions

MERCHANT = "bench-occasions"
DAY = date(2026, 12, 6)
_BLOCK = 100_000


def load_ledgers(url: str, ledgers: int) -> None:
    rng = random.Random(21)
    start = datetime(2023, 12, 6, tzinfo=UTC)
    span = (datetime.combine(DAY, datetime.min.time(), UTC) - start).total_seconds()
    with psycopg.connect(url, options="-c search_path=points") as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY ledgers (merchant_id, customer_id, balance, lifetime_earned, created_at)"
            " FROM STDIN"
        ) as copy:
            for index in range(ledgers):
                opened = start + timedelta(seconds=rng.random() * span)
                copy.write_row((MERCHANT, f"c{index:08d}", 10, 10, opened))
        program = default_program()
        program.version = 1
        program.earning_rules.add(
            rule_id="anniv", enabled=True, type=core_pb2.EARNING_RULE_TYPE_ANNIVERSARY, points=25
        )
        cur.execute(
            "INSERT INTO program_settings_copies (merchant_id, version, settings)"
            " VALUES (%s, 1, %s)",
            (MERCHANT, program.SerializeToString()),
        )
        cur.execute("ANALYZE ledgers")


def baseline(url: str) -> tuple[int, float]:
    started = time.perf_counter()
    with psycopg.connect(url, options="-c search_path=points") as conn:
        row = conn.execute(
            "SELECT count(*) FROM ledgers WHERE merchant_id = %s AND created_at < %s"
            " AND to_char(created_at AT TIME ZONE 'UTC', 'MM-DD') = %s",
            (MERCHANT, datetime(DAY.year, 1, 1, tzinfo=UTC), DAY.strftime("%m-%d")),
        ).fetchone()
    assert row is not None
    return int(row[0]), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledgers", type=int, default=100_000)
    args = parser.parse_args()
    with throwaway_root("loyalnest-bench-occasions-") as root, throwaway_postgres(root) as pg:
        pg.create_database("bench")
        url = pg.url("bench")
        DATABASE.migrate(url)
        started = time.perf_counter()
        load_ledgers(url, args.ledgers)
        print(f"loaded {args.ledgers} ledgers in {time.perf_counter() - started:.1f} s")
        expected, base = baseline(url)
        settings = PointsSettings(
            database_url=url, call_target_template="unix:///nonexistent/{service}.sock"
        )
        runs = []
        for name in ("first run", "rerun"):
            started = time.perf_counter()
            report = asyncio.run(credit_occasions(settings, DAY))
            seconds = time.perf_counter() - started
            runs.append(seconds)
            print(
                f"{name}: {seconds:.1f} s, {report.awarded} credited, {report.replayed} replayed"
                f" ({seconds / base:.0f}x the baseline)"
            )
            assert report.awarded + report.replayed == expected, (report, expected)
        print(f"baseline (one SQL count of the {expected} anniversaries): {base:.2f} s")


if __name__ == "__main__":
    main()
