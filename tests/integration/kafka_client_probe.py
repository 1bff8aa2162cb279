"""A process relaying and consuming events on the Kafka clients its environment selects
(LOYALNEST_KAFKA_PRODUCER / LOYALNEST_KAFKA_CONSUMER), reporting which client libraries it
imported. test_kafka_producers.py runs it: a process on librdkafka must not load
kafka-python (its memory is the point of the choice), nor one on kafka-python librdkafka.

    python -m tests.integration.kafka_client_probe DATABASE_URL BOOTSTRAP GROUP COUNT
"""

from __future__ import annotations

import asyncio
import json
import sys

from loyalnest.gen.events.v1 import points_pb2
from loyalnest.platform.events import outbox
from loyalnest.platform.events.consumer import ConsumerRunner
from loyalnest.platform.events.outbox import PostgresOutbox
from loyalnest.platform.events.relay import OutboxRelay
from tests.integration.events_worker import effect_handler, event_settings, open_sink


async def _main(database_url: str, bootstrap: str, group: str, count: int) -> dict[str, object]:
    settings = event_settings(database_url, bootstrap)
    database = await open_sink(settings)
    try:
        async with database.pool.connection() as conn, conn.transaction():
            for n in range(count):
                earned = points_pb2.PointsEarned(customer_id=f"c{n % 3}", sequence=n, points=1)
                await outbox.enqueue(conn, "m-probe", earned)
        relay = OutboxRelay(PostgresOutbox(database), settings, client_id="probe-relay")
        runner = ConsumerRunner(
            settings,
            group=group,
            handlers={"points.earned": effect_handler(database)},
            client_id="probe",
        )
        tasks = [asyncio.ensure_future(relay.run()), asyncio.ensure_future(runner.run())]
        applied = 0
        try:
            for _ in range(600):  # 60 s
                async with database.pool.connection() as conn:
                    cursor = await conn.execute("SELECT count(DISTINCT event_id) FROM effects")
                    row = await cursor.fetchone()
                applied = row[0] if row else 0
                if applied >= count:
                    break
                await asyncio.sleep(0.1)
        finally:
            runner.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await database.close()
    return {
        "applied": applied,
        "kafka_python": "kafka" in sys.modules,
        "librdkafka": "confluent_kafka" in sys.modules,
    }


if __name__ == "__main__":
    url, servers, group_id, events = sys.argv[1:5]
    print(json.dumps(asyncio.run(_main(url, servers, group_id, int(events)))))
