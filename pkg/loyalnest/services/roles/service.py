"""Wires the Roles service into the platform runtime."""

from __future__ import annotations

from pathlib import Path

from loyalnest.gen.roles.v1 import roles_pb2, roles_pb2_grpc
from loyalnest.platform import audit
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.event_loops import postgres_service
from loyalnest.platform.postgres import Database, DatabaseSpec
from loyalnest.platform.server import Registration, ServiceComponents, ServiceSpec
from loyalnest.services.roles import consumers, events
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
    return postgres_service(
        settings,
        database,
        service="roles",
        group=events.CONSUMER_GROUP,
        handlers=consumers.handlers(store),
        registrations=[
            Registration(
                SERVICE_NAME,
                roles_pb2_grpc.add_RolesServiceServicer_to_server,
                RolesServicer(store),
            )
        ],
    )


SPEC = ServiceSpec(name="roles", settings_type=ServiceSettings, build=build, database=DATABASE)
