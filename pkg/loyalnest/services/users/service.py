"""Wires the Users service into the platform runtime."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from loyalnest.gen.users.v1 import users_pb2, users_pb2_grpc
from loyalnest.platform import audit
from loyalnest.platform.event_loops import postgres_service
from loyalnest.platform.observability import get_logger
from loyalnest.platform.postgres import Database, DatabaseSpec
from loyalnest.platform.server import Registration, ServiceComponents, ServiceSpec
from loyalnest.services.users import events
from loyalnest.services.users.cache import UserCache
from loyalnest.services.users.pii import EmailVault, PiiSettings
from loyalnest.services.users.servicer import UsersServicer
from loyalnest.services.users.store import UserStore

# The audit trigger function must exist before users_0001 attaches it.
DATABASE = DatabaseSpec(
    schema="users", migration_dirs=(audit.MIGRATIONS, Path(__file__).parent / "migrations")
)
SERVICE_NAME = users_pb2.DESCRIPTOR.services_by_name["UsersService"].full_name
log = get_logger(__name__)


class UsersSettings(PiiSettings):
    # How long a cached user:{id} may outlive a change whose invalidation was lost.
    users_cache_ttl_seconds: int = Field(300, ge=1)


async def build(settings: UsersSettings) -> ServiceComponents:
    # Before anything opens: missing keys must stop the process, not surface per request.
    vault = EmailVault.from_settings(settings)
    database = Database(settings, DATABASE)
    await database.open()
    cache = None
    if settings.redis_url:
        cache = UserCache.from_url(settings.redis_url, ttl_seconds=settings.users_cache_ttl_seconds)
    else:
        log.warning("LOYALNEST_REDIS_URL unset: user reads are not cached")
    store = UserStore(database, vault, cache)
    return postgres_service(
        settings,
        database,
        service="users",
        group=events.CONSUMER_GROUP,
        handlers=events.handlers(store),
        registrations=[
            Registration(
                SERVICE_NAME,
                users_pb2_grpc.add_UsersServiceServicer_to_server,
                UsersServicer(store, vault),
            )
        ],
        cleanup=[cache.close] if cache is not None else [],
    )


SPEC = ServiceSpec(name="users", settings_type=UsersSettings, build=build, database=DATABASE)
