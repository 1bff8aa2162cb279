"""Wires the Campaign service into the platform runtime."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.campaign.v1 import campaign_pb2, campaign_pb2_grpc
from loyalnest.platform import audit
from loyalnest.platform.cache import client_from_url
from loyalnest.platform.calls import Calls
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.event_loops import postgres_service
from loyalnest.platform.http import HttpClient
from loyalnest.platform.observability import get_logger
from loyalnest.platform.personal_data import ByShopifyId, PersonalData
from loyalnest.platform.postgres import Database, DatabaseSpec
from loyalnest.platform.server import Registration, ServiceComponents, ServiceSpec
from loyalnest.platform.shopify_admin import ShopifyAdminClient
from loyalnest.services.campaign import consumers, events
from loyalnest.services.campaign.eligibility import Eligibility
from loyalnest.services.campaign.lifecycle import Lifecycle
from loyalnest.services.campaign.reconcile import Reconciler
from loyalnest.services.campaign.servicer import CampaignServicer
from loyalnest.services.campaign.shopify import CampaignDiscounts
from loyalnest.services.campaign.store import CampaignStore

NAME = "campaign"
# The audit trigger function must exist before campaign_0001 attaches it.
DATABASE = DatabaseSpec(
    schema=NAME, migration_dirs=(audit.MIGRATIONS, Path(__file__).parent / "migrations")
)
SERVICE_NAME = campaign_pb2.DESCRIPTOR.services_by_name["CampaignService"].full_name
log = get_logger(__name__)
# Auth: the shop's Admin API token (GetShopAccessToken, for Shopify discounts) with Campaign's
# own service token (grant auth:shop-token in SERVICE_GRANTS).
CALLS = Calls(auth=auth_pb2_grpc.AuthServiceStub)


class CampaignSettings(ServiceSettings):
    """The Campaign service's settings (each read from LOYALNEST_<FIELD>)."""

    # Shopify's Admin GraphQL API (`{shop}` is filled in); tests point it at the stand-in.
    shopify_admin_base_url: str = "https://{shop}"
    shopify_admin_timeout_seconds: float = Field(5.0, gt=0)
    # How often each process compares the live campaigns with their Shopify discounts.
    campaign_reconcile_interval_seconds: float = Field(300.0, gt=0)
    # How long ApplyCampaign's Redis entries live without a rewrite (a lost write heals then).
    campaign_cache_ttl_seconds: int = Field(300, ge=1)


async def build(settings: CampaignSettings) -> ServiceComponents:
    database = Database(settings, DATABASE)
    await database.open()
    store = CampaignStore(database)
    downstream = CALLS.connect(settings, caller=NAME)
    auth: auth_pb2_grpc.AuthServiceStub | None = None
    if settings.service_credential is None:
        log.warning(
            "LOYALNEST_SERVICE_CREDENTIAL unset: no shop tokens, campaigns stay drafts"
            " (publishing is FAILED_PRECONDITION SHOP_NOT_CONNECTED)"
        )
    else:
        auth = downstream.stub(auth_pb2_grpc.AuthServiceStub)
    http = HttpClient(api="shopify-admin", timeout_seconds=settings.shopify_admin_timeout_seconds)
    discounts = CampaignDiscounts(
        ShopifyAdminClient(http, base_url=settings.shopify_admin_base_url), auth
    )
    redis_client = client_from_url(settings.redis_url) if settings.redis_url else None
    if redis_client is None:
        log.warning("LOYALNEST_REDIS_URL unset: ApplyCampaign reads PostgreSQL")
    eligibility = Eligibility(redis_client, store, ttl_seconds=settings.campaign_cache_ttl_seconds)
    lifecycle = Lifecycle(discounts, store)
    cleanup = [http.close, downstream.close]
    if redis_client is not None:
        cleanup.append(redis_client.aclose)
    components = postgres_service(
        settings,
        database,
        service=NAME,
        group=events.CONSUMER_GROUP,
        handlers=consumers.handlers(store, eligibility, lifecycle),
        registrations=[
            Registration(
                SERVICE_NAME,
                campaign_pb2_grpc.add_CampaignServiceServicer_to_server,
                CampaignServicer(store, lifecycle, eligibility),
            )
        ],
        cleanup=cleanup,
    )
    if auth is not None:
        reconciler = Reconciler(
            store,
            discounts,
            eligibility,
            interval_seconds=settings.campaign_reconcile_interval_seconds,
        )
        components.background.append(reconciler.run)
    # The store's rows and the segment Eligibility caches in Redis.
    components.personal_data = ByShopifyId(eligibility)
    return components


SPEC = ServiceSpec(
    name=NAME,
    settings_type=CampaignSettings,
    build=build,
    database=DATABASE,
    calls=CALLS,
    personal_data=PersonalData(tables=("customer_segments",)),
)
