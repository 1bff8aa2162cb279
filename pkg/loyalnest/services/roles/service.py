"""Wires the Roles service into the platform runtime."""

from __future__ import annotations

from pathlib import Path

from loyalnest.gen.roles.v1 import roles_pb2, roles_pb2_grpc
from loyalnest.platform import audit
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.event_loops import postgres_event_loops
from loyalnest.platform.health import Check
from loyalnest.platform.postgres import Database, DatabaseSpec
from loyalnest.platform.server import Registration, ServiceComponents, ServiceSpec
from loyalnest.services.roles import events
from loyalnest.services.roles.servicer import RolesServicer
from loyalnest.services.roles.store import RoleStore

# The audit trigger function must exist before roles_0001 attaches it.
DATABASE = DatabaseSpec(
    schema="roles", migration_dirs=(audit.MIGRATIONS, Path(__file__).parent / "migrations")
)
SERVICE_NAME = roles_pb2.DESCRIPTOR.services_by_name["RolesService"].full_name


async def build(settings: ServiceSettings) -> ServiceComponents:
    database = Database(settings, DATABASE)
    await database.open()
    store = RoleStore(database)
    components = ServiceComponents(
        registrations=[
            Registration(
                SERVICE_NAME,
                roles_pb2_grpc.add_RolesServiceServicer_to_server,
                RolesServicer(store),
            )
        ],
        readiness=[Check("postgres", store.ping)],
        cleanup=[database.close],
    )
    if settings.run_migrations_on_start:
        components.startup = [Check("migrations", database.migrate)]
    if settings.events_enabled:
        components.background += postgres_event_loops(
            settings,
            database,
            service="roles",
            group=events.CONSUMER_GROUP,
            handlers=events.handlers(store),
        )
    return components


SPEC = ServiceSpec(name="roles", settings_type=ServiceSettings, build=build, database=DATABASE)
