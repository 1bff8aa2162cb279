"""Wires the Points service into the platform runtime."""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr

from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.gen.users.v1 import users_pb2_grpc
from loyalnest.platform import audit
from loyalnest.platform.cache import SharedSubscriber, VersionedCache, client_from_url
from loyalnest.platform.calls import Calls
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.crypto import FieldCipher, decode_key, derive_key
from loyalnest.platform.event_loops import mongo_event_loops, postgres_event_loops
from loyalnest.platform.events.inbox import Handler
from loyalnest.platform.health import Check
from loyalnest.platform.http import HttpClient
from loyalnest.platform.merchants import MerchantGate
from loyalnest.platform.observability import get_logger
from loyalnest.platform.personal_data import PersonalData
from loyalnest.platform.postgres import Database, DatabaseSpec
from loyalnest.platform.server import Registration, ServiceComponents, ServiceSpec
from loyalnest.platform.shop_access import ShopTokens
from loyalnest.platform.shopify_admin import ShopifyAdminClient
from loyalnest.services.points import consumers, events
from loyalnest.services.points.discounts import DiscountCodes, GiftCards, ShopNotConnected
from loyalnest.services.points.earning import (
    Activities,
    Clock,
    NewsletterSignups,
    OrderEarnings,
    ProgramCopies,
    SignupBonuses,
    utc_now,
)
from loyalnest.services.points.expiry import ExpiryReport, PointsExpiry
from loyalnest.services.points.integrations import Integrations, IntegrationStore
from loyalnest.services.points.ledger import CACHE_NAME, STREAM_PATTERN, Ledger, StreamLimits
from loyalnest.services.points.liability import PointsLiability
from loyalnest.services.points.occasions import OccasionReport, Occasions, UsersBirthdays
from loyalnest.services.points.rewards import RewardRedemptions
from loyalnest.services.points.servicer import PointsServicer
from loyalnest.services.points.simulation import RuleSimulation
from loyalnest.services.points.store.base import CUSTOMER_TABLES, LedgerStore
from loyalnest.services.points.store.integrations import (
    MongoIntegrationStore,
    PostgresIntegrationStore,
)
from loyalnest.services.points.store.postgres_liability import PostgresLiabilityTable
from loyalnest.services.points.tiers import ShopifyTags, VipTiers

if TYPE_CHECKING:
    from loyalnest.services.points.store.mongo import MongoLedgerStore
    from loyalnest.services.points.store.mongo_liability import MongoLiabilityTable

DATABASE = DatabaseSpec(
    schema="points", migration_dirs=(audit.MIGRATIONS, Path(__file__).parent / "migrations")
)
log = get_logger(__name__)

SERVICE_NAME = points_pb2.DESCRIPTOR.services_by_name["PointsService"].full_name
# Auth: shops' access tokens (GetShopAccessToken, reward discount codes), ValidateMerchant
# (webhooks), and Points' own service tokens. Users: whose birthday is today (ListBirthdays,
# the occasions job's BIRTHDAY rules).
CALLS = Calls(auth=auth_pb2_grpc.AuthServiceStub, users=users_pb2_grpc.UsersServiceStub)


class PointsSettings(ServiceSettings):
    # postgres: default for the local stack and CI; mongo: the seed's choice, used in the chart.
    points_ledger_store: Literal["postgres", "mongo"] = "postgres"
    mongo_url: str = "mongodb://127.0.0.1:27017"
    mongo_database: str = "loyalnest_points"
    # points:customer:{merchant_id}:{customer_id} (needs LOYALNEST_REDIS_URL): how long an
    # entry may outlive a change whose cache update was lost (see ledger.py).
    points_balance_cache_ttl_seconds: float = Field(300.0, gt=0)
    # Shopify Admin GraphQL API for reward discount codes: `{shop}` is filled in.
    shopify_admin_base_url: str = "https://{shop}"
    shopify_admin_timeout_seconds: float = Field(5.0, gt=0)
    # How long a process remembers Auth's answer to ValidateMerchant (webhook.received for a
    # merchant unknown or uninstalled is skipped): an uninstall takes effect within it.
    points_merchant_cache_seconds: float = Field(30.0, ge=0)
    # How often orders whose pending period ended are credited (and interrupted steps redone).
    points_order_settle_interval_seconds: float = Field(5.0, gt=0)
    # How long a process reuses its copy of a merchant's program before reading it again:
    # the delay after which another process applies a settings change to new orders.
    points_program_cache_seconds: float = Field(10.0, ge=0)
    # StreamPoints calls one process serves: per merchant, and in all (Envoy admits 4,096
    # requests per cluster; one merchant must not take them all). Beyond: RESOURCE_EXHAUSTED.
    points_stream_max_per_merchant: int = Field(100, gt=0)
    points_stream_max_per_process: int = Field(2000, gt=0)
    # Secret the reward discount codes are derived under (HMAC), the same in every replica.
    # Unset: derived from LOYALNEST_SERVICE_CREDENTIAL (without which no code is created).
    points_discount_code_key: SecretStr | None = None
    # Merchant integrations (signed custom activities, integrations.py). The AES-256 key
    # (base64) their secrets are encrypted under, the same in every replica, and keys it
    # replaced (still read until every secret was rotated). Unset: derived from
    # LOYALNEST_SERVICE_CREDENTIAL; neither: a key of this process only (development).
    points_integration_secret_key: SecretStr | None = None
    points_integration_secret_previous_keys: list[SecretStr] = Field(default_factory=list)
    # How far a signed activity's X-LoyalNest-Timestamp may be from now.
    points_activity_replay_window_seconds: float = Field(300.0, gt=0)
    # How long a rotated-out secret is still accepted.
    points_integration_rotation_grace_seconds: float = Field(86400.0, ge=0)


