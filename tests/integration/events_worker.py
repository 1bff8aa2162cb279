"""What the event tests consume: points.earned applied to a test table, exactly once.

Also runnable as a separate consumer process that SIGKILLs itself mid-batch:

    python -m tests.integration.events_worker DATABASE_URL BOOTSTRAP GROUP KILL_AFTER
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from psycopg import AsyncConnection

from loyalnest.gen.events.v1 import points_pb2
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.events.consumer import ConsumerRunner, PermanentEventError
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import Handler, transactional
from loyalnest.platform.observability import configure_logging
from loyalnest.platform.postgres import Database, DatabaseSpec

SINK = DatabaseSpec(schema="event_sink", migration_dirs=())
# Not unique on purpose: an event applied twice would show as two rows.
EFFECTS_DDL = """
CREATE TABLE IF NOT EXISTS effects (
    applied_order bigint GENERATED ALWAYS AS IDENTITY,
    event_id      text   NOT NULL,
    customer_id   text   NOT NULL,
    sequence      bigint NOT NULL
)
"""
POISON_REASON = "poison"  # the handler fails on these every time
REJECT_REASON = "reject"  # the handler declares these permanently unprocessable


# Test-sized timeouts: group joins take about half the session timeout on tansu.
FAST_EVENTS: dict[str, Any] = {
    "kafka_session_timeout_seconds": 6,
    "kafka_connect_timeout_seconds": 2,
    "kafka_publish_timeout_seconds": 3,
    "events_retry_initial_seconds": 0.05,
    "events_retry_max_seconds": 1,
    "outbox_poll_interval_seconds": 0.02,
    "consumer_max_attempts": 3,
    # Small batches: several commits even in small tests, so crashes land between them.
    "consumer_batch_max_events": 10,
    # The rebalance timeout too: a member killed mid-batch (test_events' crash test) would
    # hold the next join up to Kafka's 5 minutes on our broker.
    "consumer_max_poll_interval_seconds": 10,
}


def event_settings(database_url: str, bootstrap_servers: str, **overrides: Any) -> ServiceSettings:
    return ServiceSettings(
        database_url=database_url,
        kafka_bootstrap_servers=bootstrap_servers,
        metrics_enabled=False,
        **{**FAST_EVENTS, **overrides},
    )


async def open_sink(settings: ServiceSettings) -> Database:
    """The sink schema: platform tables (outbox, processed_events) plus `effects`."""
    database = Database(settings, SINK)
    await database.open()
    await database.migrate()
    async with database.pool.connection() as conn:
        await conn.execute(EFFECTS_DDL)
    return database


def effect_handler(database: Database, *, kill_after: int | None = None) -> Handler:
    applied = 0

    async def apply(conn: AsyncConnection, event: ConsumedEvent) -> None:
        nonlocal applied
        earned = event.payload_as(points_pb2.PointsEarned)
        if earned.reason == POISON_REASON:
            raise ValueError("poison pill")
        if earned.reason == REJECT_REASON:
            raise PermanentEventError("rejected by the handler")
        await conn.execute(
            "INSERT INTO effects (event_id, customer_id, sequence) VALUES (%s, %s, %s)",
            (event.event_id, earned.customer_id, earned.sequence),
        )
        applied += 1
        if kill_after is not None and applied >= kill_after:
            # Inside the transaction, with earlier effects committed and their offsets
            # not yet: a crash in the middle of a batch.
            os.kill(os.getpid(), signal.SIGKILL)

    return transactional(database, apply)


async def _main(database_url: str, bootstrap: str, group: str, kill_after: int) -> None:
    settings = event_settings(database_url, bootstrap)
    configure_logging(settings, "events-worker")
    database = await open_sink(settings)
    runner = ConsumerRunner(
        settings,
        group=group,
        handlers={"points.earned": effect_handler(database, kill_after=kill_after)},
        client_id="events-worker",
    )
    try:
        await runner.run()
    finally:
        await database.close()


if __name__ == "__main__":
    url, servers, group_id, kill = sys.argv[1:5]
    asyncio.run(_main(url, servers, group_id, int(kill)))
