"""Wires the Products service into the platform runtime."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.products.v1 import products_pb2, products_pb2_grpc
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
from loyalnest.services.products import consumers, events
from loyalnest.services.products.servicer import ProductsServicer
from loyalnest.services.products.store.campaigns import CampaignsStore
from loyalnest.services.products.store.catalogue import CatalogueStore
from loyalnest.services.products.store.sales import SalesStore
from loyalnest.services.products.sync import CatalogueSync

NAME = "products"
# The audit trigger function must exist before products_0001 attaches it.
DATABASE = DatabaseSpec(
    schema=NAME, migration_dirs=(audit.MIGRATIONS, Path(__file__).parent / "migrations")
)
SERVICE_NAME = products_pb2.DESCRIPTOR.services_by_name["ProductsService"].full_name
log = get_logger(__name__)
# Auth: the shop's Admin API token (GetShopAccessToken, for the catalogue sync) with
# Products' own service token (grant auth:shop-token in SERVICE_GRANTS).
CALLS = Calls(auth=auth_pb2_grpc.AuthServiceStub)


class ProductsSettings(ServiceSettings):
    """The Products service's settings (each read from LOYALNEST_<FIELD>)."""

    # Shopify's Admin GraphQL API (`{shop}` is filled in); tests point it at the stand-in.
    shopify_admin_base_url: str = "https://{shop}"
    shopify_admin_timeout_seconds: float = Field(10.0, gt=0)
    # How long a product's cached RFM (product:{merchant}:{product}:rfm) lives unchanged.
    products_rfm_cache_ttl_seconds: int = Field(300, ge=1)
    # How often each process syncs every merchant synced once, incrementally.
    products_sync_interval_seconds: float = Field(900.0, gt=0)


async def build(settings: ProductsSettings) -> ServiceComponents:
    database = Database(settings, DATABASE)
    await database.open()
    downstream = CALLS.connect(settings, caller=NAME)
    auth: auth_pb2_grpc.AuthServiceStub | None = None
    if settings.service_credential is None:
        log.warning(
            "LOYALNEST_SERVICE_CREDENTIAL unset: no shop tokens, SyncProducts is"
            " FAILED_PRECONDITION SHOP_NOT_CONNECTED (webhooks still keep the catalogue)"
        )
    else:
        auth = downstream.stub(auth_pb2_grpc.AuthServiceStub)
    redis_client = client_from_url(settings.redis_url) if settings.redis_url else None
    catalogue = CatalogueStore(database)
    sales = SalesStore(database, redis_client, ttl_seconds=settings.products_rfm_cache_ttl_seconds)
    campaigns = CampaignsStore(database)
    http = HttpClient(api="shopify-admin", timeout_seconds=settings.shopify_admin_timeout_seconds)
    sync = CatalogueSync(
        ShopifyAdminClient(http, base_url=settings.shopify_admin_base_url), auth, catalogue
    )
    cleanup = [http.close, downstream.close]
    if redis_client is not None:
        cleanup.append(redis_client.aclose)
    components = postgres_service(
        settings,
        database,
        service=NAME,
        group=events.CONSUMER_GROUP,
        handlers=consumers.handlers(catalogue, sales, campaigns),
        registrations=[
            Registration(
                SERVICE_NAME,
                products_pb2_grpc.add_ProductsServiceServicer_to_server,
                ProductsServicer(catalogue, sales, campaigns, sync),
            )
        ],
        cleanup=cleanup,
    )
    if auth is not None:

        async def periodic_sync() -> None:
            await sync.run(settings.products_sync_interval_seconds)

        components.background.append(periodic_sync)
    components.personal_data = ByShopifyId(sales)
    return components


SPEC = ServiceSpec(
    name=NAME,
    settings_type=ProductsSettings,
    build=build,
    database=DATABASE,
    calls=CALLS,
    personal_data=PersonalData(tables=("product_sales", "customer_segments")),
)