async def build(settings: PointsSettings, *, clock: Clock = utc_now) -> ServiceComponents:
    """`clock` is the time order earnings are pending against (tests move it)."""
    components = ServiceComponents(registrations=[])
    store, database, mongo_store = await _open_store(settings, components)
    if database is not None and settings.run_migrations_on_start:
        components.startup = [Check("migrations", database.migrate)]
    if mongo_store is not None:
        components.startup = [Check("mongo-indexes", mongo_store.ensure_indexes)]
    components.readiness = [Check("ledger-store", store.ping)]
    cache = _balance_cache(settings, components)
    subscriber = None
    if cache is not None:
        subscriber = SharedSubscriber(cache.client, STREAM_PATTERN, name="points_stream")
        components.cleanup.append(subscriber.close)  # reversed: closes before its client
    else:
        log.warning("LOYALNEST_REDIS_URL unset: balances are not cached, StreamPoints is off")
    ledger = Ledger(
        store,
        cache,
        subscriber=subscriber,
        stream_limits=StreamLimits(
            per_merchant=settings.points_stream_max_per_merchant,
            per_process=settings.points_stream_max_per_process,
        ),
    )
    programs = ProgramCopies(ledger, cache_seconds=settings.points_program_cache_seconds)
    orders = OrderEarnings(ledger, programs, clock=clock)
    components.background.append(
        functools.partial(orders.run, settings.points_order_settle_interval_seconds)
    )
    auth = _auth_stub(settings, components)
    http = HttpClient(api="shopify-admin", timeout_seconds=settings.shopify_admin_timeout_seconds)
    components.cleanup.append(http.close)
    tiers = VipTiers(ledger, programs, clock=clock)
    # The liability summary table, fed by the ledger events, in the ledger's database.
    table: PostgresLiabilityTable | MongoLiabilityTable
    if database is not None:
        table = PostgresLiabilityTable(database)
    else:
        from loyalnest.services.points.store.mongo_liability import MongoLiabilityTable

        assert mongo_store is not None  # one of the two stores is built
        table = MongoLiabilityTable(mongo_store)
    if settings.events_enabled:
        merchants = MerchantGate(
            auth, component="points", cache_seconds=settings.points_merchant_cache_seconds
        )
        tags = None
        if auth is not None:
            tags = ShopifyTags(
                ShopifyAdminClient(http, base_url=settings.shopify_admin_base_url),
                ShopTokens(auth, component="points", not_connected=ShopNotConnected),
            )
        handlers = consumers.handlers(
            store,
            programs,
            orders,
            merchants,
            SignupBonuses(ledger, programs),
            tiers,
            tags,
            NewsletterSignups(ledger, programs, clock=clock),
            liability=table.handler(),
        )
        _add_event_loops(settings, components, handlers, database, mongo_store)
    codes = DiscountCodes(
        ShopifyAdminClient(http, base_url=settings.shopify_admin_base_url),
        ShopTokens(auth, component="points", not_connected=ShopNotConnected),
        code_key=_discount_code_key(settings),
    )
    cards = GiftCards(
        ShopifyAdminClient(http, base_url=settings.shopify_admin_base_url),
        ShopTokens(auth, component="points", not_connected=ShopNotConnected),
    )
    components.personal_data = ledger
    integrations = Integrations(
        _integration_store(database, mongo_store, components),
        _integration_cipher(settings),
        replay_window_seconds=settings.points_activity_replay_window_seconds,
        rotation_grace_seconds=settings.points_integration_rotation_grace_seconds,
        clock=clock,
    )
    liability = PointsLiability(ledger.store, programs, clock=clock)
    components.registrations = [
        Registration(
            SERVICE_NAME,
            points_pb2_grpc.add_PointsServiceServicer_to_server,
            PointsServicer(
                ledger,
                RewardRedemptions(
                    ledger, codes, tiers, cards=cards, programs=programs, clock=clock
                ),
                PointsExpiry(ledger, programs, clock=clock),
                orders,
                Activities(ledger, orders, clock=clock),
                tiers,
                liability,
                RuleSimulation(ledger.store, programs, liability, clock=clock),
                integrations,
                liability_table=table,
                merchants=MerchantGate(
                    auth, component="points", cache_seconds=settings.points_merchant_cache_seconds
                )
                if auth is not None
                else None,
            ),
        )
    ]
    return components


