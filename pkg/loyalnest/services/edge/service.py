"""Wires the edge service into the platform runtime."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.edge.v1 import edge_pb2, edge_pb2_grpc
from loyalnest.gen.xds.envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from loyalnest.platform.calls import Calls
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.event_loops import postgres_service
from loyalnest.platform.postgres import Database, DatabaseSpec
from loyalnest.platform.server import Registration, ServiceComponents, ServiceSpec
from loyalnest.services.edge import consumers, events
from loyalnest.services.edge.domain import DEFAULT_PLAN_LIMITS, PlanRateLimit
from loyalnest.services.edge.servicer import EdgeServicer, RateLimitServicer
from loyalnest.services.edge.store.buckets import TokenBuckets
from loyalnest.services.edge.store.plans import PlanDirectory
from loyalnest.services.edge.store.postgres import EdgeStore
from loyalnest.services.edge.store.seen import SeenDeliveries

DATABASE = DatabaseSpec(schema="edge", migration_dirs=(Path(__file__).parent / "migrations",))
SERVICE_NAME = edge_pb2.DESCRIPTOR.services_by_name["EdgeService"].full_name
RATE_LIMIT_SERVICE_NAME = rls_pb2.DESCRIPTOR.services_by_name["RateLimitService"].full_name


class EdgeSettings(ServiceSettings):
    # The Shopify app's client secret: X-Shopify-Hmac-SHA256 is signed with it. After a
    # rotation Shopify may sign with the old secret for up to an hour: list it in
    # `shopify_api_previous_secrets` (JSON list) meanwhile.
    shopify_api_secret: SecretStr
    shopify_api_previous_secrets: list[SecretStr] = []
    # Deliveries older than this (X-Shopify-Triggered-At) are still accepted (Shopify retries
    # for 4 hours) but logged as stale.
    webhook_stale_after_seconds: float = Field(3600.0, gt=0)
    # The Redis fast path of deduplication remembers an event id this long; the PostgreSQL
    # record (webhook_idempotency_keys) is the authority either way.
    webhook_seen_ttl_seconds: int = Field(48 * 3600, gt=0)

    # Per-plan token buckets (JSON: {"free": {"burst": 60, "requests_per_second": 10}, ...}).
    rate_limit_plans: dict[str, PlanRateLimit] = dict(DEFAULT_PLAN_LIMITS)
    # The plan of a merchant whose program_settings.updated has not been seen.
    rate_limit_default_plan: str = "free"
    # Redis unreachable: let requests through (counted) rather than refuse every merchant.
    rate_limit_fail_open: bool = True
    # How long a process keeps a merchant's plan before reading it again.
    rate_limit_plan_cache_seconds: float = Field(30.0, gt=0)

    def webhook_secrets(self) -> list[str]:
        """The secrets a webhook may be signed with, the current one first."""
        secrets = [
            secret.get_secret_value()
            for secret in (self.shopify_api_secret, *self.shopify_api_previous_secrets)
            if secret.get_secret_value()
        ]
        if not secrets:
            raise ValueError("LOYALNEST_SHOPIFY_API_SECRET is empty: no webhook could verify")
        return secrets


async def build(settings: EdgeSettings) -> ServiceComponents:
    if settings.redis_url is None:
        raise ValueError("the edge service needs LOYALNEST_REDIS_URL (rate limits)")
    secrets = settings.webhook_secrets()
    database = Database(settings, DATABASE)
    await database.open()
    store = EdgeStore(database)
    seen = SeenDeliveries.from_url(settings.redis_url, settings.webhook_seen_ttl_seconds)
    buckets = TokenBuckets.from_url(settings.redis_url)
    plans = PlanDirectory(
        store,
        plans=settings.rate_limit_plans,
        default_plan=settings.rate_limit_default_plan,
        cache_seconds=settings.rate_limit_plan_cache_seconds,
    )
    return postgres_service(
        settings,
        database,
        service="edge",
        group=events.CONSUMER_GROUP,
        handlers=consumers.handlers(database, plans),
        registrations=[
            Registration(
                SERVICE_NAME,
                edge_pb2_grpc.add_EdgeServiceServicer_to_server,
                EdgeServicer(secrets, store, seen, buckets, plans),
            ),
            Registration(
                RATE_LIMIT_SERVICE_NAME,
                rls_pb2_grpc.add_RateLimitServiceServicer_to_server,
                RateLimitServicer(buckets, plans, fail_open=settings.rate_limit_fail_open),
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
