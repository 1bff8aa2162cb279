"""Wires the Core service into the platform runtime."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator

from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.core.v1 import core_pb2, core_pb2_grpc
from loyalnest.platform import audit
from loyalnest.platform.cache import RedisCache
from loyalnest.platform.calls import Calls
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.event_loops import postgres_service
from loyalnest.platform.events.inbox import Handler
from loyalnest.platform.http import HttpClient
from loyalnest.platform.merchants import MerchantGate
from loyalnest.platform.observability import get_logger
from loyalnest.platform.personal_data import PersonalData
from loyalnest.platform.pii import PiiVault
from loyalnest.platform.postgres import Database, DatabaseSpec
from loyalnest.platform.server import Registration, ServiceComponents, ServiceSpec
from loyalnest.platform.shopify_admin import ShopifyAdminClient
from loyalnest.services.core import consumers, events
from loyalnest.services.core.billing import ShopifyBilling
from loyalnest.services.core.domain import PlanCatalogue, PlanLimits, PlanPrice
from loyalnest.services.core.servicer import CoreServicer
from loyalnest.services.core.store.billing import BillingStore
from loyalnest.services.core.store.cache import ProgramCache, UsageCache
from loyalnest.services.core.store.customers import CustomerStore
from loyalnest.services.core.store.program import ProgramStore
from loyalnest.services.core.store.usage import UsageStore

DATABASE = DatabaseSpec(
    schema="core", migration_dirs=(audit.MIGRATIONS, Path(__file__).parent / "migrations")
)
SERVICE_NAME = core_pb2.DESCRIPTOR.services_by_name["CoreService"].full_name
log = get_logger(__name__)
# Auth: shops' access tokens (GetShopAccessToken, for Shopify Billing), ValidateMerchant
# (webhooks), and Core's own service tokens.
CALLS = Calls(auth=auth_pb2_grpc.AuthServiceStub)


class PlanDefinition(BaseModel):
    # Zero: unlimited.
    customers_limit: int = Field(0, ge=0)
    # Orders that may earn points per calendar month (UTC); zero: unlimited.
    orders_per_month_limit: int = Field(0, ge=0)
    # What the plan costs per interval, billed through Shopify Billing; zero: free (a change
    # to it applies at once). A paid plan applies once the merchant approved the charge.
    price: Decimal = Field(Decimal(0), ge=0, max_digits=10, decimal_places=2)
    currency_code: str = Field("USD", pattern=r"^[A-Z]{3}$")
    interval: Literal["EVERY_30_DAYS", "ANNUAL"] = "EVERY_30_DAYS"
    # Features: GIFT_CARD rewards (Points refuses to create or redeem one without).
    gift_card_rewards: bool = False


class CoreSettings(ServiceSettings):
    # The plans a merchant may be on (JSON in LOYALNEST_CORE_PLANS). A change of a plan's
    # limits reaches a merchant's program (and Points) with its next change of plan.
    core_plans: dict[str, PlanDefinition] = {
        "free": PlanDefinition(customers_limit=100, orders_per_month_limit=500),
        "plus": PlanDefinition(price=Decimal("29.00"), gift_card_rewards=True),
    }
    # The plan of a merchant that never chose one.
    core_default_plan: str = "free"
    # How long a cached config:{merchant_id} may outlive a change whose invalidation was lost.
    core_settings_cache_ttl_seconds: int = Field(300, ge=1)
    # usage:{merchant_id} outlives a month, so the month's counts stay warm.
    core_usage_cache_ttl_seconds: int = Field(40 * 24 * 3600, ge=1)
    # Customers' email and names (see loyalnest.platform.pii): base64 of 32 random bytes each.
    core_encryption_key: SecretStr | None = None
    core_encryption_previous_keys: list[SecretStr] = []
    core_blind_index_key: SecretStr | None = None
    # Shopify Billing (paid plans): the Admin GraphQL API (`{shop}` is filled in), where Shopify
    # sends the merchant back after approving a charge, and whether charges are test charges
    # (development stores accept only those; Shopify charges nothing for them).
    shopify_admin_base_url: str = "https://{shop}"
    shopify_admin_timeout_seconds: float = Field(5.0, gt=0)
    core_billing_return_url: str = "https://{shop}/admin/apps/loyalnest"
    core_billing_test: bool = False
    # How long a process remembers Auth's ValidateMerchant answer (webhooks of a merchant
    # unknown or uninstalled are skipped): an uninstall takes effect within it.
    core_merchant_cache_seconds: float = Field(30.0, ge=0)

    @model_validator(mode="after")
    def _default_plan_exists(self) -> CoreSettings:
        if self.core_default_plan not in self.core_plans:
            raise ValueError(
                f"LOYALNEST_CORE_DEFAULT_PLAN {self.core_default_plan!r} is not one of"
                f" LOYALNEST_CORE_PLANS ({', '.join(sorted(self.core_plans))})"
            )
        if self.core_plans[self.core_default_plan].price:
            raise ValueError(
                f"LOYALNEST_CORE_DEFAULT_PLAN {self.core_default_plan!r} must be free (price 0):"
                " every merchant starts on it without approving a charge"
            )
        return self

    def plan_catalogue(self) -> PlanCatalogue:
        return PlanCatalogue(
            {
                name: PlanLimits(
                    plan=name,
                    customers_limit=plan.customers_limit,
                    orders_per_month_limit=plan.orders_per_month_limit,
                    # Always said (true or false): unset is how a plan copied before
                    # features existed reads, which Points leaves unrestricted.
                    gift_card_rewards=plan.gift_card_rewards,
                )
                for name, plan in self.core_plans.items()
            },
            self.core_default_plan,
            {
                name: PlanPrice(plan.price, plan.currency_code, plan.interval)
                for name, plan in self.core_plans.items()
            },
        )


@dataclass
class CoreStores:
    vault: PiiVault
    programs: ProgramStore
    usage: UsageStore
    customers: CustomerStore
    billing: BillingStore
    # Awaited on shutdown (the Redis clients).
    cleanup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def handlers(self, merchants: MerchantGate | None = None) -> dict[str, Handler]:
        return consumers.handlers(
            self.programs, self.usage, self.customers, self.billing, merchants
        )


def open_stores(settings: CoreSettings, database: Database) -> CoreStores:
    # Before anything serves: missing keys must stop the process, not surface per request.
    vault = PiiVault.from_keys(
        settings,
        service="core",
        namespace="core.customers",
        encryption_key=settings.core_encryption_key,
        previous_keys=settings.core_encryption_previous_keys,
        blind_index_key=settings.core_blind_index_key,
    )
    program_cache = usage_cache = None
    cleanup: list[Callable[[], Awaitable[None]]] = []
    if settings.redis_url:
        config_redis = RedisCache.from_url(
            settings.redis_url,
            name="core_config",
            ttl_seconds=settings.core_settings_cache_ttl_seconds,
        )
        usage_redis = RedisCache.from_url(
            settings.redis_url,
            name="core_usage",
            ttl_seconds=settings.core_usage_cache_ttl_seconds,
        )
        program_cache, usage_cache = ProgramCache(config_redis), UsageCache(usage_redis)
        cleanup += [config_redis.close, usage_redis.close]
    else:
        log.warning("LOYALNEST_REDIS_URL unset: programs and usage are read from PostgreSQL")
    programs = ProgramStore(database, settings.plan_catalogue(), program_cache)
    usage = UsageStore(database, programs, usage_cache)
    return CoreStores(
        vault,
        programs,
        usage,
        CustomerStore(database, vault, usage),
        BillingStore(database, programs),
        cleanup,
    )


async def build(settings: CoreSettings) -> ServiceComponents:
    database = Database(settings, DATABASE)
    stores = open_stores(settings, database)
    downstream = CALLS.connect(settings, caller="core")
    auth: auth_pb2_grpc.AuthServiceStub | None = None
    merchants = None
    if settings.service_credential is None:
        log.warning(
            "LOYALNEST_SERVICE_CREDENTIAL unset: no paid plans (no shop tokens for Shopify"
            " Billing), webhooks of unknown merchants are not skipped"
        )
    else:
        auth = downstream.stub(auth_pb2_grpc.AuthServiceStub)
        merchants = MerchantGate(
            auth, component="core", cache_seconds=settings.core_merchant_cache_seconds
        )
    http = HttpClient(api="shopify-admin", timeout_seconds=settings.shopify_admin_timeout_seconds)
    billing = ShopifyBilling(
        ShopifyAdminClient(http, base_url=settings.shopify_admin_base_url),
        auth,
        return_url=settings.core_billing_return_url,
        test=settings.core_billing_test,
    )
    await database.open()
    components = postgres_service(
        settings,
        database,
        service="core",
        group=events.CONSUMER_GROUP,
        handlers=stores.handlers(merchants),
        registrations=[
            Registration(
                SERVICE_NAME,
                core_pb2_grpc.add_CoreServiceServicer_to_server,
                CoreServicer(
                    stores.programs,
                    stores.usage,
                    stores.customers,
                    stores.vault,
                    stores.billing,
                    billing,
                ),
            )
        ],
        cleanup=[*stores.cleanup, http.close, downstream.close],
    )
    components.personal_data = stores.customers
    return components


SPEC = ServiceSpec(
    name="core",
    settings_type=CoreSettings,
    build=build,
    database=DATABASE,
    calls=CALLS,
    personal_data=PersonalData(
        tables=("customers", "customer_rfm", "gdpr_redactions", "customer_import_logs"),
    ),
)