async def _open_store(
    settings: PointsSettings, components: ServiceComponents
) -> tuple[LedgerStore, Database | None, MongoLedgerStore | None]:
    """The ledger store the settings name (closed by `components.cleanup`)."""
    if settings.points_ledger_store == "postgres":
        from loyalnest.services.points.store.postgres import PostgresLedgerStore

        database = Database(settings, DATABASE)
        await database.open()
        components.cleanup.append(database.close)
        return PostgresLedgerStore(database), database, None
    from loyalnest.services.points.store.mongo import MongoLedgerStore

    mongo_store = MongoLedgerStore.connect(
        settings.mongo_url,
        settings.mongo_database,
        processed_retention_seconds=settings.processed_events_retention_seconds,
    )
    components.cleanup.append(mongo_store.close)
    return mongo_store, None, mongo_store


def _balance_cache(
    settings: PointsSettings, components: ServiceComponents
) -> VersionedCache | None:
    if not settings.redis_url:
        return None
    cache = VersionedCache(
        client_from_url(settings.redis_url),
        name=CACHE_NAME,
        ttl_seconds=settings.points_balance_cache_ttl_seconds,
    )
    components.cleanup.append(cache.close)
    return cache


async def recalculate_tiers(settings: PointsSettings, *, clock: Clock = utc_now) -> int:
    """One pass of the VIP tier recalculation (`loyalnest points tiers`): downgrades whose
    term ended, renewals, and upgrades missed; idempotent. How many customers changed."""
    components = ServiceComponents(registrations=[])
    try:
        store, _, _ = await _open_store(settings, components)
        ledger = Ledger(store, None)
        programs = ProgramCopies(ledger, cache_seconds=0)
        return await VipTiers(ledger, programs, clock=clock).run()
    finally:
        for close in reversed(components.cleanup):
            await close()


async def backfill_liability(
    settings: PointsSettings, merchant_id: str | None = None
) -> tuple[int, int]:
    """`loyalnest points liability-backfill`: the transactions the liability summary table
    has not counted (a ledger older than the table), counted once each; idempotent, and safe
    while the service's consumer runs. (merchants changed, transactions counted). PostgreSQL
    only: on MongoDB nothing is done."""
    if settings.points_ledger_store != "postgres":
        log.warning("the liability backfill needs the PostgreSQL ledger store: nothing done")
        return 0, 0
    database = Database(settings, DATABASE)
    await database.open()
    try:
        return await PostgresLiabilityTable(database).backfill(merchant_id)
    finally:
        await database.close()


async def expire_points(settings: PointsSettings, *, clock: Clock = utc_now) -> ExpiryReport:
    """One pass of the expiry job (`loyalnest points expire`, the chart's CronJob): the same
    ledger store and balance cache as the service, so balances read after it are current.
    Its events go to the store's outbox, which the service's relay publishes."""
    components = ServiceComponents(registrations=[])
    try:
        store, _, _ = await _open_store(settings, components)
        ledger = Ledger(store, _balance_cache(settings, components))
        programs = ProgramCopies(ledger, cache_seconds=0)
        return await PointsExpiry(ledger, programs, clock=clock).run()
    finally:
        for close in reversed(components.cleanup):
            await close()


