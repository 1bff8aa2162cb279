"""The outbox relay's CPU per event, kafka-python vs librdkafka (`kafka_producer`), same run.

    .venv/bin/python bench/bench_relay.py    # 3 rounds x 2 producers x 2 batch sizes
    .venv/bin/python bench/bench_relay.py --events 3000 --rounds 2 --batch 10,100

One throwaway PostgreSQL and tansu. Per round and producer: `--events` points.earned rows are
put in an outbox (not measured), then one OutboxRelay drains them in batches of `--batch`
rows (`outbox_batch_size`; at 100 webhooks/s the edge's relay finds ~10 rows per poll) and
the process' CPU time (every thread: asyncio, psycopg, the producer's Python or C threads)
is divided by the events published. Producers alternate round by round, so the machine's
other load hits both alike; compare the ratio, not the absolute figures.

`--paced R`: the relay as a service runs it (`OutboxRelay.run`, polling) while rows arrive at
R per second, one per transaction as webhooks commit them, for `--seconds`; per producer: CPU
per event (the enqueuing included, the same for both) and the delay from a row's commit to
the claim that sent it (`sent_at - created_at`).

Then `--idle` seconds of an idle edge process as deployed (relay and consumer in process, no
traffic) per client (producer and consumer on it), CPU and RSS: what the Kafka clients cost
when nothing happens, a fixed cost that a service pays per second whatever its rate.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import proc_cpu_seconds, server_process, service_process, throwaway_root
from ingress import EDGE_MODULE, edge_settings, environment

from loyalnest.gen.events.v1 import points_pb2 as points_events
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.events import outbox
from loyalnest.platform.events.outbox import PostgresOutbox
from loyalnest.platform.events.relay import OutboxRelay
from loyalnest.platform.postgres import Database, DatabaseSpec

PRODUCERS = ("kafka-python", "confluent")
SPEC = DatabaseSpec(schema="bench_relay", migration_dirs=())


async def _fill(database: Database, events: int) -> None:
    async with database.pool.connection() as conn, conn.transaction():
        for index in range(events):
            payload = points_events.PointsEarned(
                customer_id=f"c{index % 500}", sequence=index, points=10, reason="bench"
            )
            await outbox.enqueue(conn, "bench-merchant", payload)


async def _round(settings: ServiceSettings, database: Database, events: int) -> float:
    """CPU microseconds per event for one drain of `events` rows."""
    await _fill(database, events)
    relay = OutboxRelay(PostgresOutbox(database), settings, client_id="bench-relay")
    # Connect and create topics outside the measurement: one publish of the first batch.
    published = await relay.relay_batch()
    start = time.process_time()
    while published < events:
        published += await relay.relay_batch()
    used = time.process_time() - start
    await relay._publisher.close()
    return 1e6 * used / max(1, events - settings.outbox_batch_size)


async def _main(args: argparse.Namespace, database_url: str, kafka: str) -> dict[str, Any]:
    results: dict[str, list[float]] = {}
    for batch in args.batch:
        for _ in range(args.rounds):
            for producer in PRODUCERS:
                settings = ServiceSettings(
                    database_url=database_url,
                    kafka_bootstrap_servers=kafka,
                    metrics_enabled=False,
                    kafka_producer=producer,
                    outbox_batch_size=batch,
                    outbox_lanes_per_batch=64,
                )
                database = Database(settings, SPEC)
                await database.open()
                await database.migrate()
                try:
                    cost = await _round(settings, database, args.events)
                finally:
                    await database.close()
                results.setdefault(f"{producer} batch {batch}", []).append(cost)
                print(f"  {producer:12} batch {batch:4}: {cost:7.0f} us/event", flush=True)
    return results


async def _paced_round(
    settings: ServiceSettings, database: Database, rate: float, seconds: float
) -> tuple[float, float, float, int]:
    """(CPU us per event, p50 ms, p99 ms, events) for rows arriving at `rate` per second."""
    relay = OutboxRelay(PostgresOutbox(database), settings, client_id="bench-relay")
    # Connect the producer and check the topic outside the measurement: one row published.
    await _fill(database, 1)
    while await relay.relay_batch() == 0:
        pass
    async with database.pool.connection() as conn:
        cursor = await conn.execute("SELECT coalesce(max(id), 0) FROM outbox")
        row = await cursor.fetchone()
    first_id = int(row[0]) if row else 0
    task = asyncio.ensure_future(relay.run())
    start_cpu, start = time.process_time(), time.monotonic()
    sent = 0
    while (due := start + sent / rate) < start + seconds:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        async with database.pool.connection() as conn, conn.transaction():
            payload = points_events.PointsEarned(customer_id=f"c{sent % 500}", sequence=sent)
            await outbox.enqueue(conn, "bench-merchant", payload)
        sent += 1
    while True:
        async with database.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND id > %s", (first_id,)
            )
            row = await cursor.fetchone()
        if row is not None and row[0] == 0:
            break
        await asyncio.sleep(0.01)
    used = time.process_time() - start_cpu
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    async with database.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP"
            " (ORDER BY extract(epoch FROM sent_at - created_at))"
            " FROM outbox WHERE id > %s",
            (first_id,),
        )
        row = await cursor.fetchone()
    p50, p99 = row[0] if row else (0.0, 0.0)
    return 1e6 * used / sent, 1000 * p50, 1000 * p99, sent


async def _paced(args: argparse.Namespace, database_url: str, kafka: str) -> None:
    results: dict[str, list[tuple[float, float, float, int]]] = {}
    for _ in range(args.rounds):
        for producer in PRODUCERS:
            settings = ServiceSettings(
                database_url=database_url,
                kafka_bootstrap_servers=kafka,
                metrics_enabled=False,
                kafka_producer=producer,
            )
            database = Database(settings, SPEC)
            await database.open()
            await database.migrate()
            try:
                result = await _paced_round(settings, database, args.paced, args.seconds)
            finally:
                await database.close()
            results.setdefault(producer, []).append(result)
            cost, p50, p99, sent = result
            print(
                f"  {producer:12}: {cost:6.0f} us/event,"
                f" commit -> claimed p50 {p50:6.1f} ms p99 {p99:6.1f} ms ({sent} events)",
                flush=True,
            )
    print(f"\npaced {args.paced:g}/s  {'producer':12} {'median us/event':>16}")
    base = statistics.median(r[0] for r in results[PRODUCERS[0]])
    for producer, rounds in results.items():
        cost = statistics.median(r[0] for r in rounds)
        p99 = statistics.median(r[2] for r in rounds)
        print(f"{'':13}{producer:12} {cost:16.0f}  {cost / base:5.2f}x  p99 {p99:.0f} ms")


def _idle_cpu(args: argparse.Namespace, env: Any, producer: str) -> tuple[float, float]:
    """CPU percent of one core used by an idle edge process over `args.idle` seconds, and its
    RSS (MiB) then; its producer and consumers on the one client."""
    args.kafka_producer = args.kafka_consumer = producer
    with server_process(service_process, EDGE_MODULE, edge_settings(args, env)) as edge:
        time.sleep(5.0)  # connected, group joined, topics created
        before, start = proc_cpu_seconds(edge.pid), time.monotonic()
        time.sleep(args.idle)
        cpu = 100 * (proc_cpu_seconds(edge.pid) - before) / (time.monotonic() - start)
        return cpu, _rss_mib(edge.pid)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=lambda v: [int(b) for b in v.split(",")], default=[10, 100])
    parser.add_argument("--idle", type=float, default=20.0, help="seconds; 0: skip")
    parser.add_argument("--paced", type=float, default=0.0, help="rows/s; 0: skip")
    parser.add_argument("--seconds", type=float, default=10.0, help="paced: seconds per round")
    args = parser.parse_args()
    args.pg_durable, args.broker, args.tracing = False, True, True
    idle: dict[str, list[tuple[float, float]]] = {}
    with throwaway_root("loyalnest-bench-relay-") as root, environment(args, root) as env:
        assert env.kafka is not None
        if args.paced > 0:
            asyncio.run(_paced(args, env.database_url, env.kafka))
            return
        results = asyncio.run(_main(args, env.database_url, env.kafka))
        for _ in range(2 if args.idle > 0 else 0):
            for producer in PRODUCERS:
                idle.setdefault(producer, []).append(_idle_cpu(args, env, producer))
                cpu, rss = idle[producer][-1]
                print(f"  idle edge, {producer:12}: {cpu:5.1f}% of a core, RSS {rss:.0f} MiB")
    print(f"\n{'producer':28} {'median us/event':>16}  rounds")
    medians = {name: statistics.median(costs) for name, costs in results.items()}
    for name, costs in results.items():
        print(f"{name:28} {medians[name]:16.0f}  {', '.join(f'{c:.0f}' for c in costs)}")
    for batch in args.batch:
        ratio = medians[f"confluent batch {batch}"] / medians[f"kafka-python batch {batch}"]
        print(f"batch {batch}: confluent / kafka-python CPU per event = {ratio:.2f}x")
    for producer, shares in idle.items():
        print(
            f"idle edge process, {producer}: {', '.join(f'{x:.1f}' for x, _ in shares)}% of a"
            f" core, RSS {', '.join(f'{r:.0f}' for _, r in shares)} MiB"
        )


if __name__ == "__main__":
    main()
