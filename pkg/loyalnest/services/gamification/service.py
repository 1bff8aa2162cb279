"""Wires the Gamification service into the platform runtime."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from loyalnest.gen.gamification.v1 import gamification_pb2, gamification_pb2_grpc
from loyalnest.platform import audit
from loyalnest.platform.cache import client_from_url
from loyalnest.platform.calls import Calls
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.event_loops import postgres_service
from loyalnest.platform.personal_data import PersonalData
from loyalnest.platform.postgres import Database, DatabaseSpec
from loyalnest.platform.server import Registration, ServiceComponents, ServiceSpec
from loyalnest.services.gamification import consumers, events
from loyalnest.services.gamification.leaderboards import Leaderboards
from loyalnest.services.gamification.servicer import GamificationServicer
from loyalnest.services.gamification.store.boards import RedisBoards
from loyalnest.services.gamification.store.postgres import GamificationStore

NAME = "gamification"
# The audit trigger function must exist before gamification_0001 attaches it.
DATABASE = DatabaseSpec(
    schema=NAME, migration_dirs=(audit.MIGRATIONS, Path(__file__).parent / "migrations")
)
SERVICE_NAME = gamification_pb2.DESCRIPTOR.services_by_name["GamificationService"].full_name
# It calls no service: customers are the ids events name (the seed's GetUser and
# ValidateMerchant calls are not needed for what it does yet).
CALLS = Calls()


class GamificationSettings(ServiceSettings):
    """Gamification's own settings (each read from LOYALNEST_<FIELD>). Leaderboards live in
    Redis (LOYALNEST_REDIS_URL); without it they are answered from PostgreSQL."""

    # How long a leaderboard page is cached (leaderboard:{merchant}:...:page:...); 0: never.
    gamification_leaderboard_cache_seconds: float = Field(5.0, ge=0)
    # Redis commands of the boards (a rebuild sends 10,000 members at once).
    gamification_redis_timeout_seconds: float = Field(2.0, gt=0)


async def build(settings: GamificationSettings) -> ServiceComponents:
    database = Database(settings, DATABASE)
    await database.open()
    store = GamificationStore(database)
    boards = (
        RedisBoards(
            client_from_url(
                settings.redis_url, timeout_seconds=settings.gamification_redis_timeout_seconds
            ),
            page_cache_seconds=settings.gamification_leaderboard_cache_seconds,
        )
        if settings.redis_url
        else None
    )
    leaderboards = Leaderboards(store, boards)
    components = postgres_service(
        settings,
        database,
        service=NAME,
        group=events.CONSUMER_GROUP,
        handlers=consumers.handlers(database, store, leaderboards),
        registrations=[
            Registration(
                SERVICE_NAME,
                gamification_pb2_grpc.add_GamificationServiceServicer_to_server,
                GamificationServicer(store, leaderboards),
            )
        ],
        cleanup=[leaderboards.close],
    )
    # The personal-data contract: the boards in Redis hold customer ids too.
    components.personal_data = leaderboards
    return components


SPEC = ServiceSpec(
    name=NAME,
    settings_type=GamificationSettings,
    build=build,
    database=DATABASE,
    calls=CALLS,
    personal_data=PersonalData(
        tables=("customer_badges", "customer_progress", "leaderboard_rankings")
    ),
)
