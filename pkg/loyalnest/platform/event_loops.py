"""The background loops of a service that keeps its outbox and processed events in PostgreSQL.

    if settings.events_enabled:
        components.background += postgres_event_loops(
            settings, database, service="users", group=events.CONSUMER_GROUP,
            handlers=events.handlers(store),
        )

They never affect health: while Kafka is away the relay retries with backoff and the outbox
grows (loyalnest_outbox_backlog), and RPCs go on, since events wait in the outbox.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.events import inbox
from loyalnest.platform.events.consumer import ConsumerRunner
from loyalnest.platform.events.outbox import PostgresOutbox
from loyalnest.platform.events.relay import OutboxRelay
from loyalnest.platform.postgres import Database

Loop = Callable[[], Coroutine[Any, Any, None]]


def postgres_event_loops(
    settings: ServiceSettings,
    database: Database,
    *,
    service: str,
    group: str,
    handlers: Mapping[str, inbox.Handler],
) -> list[Loop]:
    """Outbox relay, processed-events purge, and a consumer when there are handlers."""
    # Unique per process: brokers and logs tell the replicas apart.
    client_id = f"loyalnest-{service}-{os.getpid()}"
    loops: list[Loop] = [
        OutboxRelay(PostgresOutbox(database), settings, client_id=client_id).run,
        inbox.purge_loop(database, settings.processed_events_retention_seconds),
    ]
    if handlers:
        consumer = ConsumerRunner(settings, group=group, handlers=handlers, client_id=client_id)
        loops.append(consumer.run)
    return loops
