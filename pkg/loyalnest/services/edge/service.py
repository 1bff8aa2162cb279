"""Wires the edge service into the platform runtime."""

from __future__ import annotations

from pathlib import Path

from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.edge.v1 import edge_pb2, edge_pb2_grpc
from loyalnest.gen.xds.envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from loyalnest.platform.calls import Calls
from loyalnest.platform.event_loops import postgres_service
from loyalnest.platform.postgres import Database, DatabaseSpec
from loyalnest.platform.server import Registration, ServiceComponents, ServiceSpec
from loyalnest.services.edge import events
from loyalnest.services.edge.ratelimit import PlanDirectory, RateLimitServicer, TokenBuckets
from loyalnest.services.edge.seen import SeenDeliveries
from loyalnest.services.edge.servicer import EdgeServicer
from loyalnest.services.edge.settings import EdgeSettings
from loyalnest.services.edge.store import EdgeStore

DATABASE = DatabaseSpec(schema="edge", migration_dirs=(Path(__file__).parent / "migrations",))
SERVICE_NAME = edge_pb2.DESCRIPTOR.services_by_name["EdgeService"].full_name
RATE_LIMIT_SERVICE_NAME = rls_pb2.DESCRIPTOR.services_by_name["RateLimitService"].full_name


async def build(settings: EdgeSettings) -> ServiceComponents:
    if settings.redis_url is None:
        raise ValueError("the edge service needs LOYALNEST_REDIS_URL (rate limits)")
    database = Database(settings, DATABASE)
    await database.open()
    store = EdgeStore(database)
    seen = SeenDeliveries.from_url(settings.redis_url, settings.webhook_seen_ttl_seconds)
    buckets = TokenBuckets.from_url(settings.redis_url)
    plans = PlanDirectory(settings, store)
    return postgres_service(
        settings,
        database,
        service="edge",
        group=events.CONSUMER_GROUP,
        handlers=events.handlers(database, plans),
        registrations=[
            Registration(
                SERVICE_NAME,
                edge_pb2_grpc.add_EdgeServiceServicer_to_server,
                EdgeServicer(settings, store, seen, buckets, plans),
            ),
            Registration(
                RATE_LIMIT_SERVICE_NAME,
                rls_pb2_grpc.add_RateLimitServiceServicer_to_server,
                RateLimitServicer(settings, buckets, plans),
            ),
        ],
        cleanup=[seen.close, buckets.close],
    )


# Auth: ValidateMerchant of a webhook's shop.
SPEC = ServiceSpec(
    name="edge",
    settings_type=EdgeSettings,
    build=build,
    database=DATABASE,
    calls=Calls(auth=auth_pb2_grpc.AuthServiceStub),
)
