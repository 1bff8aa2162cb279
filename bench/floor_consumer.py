"""The floor of the order path's consumer: the least a Python consumer does to apply an event
durably, to set Points' CPU per order against (bench_orders.py runs it last).

A kafka-python consumer in a process of its own reads a topic from the start in a group of
its own, parses each record's envelope, INSERTs its event id and payload in PostgreSQL (one
statement per event, one transaction per fetched batch), then commits the batch's offsets:
at-least-once with the dedupe in the INSERT, as a consumer must. No earning rules, no ledger,
no outbox, no relay, no cache: Points' distance to it is its own work.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection

from harness import proc_cpu_seconds

FLOOR_TABLE = "bench_floor_events"
POLL_TIMEOUT_MS = 500


@dataclass(frozen=True)
class FloorRun:
    events: int
    seconds: float  # first record to the last batch committed
    cpu_seconds: float  # the consumer process's, all threads

    @property
    def us_per_event(self) -> float:
        return self.cpu_seconds * 1e6 / self.events if self.events else 0.0

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def consume(
    bootstrap: str, topic: str, database_url: str, expected: int, timeout: float
) -> FloorRun:
    import psycopg
    from kafka import KafkaConsumer

    from loyalnest.gen.events.v1 import envelope_pb2

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} (event_id text PRIMARY KEY, payload bytea)"
        )
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap.split(","),
        group_id=f"bench-floor-{os.getpid()}",
        client_id="bench-floor",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    insert = f"INSERT INTO {FLOOR_TABLE} VALUES (%s, %s) ON CONFLICT DO NOTHING"
    events = 0
    started: float | None = None
    cpu_started = 0.0
    deadline = time.monotonic() + timeout
    try:
        with psycopg.connect(database_url) as conn:
            while events < expected and time.monotonic() < deadline:
                batches = consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
                if not batches:
                    continue
                if started is None:
                    started, cpu_started = time.monotonic(), proc_cpu_seconds(os.getpid())
                with conn.transaction():
                    for records in batches.values():
                        for record in records:
                            envelope = envelope_pb2.Envelope.FromString(record.value)
                            conn.execute(
                                insert, (envelope.event_id, envelope.payload.value), prepare=True
                            )
                            events += 1
                consumer.commit()
        finished, cpu_finished = time.monotonic(), proc_cpu_seconds(os.getpid())
    finally:
        consumer.close()
    if started is None:
        return FloorRun(0, 0.0, 0.0)
    return FloorRun(events, finished - started, cpu_finished - cpu_started)


def measure(
    bootstrap: str, topic: str, database_url: str, expected: int, timeout: float = 120.0
) -> FloorRun:
    """Runs `consume` in a spawned process of its own (its CPU is the consumer's alone)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=floor_process,
        args=(sender, bootstrap, topic, database_url, expected, timeout),
        name="bench-floor-consumer",
    )
    process.start()
    try:
        if not receiver.poll(timeout + 30):
            raise RuntimeError("the floor consumer did not report")
        run: FloorRun | str = receiver.recv()
        if isinstance(run, str):
            raise RuntimeError(f"the floor consumer failed:\n{run}")
        return run
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()


def floor_process(
    result: Connection, bootstrap: str, topic: str, database_url: str, expected: int, timeout: float
) -> None:
    """Child process entry point: `consume`, its FloorRun (or the traceback) sent on `result`."""
    try:
        result.send(consume(bootstrap, topic, database_url, expected, timeout))
    except BaseException as exc:
        result.send("".join(traceback.format_exception(exc)))
        raise SystemExit(1) from None
