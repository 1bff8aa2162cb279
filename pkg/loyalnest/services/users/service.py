"""Wires the Users service into the platform runtime.

Emails are sealed by a platform PII vault (AES-256-GCM bound to the row, blind index). Keys
(LOYALNEST_*): USERS_ENCRYPTION_KEY and USERS_BLIND_INDEX_KEY, base64 of 32 random bytes
each (`openssl rand -base64 32`); USERS_ENCRYPTION_PREVIOUS_KEYS (JSON list) keeps old keys
readable while rows are re-encrypted after a rotation. See loyalnest.platform.pii for the
development keys used on a developer's machine.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from loyalnest.gen.users.v1 import users_pb2, users_pb2_grpc
from loyalnest.platform import audit
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.event_loops import postgres_service
from loyalnest.platform.observability import get_logger
from loyalnest.platform.personal_data import PersonalData
from loyalnest.platform.pii import PiiVault
from loyalnest.platform.postgres import Database, DatabaseSpec
from loyalnest.platform.server import Registration, ServiceComponents, ServiceSpec
from loyalnest.services.users import consumers, events
from loyalnest.services.users.servicer import UsersServicer
from loyalnest.services.users.store.cache import UserCache
from loyalnest.services.users.store.postgres import UserStore

# The audit trigger function must exist before users_0001 attaches it.
DATABASE = DatabaseSpec(
    schema="users", migration_dirs=(audit.MIGRATIONS, Path(__file__).parent / "migrations")
)
SERVICE_NAME = users_pb2.DESCRIPTOR.services_by_name["UsersService"].full_name
log = get_logger(__name__)


class UsersSettings(ServiceSettings):
    # base64 of 32 random bytes (`openssl rand -base64 32`). Required outside a developer's
    # machine: a built-in key would encrypt production data under a published key.
    users_encryption_key: SecretStr | None = None
    # Keys that still decrypt (rotation: the old key goes here until every row was
    # re-encrypted under the new one). JSON list in the environment.
    users_encryption_previous_keys: list[SecretStr] = []
    # base64 of 32 random bytes; fixed for the life of the data (changing it means
    # recomputing every index). Never the encryption key: one secret, one purpose.
    users_blind_index_key: SecretStr | None = None
    # How long a cached user:{id} may outlive a change whose invalidation was lost.
    users_cache_ttl_seconds: int = Field(300, ge=1)


def email_vault(settings: UsersSettings) -> PiiVault:
    return PiiVault.from_keys(
        settings,
        service="users",
        # The contexts Users has always used: "users.email:{merchant}:{user}".
        namespace="users.email",
        encryption_key=settings.users_encryption_key,
        previous_keys=settings.users_encryption_previous_keys,
        blind_index_key=settings.users_blind_index_key,
    )


async def build(settings: UsersSettings) -> ServiceComponents:
    # Before anything opens: missing keys must stop the process, not surface per request.
    vault = email_vault(settings)
    database = Database(settings, DATABASE)
    await database.open()
    cache = None
    if settings.redis_url:
        cache = UserCache.from_url(settings.redis_url, ttl_seconds=settings.users_cache_ttl_seconds)
    else:
        log.warning("LOYALNEST_REDIS_URL unset: user reads are not cached")
    store = UserStore(database, vault, cache)
    components = postgres_service(
        settings,
        database,
        service="users",
        group=events.CONSUMER_GROUP,
        handlers=consumers.handlers(store),
        registrations=[
            Registration(
                SERVICE_NAME,
                users_pb2_grpc.add_UsersServiceServicer_to_server,
                UsersServicer(store, vault),
            )
        ],
        cleanup=[cache.close] if cache is not None else [],
    )
    components.personal_data = store
    return components


SPEC = ServiceSpec(
    name="users",
    settings_type=UsersSettings,
    build=build,
    database=DATABASE,
    # user_roles names users, not customers: erased with them. customer_birthdays: a
    # storefront customer's birthday (SetCustomerBirthday), by Shopify's customer id.
    personal_data=PersonalData(tables=("users", "user_roles", "customer_birthdays")),
)
