"""Wires the edge service into the platform runtime."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.edge.v1 import edge_pb2, edge_pb2_grpc
from loyalnest.gen.xds.envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from loyalnest.platform.auth.service_tokens import ServiceTokenSource
from loyalnest.platform.client import open_channel
from loyalnest.platform.event_loops import postgres_service
from loyalnest.platform.merchants import MerchantGate
from loyalnest.platform.observability import get_logger
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
log = get_logger(__name__)


def merchant_gate(
    settings: EdgeSettings, cleanup: list[Callable[[], Awaitable[None]]]
) -> MerchantGate:
    """ValidateMerchant for webhooks, with the edge's own service token (auth:validate).

    TEMPORARY wiring (target: the existing LOYALNEST_AUTH_TARGET): becomes
    `CALLS.connect(settings, caller="edge").stub(AuthServiceStub)` with the call layer."""
    source = ServiceTokenSource.from_settings(settings, "edge")
    auth = None
    if source is not None and settings.auth_target:
        channel = open_channel(settings.auth_target, service_tokens=source)
        cleanup += [source.close, lambda: channel.close(None)]
        auth = auth_pb2_grpc.AuthServiceStub(channel)  # type: ignore[no-untyped-call]
    else:
        log.warning(
            "LOYALNEST_AUTH_TARGET or LOYALNEST_SERVICE_CREDENTIAL unset: webhooks of unknown"
            " or uninstalled merchants are not skipped"
        )
    return MerchantGate(
        auth, component="edge", cache_seconds=settings.webhook_merchant_cache_seconds
    )


async def build(settings: EdgeSettings) -> ServiceComponents:
    if settings.redis_url is None:
        raise ValueError("the edge service needs LOYALNEST_REDIS_URL (rate limits)")
    database = Database(settings, DATABASE)
    await database.open()
    store = EdgeStore(database)
    seen = SeenDeliveries.from_url(settings.redis_url, settings.webhook_seen_ttl_seconds)
    buckets = TokenBuckets.from_url(settings.redis_url)
    plans = PlanDirectory(settings, store)
    cleanup: list[Callable[[], Awaitable[None]]] = [seen.close, buckets.close]
    merchants = merchant_gate(settings, cleanup)
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
                EdgeServicer(settings, store, seen, buckets, plans, merchants),
            ),
            Registration(
                RATE_LIMIT_SERVICE_NAME,
                rls_pb2_grpc.add_RateLimitServiceServicer_to_server,
                RateLimitServicer(settings, buckets, plans),
            ),
        ],
        cleanup=cleanup,
    )


SPEC = ServiceSpec(name="edge", settings_type=EdgeSettings, build=build, database=DATABASE)
