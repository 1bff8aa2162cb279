"""What a service that keeps its state (outbox and processed events included) in PostgreSQL
runs besides its servicers (`mongo_event_loops`: the same for state in MongoDB). Most
services need only `postgres_service`:

    return postgres_service(
        settings, database, service="users", group=events.CONSUMER_GROUP,
        handlers=consumers.handlers(store), registrations=[...], cleanup=[cache.close],
    )

They never affect health: while Kafka is away the relay retries with backoff and the outbox
grows (loyalnest_outbox_backlog), and RPCs go on, since events wait in the outbox.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from loyalnest.platform import audit
from loyalnest.platform.audit.shipper import AuditShipper
from loyalnest.platform.client import ServiceTokens
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.events import inbox, pseudonyms
from loyalnest.platform.events.consumer import ConsumerRunner
from loyalnest.platform.events.outbox import PostgresOutbox
from loyalnest.platform.events.pseudonym_client import remote_pseudonyms
from loyalnest.platform.events.pseudonyms import PseudonymBackend, Pseudonymizer, Resolver
from loyalnest.platform.events.relay import OutboxRelay, report_backlog_forever
from loyalnest.platform.health import Check
from loyalnest.platform.postgres import Database
from loyalnest.platform.server import Registration, ServiceComponents, ServiceSpec

if TYPE_CHECKING:
    # Only a MongoDB-backed service imports pymongo (~6 MiB a process): the name is for mypy.
    from pymongo.database import Database as MongoDatabase

Loop = Callable[[], Coroutine[Any, Any, None]]


def postgres_event_loops(
    settings: ServiceSettings,
    database: Database,
    *,
    service: str,
    group: str,
    handlers: Mapping[str, inbox.Handler],
    pseudonyms: PseudonymBackend | None = None,
    service_tokens: ServiceTokens | None = None,
) -> list[Loop]:
    """Outbox relay, processed-events purge, the audit shipper of an audited schema, and a
    consumer when there are handlers. `pseudonyms`: the owner of customer pseudonyms when it
    is this service (the edge); others reach it remotely when `customer_pseudonyms` is on,
    with `service_tokens` if the service makes its own (Auth), else with its credential."""
    client_id = _client_id(service)
    loops: list[Loop] = [inbox.purge_loop(database, settings.processed_events_retention_seconds)]
    if audit.MIGRATIONS in database.spec.migration_dirs:
        loops.append(AuditShipper(database).run)
    if settings.outbox_relay_in_process:
        relay = OutboxRelay(
            PostgresOutbox(database),
            settings,
            client_id=client_id,
            pseudonymizer=_pseudonymizer(settings, service, pseudonyms, service_tokens),
        )
        loops.append(relay.run)
    else:
        loops.append(partial(report_backlog_forever, PostgresOutbox(database)))
    return loops + _consumer(
        settings, group, handlers, client_id, service, pseudonyms, service_tokens
    )


def mongo_event_loops(
    settings: ServiceSettings,
    database: MongoDatabase[dict[str, Any]],
    *,
    service: str,
    group: str,
    handlers: Mapping[str, inbox.Handler],
    pseudonyms: PseudonymBackend | None = None,
) -> list[Loop]:
    """Outbox relay of `database`'s outbox (mongo_outbox), and a consumer when there are
    handlers. No processed-events purge as for PostgreSQL: purging the store's processed
    events is the store's business."""
    # Imported here: pymongo is loaded by the services whose state is in MongoDB, not by all.
    from loyalnest.platform.events.mongo_outbox import MongoOutbox, lease_seconds_for

    client_id = _client_id(service)
    # Named after the service, as PostgreSQL outboxes are after its schema: one backlog
    # metric per service whichever store it runs on.
    source = MongoOutbox(database, name=service, lease_seconds=lease_seconds_for(settings))
    loops: list[Loop] = []
    if settings.outbox_relay_in_process:
        pseudonymizer = _pseudonymizer(settings, service, pseudonyms)
        loops.append(
            OutboxRelay(source, settings, client_id=client_id, pseudonymizer=pseudonymizer).run
        )
    return loops + _consumer(settings, group, handlers, client_id, service, pseudonyms)


def _client_id(service: str) -> str:
    # Unique per process: brokers and logs tell the replicas apart.
    return f"loyalnest-{service}-{os.getpid()}"