async def credit_occasions(
    settings: PointsSettings, day: date | None = None, *, clock: Clock = utc_now
) -> OccasionReport:
    """One pass of the occasions job (`loyalnest points occasions`, the chart's CronJob):
    BIRTHDAY and ANNIVERSARY rules for `day` (default today, UTC); idempotent. Birthdays come
    from Users (Points' declared call, its service token), so they need
    LOYALNEST_SERVICE_CREDENTIAL; without one only anniversaries are credited."""
    components = ServiceComponents(registrations=[])
    try:
        store, _, _ = await _open_store(settings, components)
        ledger = Ledger(store, _balance_cache(settings, components))
        downstream = CALLS.connect(settings, caller="points")
        components.cleanup.append(downstream.close)
        birthdays = merchants = None
        if settings.service_credential is not None:
            birthdays = UsersBirthdays(downstream.stub(users_pb2_grpc.UsersServiceStub))
            merchants = MerchantGate(
                downstream.stub(auth_pb2_grpc.AuthServiceStub),
                component="points",
                cache_seconds=settings.points_merchant_cache_seconds,
            )
        else:
            log.warning("LOYALNEST_SERVICE_CREDENTIAL unset: BIRTHDAY rules are not credited")
        occasions = Occasions(ledger, birthdays, merchants=merchants, clock=clock)
        return await occasions.run(day)
    finally:
        for close in reversed(components.cleanup):
            await close()


def _integration_store(
    database: Database | None,
    mongo_store: MongoLedgerStore | None,
    components: ServiceComponents,
) -> IntegrationStore:
    """Beside the ledger, in whichever database holds it."""
    if database is not None:
        return PostgresIntegrationStore(database)
    assert mongo_store is not None  # one of the two stores is built
    store = MongoIntegrationStore(mongo_store.database)
    components.startup = [
        *components.startup,
        Check("mongo-integration-indexes", store.ensure_indexes),
    ]
    return store


def _integration_cipher(settings: PointsSettings) -> FieldCipher:
    previous = [
        decode_key(k.get_secret_value()) for k in settings.points_integration_secret_previous_keys
    ]
    if settings.points_integration_secret_key is not None:
        return FieldCipher(
            decode_key(settings.points_integration_secret_key.get_secret_value()), previous
        )
    if settings.service_credential is not None:
        credential = settings.service_credential.get_secret_value().encode()
        return FieldCipher(derive_key(credential, "loyalnest points integration secrets"), previous)
    log.warning(
        "LOYALNEST_POINTS_INTEGRATION_SECRET_KEY and LOYALNEST_SERVICE_CREDENTIAL unset:"
        " integration secrets are readable by this process only (development)"
    )
    return FieldCipher(os.urandom(32), previous)


def _discount_code_key(settings: PointsSettings) -> bytes:
    if settings.points_discount_code_key is not None:
        return settings.points_discount_code_key.get_secret_value().encode()
    if settings.service_credential is not None:
        credential = settings.service_credential.get_secret_value().encode()
        return hmac.new(credential, b"loyalnest points discount codes", hashlib.sha256).digest()
    return os.urandom(32)  # no shop token without a credential: no code is ever created


def _auth_stub(
    settings: PointsSettings, components: ServiceComponents
) -> auth_pb2_grpc.AuthServiceStub | None:
    """Auth, called with Points' own service tokens (on_own_behalf / acting_for): shop tokens
    for discount codes, and ValidateMerchant for webhooks. None without
    LOYALNEST_SERVICE_CREDENTIAL (no discount codes then; webhooks are not checked)."""
    downstream = CALLS.connect(settings, caller="points")
    components.cleanup.append(downstream.close)
    if settings.service_credential is None:
        log.warning(
            "LOYALNEST_SERVICE_CREDENTIAL unset: no reward discount codes (no shop tokens),"
            " webhooks of unknown merchants are not skipped"
        )
        return None
    return downstream.stub(auth_pb2_grpc.AuthServiceStub)


def _add_event_loops(
    settings: PointsSettings,
    components: ServiceComponents,
    handlers: dict[str, Handler],
    database: Database | None,
    mongo_store: MongoLedgerStore | None,
) -> None:
    """The outbox relay of whichever store holds the ledger, and the consumer (users, Core's
    settings, webhooks), as background loops."""
    if database is not None:
        components.background += postgres_event_loops(
            settings, database, service="points", group=events.CONSUMER_GROUP, handlers=handlers
        )
        return
    assert mongo_store is not None  # one of the two stores is built
    components.background += mongo_event_loops(
        settings,
        mongo_store.database,
        service="points",
        group=events.CONSUMER_GROUP,
        handlers=handlers,
    )


SPEC = ServiceSpec(
    name="points",
    settings_type=PointsSettings,
    build=build,
    database=DATABASE,
    calls=CALLS,
    # The stores' erase_customer moves exactly these tables' rows off the customer's id.
    # customer_segments: exported, and deleted (not moved) on erasure (store.erase_customer).
    personal_data=PersonalData(tables=("ledgers", *CUSTOMER_TABLES, "customer_segments")),
)
