"""Leaderboard reads/s and rank updates/s with 1,000,000 customers on one merchant's board,
against a bare Redis loop on the same sorted set in the same run.

    .venv/bin/python bench/bench_gamification.py                  # 1,000,000 customers, 10 s each
    .venv/bin/python bench/bench_gamification.py --customers 100000 --duration 5 --json

One run: a throwaway PostgreSQL and Valkey; N customers' all-time scores written to
`gamification.leaderboard_rankings` (the record); the Gamification service in a child process
(page cache off, so every read reaches Redis). Then, each for `--duration` seconds after
`--warmup`, at `--concurrency` calls in flight:

1. **rebuild**: the first GetLeaderboard finds no board in Redis, is answered from
   PostgreSQL and starts rebuilding the board in the background (the time of that call, and
   until the board is in Redis);
2. **reads**: GetLeaderboard over gRPC (token verified, a random page of 20 among the first
   1,000 pages, and a random customer's own rank), vs. **bare ZREVRANGE**: the same page
   range straight from Redis with one client, no service;
3. **rank updates**: points.earned through the service's consumer handler (the event claimed,
   counters and three boards' scores in one PostgreSQL transaction, then the scores on
   Redis), vs. **bare ZADD** of a random customer's score.

Ratios are service ÷ bare, both measured here, now.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass

import grpc
import redis.asyncio as redis
from harness import server_process, service_process, throwaway_postgres, throwaway_root, valkey

from loyalnest.platform import pagination
from loyalnest.platform.auth.keys import KeySet
from loyalnest.platform.auth.tokens import TokenIssuer
from loyalnest.platform.config import ServiceSettings

MERCHANT = "bench-merchant"
PAGE_SIZE = 20
PAGES = 1000
KEYSET = KeySet.generate(local=True)
TOKEN_ISSUER = TokenIssuer(
    KEYSET, issuer=ServiceSettings().jwt_issuer, audience=ServiceSettings().jwt_audience
)


@dataclass
class Report:
    customers: int
    concurrency: int
    duration_seconds: float
    seed_seconds: float = 0.0
    first_read_seconds: float = 0.0
    rebuild_seconds: float = 0.0
    reads_per_second: float = 0.0
    bare_zrevrange_per_second: float = 0.0
    read_ratio: float = 0.0
    updates_per_second: float = 0.0
    bare_zadd_per_second: float = 0.0
    update_ratio: float = 0.0


async def closed_loop(
    call: Callable[[], Awaitable[object]], concurrency: int, warmup: float, duration: float
) -> float:
    """Calls per second of `concurrency` workers each calling `call` back to back."""
    counting = False
    done = 0
    stop_at = time.monotonic() + warmup + duration

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < stop_at:
            await call()
            if counting:
                done += 1

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    counting, started = True, time.monotonic()
    await asyncio.gather(*tasks)
    return done / (time.monotonic() - started)


async def seed(database_url: str, customers: int) -> float:
    from loyalnest.platform.postgres import Database
    from loyalnest.services.gamification.service import DATABASE

    database = Database(ServiceSettings(database_url=database_url), DATABASE)
    await database.open()
    try:
        await database.migrate()
        started = time.monotonic()
        async with database.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO leaderboard_rankings (merchant_id, period_key, customer_id, score)"
                " SELECT %s, 'all', 'c-' || g, (random() * 1000000)::bigint"
                " FROM generate_series(1, %s) g",
                (MERCHANT, customers),
            )
            await conn.execute("ANALYZE leaderboard_rankings")
        return time.monotonic() - started
    finally:
        await database.close()


async def measure_reads(
    address: str, redis_url: str, args: argparse.Namespace, report: Report
) -> None:
    from loyalnest.gen.gamification.v1 import gamification_pb2 as pb
    from loyalnest.gen.gamification.v1 import gamification_pb2_grpc
    from loyalnest.services.gamification.store.boards import BoardKeys

    token = TOKEN_ISSUER.mint(
        subject="bench", merchant_id=MERCHANT, permissions=["gamification:read"]
    )
    metadata = (("authorization", f"Bearer {token}"),)
    scope = f"leaderboard:{MERCHANT}:all_time:{PAGE_SIZE}"
    async with grpc.aio.insecure_channel(address) as channel:
        stub = gamification_pb2_grpc.GamificationServiceStub(channel)
        # The first read finds no board in Redis: it is answered from PostgreSQL and starts
        # the rebuild in the background; reads are measured once the board is in Redis.
        started = time.monotonic()
        first = await stub.GetLeaderboard(
            pb.GetLeaderboardRequest(page_size=PAGE_SIZE), metadata=metadata, timeout=60
        )
        report.first_read_seconds = time.monotonic() - started
        assert len(first.entries) == PAGE_SIZE, first
        built = BoardKeys(MERCHANT, "all").built
        client = redis.Redis.from_url(redis_url)
        try:
            while True:
                if await client.exists(built):
                    break
                await asyncio.sleep(0.2)
        finally:
            await client.aclose()
        report.rebuild_seconds = time.monotonic() - started

        async def read() -> None:
            offset = random.randrange(PAGES) * PAGE_SIZE
            request = pb.GetLeaderboardRequest(
                page_size=PAGE_SIZE,
                page_token=pagination.encode_page_token(scope, offset) if offset else "",
                customer_id=f"c-{random.randint(1, args.customers)}",
            )
            await stub.GetLeaderboard(request, metadata=metadata, timeout=30)

        report.reads_per_second = await closed_loop(
            read, args.concurrency, args.warmup, args.duration
        )


async def measure_bare(redis_url: str, args: argparse.Namespace, report: Report) -> None:
    from loyalnest.services.gamification.store.boards import BoardKeys

    keys = BoardKeys(MERCHANT, "all")
    client = redis.Redis.from_url(redis_url)
    try:

        async def zrevrange() -> None:
            offset = random.randrange(PAGES) * PAGE_SIZE
            await client.zrevrange(keys.listed, offset, offset + PAGE_SIZE - 1, withscores=True)

        report.bare_zrevrange_per_second = await closed_loop(
            zrevrange, args.concurrency, args.warmup, args.duration
        )

        async def zadd() -> None:
            customer = f"c-{random.randint(1, args.customers)}"
            await client.zadd(keys.ranked, {customer: random.randint(0, 1_000_000)})

        report.bare_zadd_per_second = await closed_loop(
            zadd, args.concurrency, args.warmup, args.duration
        )
    finally:
        await client.aclose()


async def measure_updates(
    database_url: str, redis_url: str, args: argparse.Namespace, report: Report
) -> None:
    from loyalnest.gen.events.v1 import points_pb2
    from loyalnest.platform.cache import client_from_url
    from loyalnest.platform.events.envelope import ConsumedEvent, new_event
    from loyalnest.platform.postgres import Database
    from loyalnest.services.gamification import consumers
    from loyalnest.services.gamification.events import CONSUMER_GROUP
    from loyalnest.services.gamification.leaderboards import Leaderboards
    from loyalnest.services.gamification.service import DATABASE
    from loyalnest.services.gamification.store.boards import RedisBoards
    from loyalnest.services.gamification.store.postgres import GamificationStore

    settings = ServiceSettings(database_url=database_url, db_pool_max_size=args.concurrency)
    database = Database(settings, DATABASE)
    await database.open()
    boards = RedisBoards(client_from_url(redis_url, timeout_seconds=5), page_cache_seconds=0)
    store = GamificationStore(database)
    on_points = consumers.handlers(database, store, Leaderboards(store, boards))["points.earned"]
    try:

        async def update() -> None:
            customer = f"c-{random.randint(1, args.customers)}"
            payload = points_pb2.PointsEarned(
                customer_id=customer,
                transaction_id=str(uuid.uuid4()),
                points=10,
                lifetime_earned_after=random.randint(0, 1_000_000),
                reason=f"order:{uuid.uuid4().int % 10**12}",
            )
            event = new_event(MERCHANT, payload)
            consumed = ConsumedEvent(
                envelope=event.envelope,
                spec=event.spec,
                payload=payload,
                consumer=CONSUMER_GROUP,
                topic=event.spec.topic.name,
                partition=0,
                offset=0,
            )
            await on_points(consumed)

        report.updates_per_second = await closed_loop(
            update, args.concurrency, args.warmup, args.duration
        )
    finally:
        await boards.close()
        await database.close()


def run(args: argparse.Namespace) -> Report:
    report = Report(args.customers, args.concurrency, args.duration)
    with (
        throwaway_root("loyalnest-bench-gamification-") as root,
        throwaway_postgres(root) as postgres,
        valkey(root) as redis_url,
    ):
        postgres.create_database("bench")
        database_url = postgres.url("bench")
        print(f"seeding {args.customers:,} customers...", file=sys.stderr, flush=True)
        report.seed_seconds = asyncio.run(seed(database_url, args.customers))
        jwks = root / "jwks.json"
        jwks.write_text(json.dumps(KEYSET.public_jwks()))
        settings = {
            "database_url": database_url,
            "redis_url": redis_url,
            "jwt_jwks_path": str(jwks),
            "grpc_port": 0,
            "metrics_port": 0,
            "events_enabled": False,
            "gamification_leaderboard_cache_seconds": 0,
            "gamification_redis_timeout_seconds": 30,
            "log_level": "WARNING",
        }
        with server_process(
            service_process, "loyalnest.services.gamification.service", settings
        ) as service:
            print("reads...", file=sys.stderr, flush=True)
            asyncio.run(measure_reads(service.address, redis_url, args, report))
        print("bare redis...", file=sys.stderr, flush=True)
        asyncio.run(measure_bare(redis_url, args, report))
        print("updates...", file=sys.stderr, flush=True)
        asyncio.run(measure_updates(database_url, redis_url, args, report))
    report.read_ratio = report.reads_per_second / max(report.bare_zrevrange_per_second, 1e-9)
    report.update_ratio = report.updates_per_second / max(report.bare_zadd_per_second, 1e-9)
    return report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds each")
    parser.add_argument("--warmup", type=float, default=2.0, help="discarded seconds each")
    parser.add_argument("--json", action="store_true", help="print a JSON report instead")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        report = run(args)
        if args.json:
            print(json.dumps(asdict(report), indent=2))
            return 0
        print(
            f"Gamification leaderboard, {report.customers:,} customers on one board,"
            f" {report.concurrency} in flight, {report.duration_seconds:.0f} s each\n"
            f"  seed (PostgreSQL)      {report.seed_seconds:8.1f} s\n"
            f"  first read (from PG)   {report.first_read_seconds:8.2f} s\n"
            f"  rebuild into Redis     {report.rebuild_seconds:8.1f} s\n"
            f"  GetLeaderboard         {report.reads_per_second:8.0f} reads/s\n"
            f"  bare ZREVRANGE         {report.bare_zrevrange_per_second:8.0f} /s"
            f"   ratio {report.read_ratio:.2f}x\n"
            f"  rank updates (handler) {report.updates_per_second:8.0f} updates/s\n"
            f"  bare ZADD              {report.bare_zadd_per_second:8.0f} /s"
            f"   ratio {report.update_ratio:.3f}x"
        )
        return 0
    return 130


if __name__ == "__main__":
    raise SystemExit(main())