def _backend(
    settings: ServiceSettings,
    service: str,
    owned: PseudonymBackend | None,
    tokens: ServiceTokens | None = None,
) -> PseudonymBackend | None:
    """Where this process's loops get customer pseudonyms: the owner's store in the edge, the
    edge's CustomerPseudonymService elsewhere (targets and credential checked now: a mesh
    configured with pseudonyms on cannot start without them), None when they are off."""
    if owned is not None:
        return owned if settings.customer_pseudonyms else None
    if not settings.customer_pseudonyms or service not in pseudonyms.CALLERS:
        # Users, Roles: no event of theirs, produced or consumed, names a Shopify customer
        # (CALLERS is unit-tested against the services' events).
        return None
    return remote_pseudonyms(settings, caller=service, tokens=tokens)


def _pseudonymizer(
    settings: ServiceSettings,
    service: str,
    owned: PseudonymBackend | None,
    tokens: ServiceTokens | None = None,
) -> Pseudonymizer | None:
    backend = _backend(settings, service, owned, tokens)
    return Pseudonymizer(backend) if backend is not None else None


def _consumer(
    settings: ServiceSettings,
    group: str,
    handlers: Mapping[str, inbox.Handler],
    client_id: str,
    service: str,
    pseudonyms: PseudonymBackend | None = None,
    tokens: ServiceTokens | None = None,
) -> list[Loop]:
    if not handlers:
        return []
    backend = _backend(settings, service, pseudonyms, tokens)
    runner = ConsumerRunner(
        settings,
        group=group,
        handlers=handlers,
        client_id=client_id,
        resolver=Resolver(backend) if backend is not None else None,
    )
    return [runner.run]


def postgres_service(
    settings: ServiceSettings,
    database: Database,
    *,
    service: str,
    group: str,
    handlers: Mapping[str, inbox.Handler],
    registrations: Sequence[Registration],
    cleanup: Sequence[Callable[[], Awaitable[None]]] = (),
    pseudonyms: PseudonymBackend | None = None,
    service_tokens: ServiceTokens | None = None,
) -> ServiceComponents:
    """A service whose state is in its PostgreSQL schema: migrations before it reports SERVING
    (unless a Job runs them), the database ping as readiness, the outbox relay (and a consumer
    of `handlers`) when events are on. `cleanup` runs on shutdown before the pool closes."""
    components = ServiceComponents(
        registrations=registrations,
        readiness=[Check("postgres", database.ping)],
        cleanup=[database.close, *cleanup],  # awaited in reverse: the pool closes last
    )
    if settings.run_migrations_on_start:
        components.startup = [Check("migrations", database.migrate)]
    if settings.events_enabled:
        components.background += postgres_event_loops(
            settings,
            database,
            service=service,
            group=group,
            handlers=handlers,
            pseudonyms=pseudonyms,
            service_tokens=service_tokens,
        )
    elif audit.MIGRATIONS in database.spec.migration_dirs:
        # No event loops, but the audit queue stays bounded (audit/shipper.py): its excess
        # waits in the outbox with every other event.
        components.background.append(AuditShipper.bounded(database, settings.audit_queue_bound).run)
    return components


def relay_spec(spec: ServiceSpec[Any]) -> ServiceSpec[Any]:
    """A process that only relays `spec`'s PostgreSQL outbox (`loyalnest relay <service>`),
    for services run with `outbox_relay_in_process` off: gRPC health (SERVING while its
    database answers), metrics, and the relay loop. Several may run: relays share the lanes.
    """
    database_spec = spec.database
    if database_spec is None:
        raise ValueError(f"{spec.name} has no PostgreSQL outbox to relay")

    async def build(settings: ServiceSettings) -> ServiceComponents:
        if spec.name == pseudonyms.OWNER and spec.pseudonym_store is None:
            # Without the owner's store its relay would find no pseudonyms and publish
            # Shopify customer ids.
            raise ValueError(f"{spec.name} owns customer pseudonyms but declares no store")
        database = Database(settings, database_spec)
        await database.open()
        # The owner's relay reads the pseudonyms' table on the database it relays, as its
        # in-process relay does; the others' ask the owner, as theirs do.
        owned = spec.pseudonym_store(settings, database) if spec.pseudonym_store else None
        relay = OutboxRelay(
            PostgresOutbox(database),
            settings,
            client_id=_client_id(spec.name),
            pseudonymizer=_pseudonymizer(settings, spec.name, owned),
        )
        loops: list[Loop] = [relay.run]
        if audit.MIGRATIONS in database_spec.migration_dirs:
            # Whatever the service's own events setting, what this process relays includes
            # the audit queue (one shipper per schema at a time: the others skip).
            loops.append(AuditShipper(database).run)
        return ServiceComponents(
            registrations=[],
            readiness=[Check("postgres", database.ping)],
            background=loops,
            cleanup=[database.close],
        )

    return ServiceSpec(
        name=f"{spec.name}-relay", settings_type=spec.settings_type, build=build, database=None
    )
