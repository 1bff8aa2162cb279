"""Wires the edge service into the platform runtime."""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import Field, SecretStr

from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.edge.v1 import edge_pb2, edge_pb2_grpc
from loyalnest.gen.platform.v1 import customer_pseudonyms_pb2_grpc
from loyalnest.gen.xds.envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from loyalnest.platform.calls import Calls
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.crypto import FieldCipher, decode_key
from loyalnest.platform.event_loops import postgres_service
from loyalnest.platform.merchants import MerchantGate
from loyalnest.platform.observability import get_logger
from loyalnest.platform.personal_data import PersonalData
from loyalnest.platform.pii import development_key, on_a_developer_machine
from loyalnest.platform.postgres import Database, DatabaseSpec
from loyalnest.platform.server import Registration, ServiceComponents, ServiceSpec
from loyalnest.services.edge import consumers, events
from loyalnest.services.edge.domain import DEFAULT_PLAN_LIMITS, PlanRateLimit
from loyalnest.services.edge.pseudonyms import SERVICE_NAME as PSEUDONYMS_SERVICE_NAME
from loyalnest.services.edge.pseudonyms import CustomerPseudonymServicer
from loyalnest.services.edge.servicer import EdgeServicer, RateLimitServicer
from loyalnest.services.edge.store.buckets import TokenBuckets
from loyalnest.services.edge.store.customer_keys import CustomerKeys
from loyalnest.services.edge.store.plans import PlanDirectory
from loyalnest.services.edge.store.postgres import EdgeStore

DATABASE = DatabaseSpec(schema="edge", migration_dirs=(Path(__file__).parent / "migrations",))
SERVICE_NAME = edge_pb2.DESCRIPTOR.services_by_name["EdgeService"].full_name
RATE_LIMIT_SERVICE_NAME = rls_pb2.DESCRIPTOR.services_by_name["RateLimitService"].full_name
log = get_logger(__name__)

# Auth: ValidateMerchant of a webhook's shop.
CALLS = Calls(auth=auth_pb2_grpc.AuthServiceStub)


class EdgeSettings(ServiceSettings):
    # The Shopify app's client secret: X-Shopify-Hmac-SHA256 is signed with it. After a
    # rotation Shopify may sign with the old secret for up to an hour: list it in
    # `shopify_api_previous_secrets` (JSON list) meanwhile.
    shopify_api_secret: SecretStr
    shopify_api_previous_secrets: list[SecretStr] = []
    # Deliveries triggered longer ago than this (X-Shopify-Triggered-At, unsigned) are still
    # accepted (Shopify retries for 4 hours) but counted in loyalnest_webhooks_stale_total.
    webhook_stale_after_seconds: float = Field(3600.0, gt=0)
    # How long an event id (webhook_idempotency_keys) and an accepted body's hash
    # (webhook_accepted_bodies) are kept: Shopify retries a delivery 8 times over 4 hours, so
    # 48 hours covers every retry with a wide margin. Redeliveries are deduplicated by it.
    webhook_idempotency_retention_seconds: float = Field(48 * 3600, ge=4 * 3600)
    # How long a (sealed) dead letter is kept for an operator before the purge drops it.
    webhook_dead_letter_retention_seconds: float = Field(14 * 24 * 3600, gt=0)
    # How often each edge process runs the purge (concurrent runs are harmless).
    webhook_purge_interval_seconds: float = Field(3600.0, gt=0)
    # The master key (base64 of 32 random bytes): wraps the per-customer keys that seal
    # customers' data in webhook.received, and seals dead letters. Unset only on a developer's
    # machine (platform/pii.py's rule). Previous keys stay readable during a rotation.
    edge_encryption_key: SecretStr | None = None
    edge_encryption_previous_keys: list[SecretStr] = []
    # How long a process remembers Auth's ValidateMerchant answer for a shop's merchant
    # (deliveries for unknown or uninstalled merchants are acknowledged and skipped): an
    # uninstall takes effect within it. Needs LOYALNEST_SERVICE_CREDENTIAL (the edge's, for
    # its own token); without it nothing is skipped.
    webhook_merchant_cache_seconds: float = Field(30.0, ge=0)

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


def master_cipher(settings: EdgeSettings) -> FieldCipher:
    """The edge's master key; the public development key only beside a local keyset."""
    previous = [
        decode_key(key.get_secret_value(), name="LOYALNEST_EDGE_ENCRYPTION_PREVIOUS_KEYS")
        for key in settings.edge_encryption_previous_keys
    ]
    if settings.edge_encryption_key is not None:
        key = decode_key(
            settings.edge_encryption_key.get_secret_value(), name="LOYALNEST_EDGE_ENCRYPTION_KEY"
        )
    elif on_a_developer_machine(settings):
        log.warning("LOYALNEST_EDGE_ENCRYPTION_KEY unset: using the public development key")
        key = development_key("edge", "encryption")
    else:
        raise ValueError(
            "LOYALNEST_EDGE_ENCRYPTION_KEY is required (base64 of 32 random bytes,"
            " `openssl rand -base64 32`): it protects customers' data in webhook events"
        )
    return FieldCipher(key, previous)


async def purge_loop(store: EdgeStore, settings: EdgeSettings) -> None:
    """Retention: event ids and body hashes past Shopify's retry horizon, dead letters past
    theirs. Errors (a database restart) are logged and the purge retried next interval."""
    while True:
        now = datetime.now(UTC)
        try:
            deleted = await store.purge(
                idempotency_before=now
                - timedelta(seconds=settings.webhook_idempotency_retention_seconds),
                dead_letters_before=now
                - timedelta(seconds=settings.webhook_dead_letter_retention_seconds),
            )
            if any(deleted.values()):
                log.info("webhook records purged", **deleted)
        except Exception:
            log.exception("purging webhook records failed; retrying next interval")
        await asyncio.sleep(settings.webhook_purge_interval_seconds)


def merchant_gate(settings: EdgeSettings, auth: auth_pb2_grpc.AuthServiceStub) -> MerchantGate:
    """ValidateMerchant for webhooks, with the edge's own service token (auth:validate)."""
    if settings.service_credential is None:
        log.warning(
            "LOYALNEST_SERVICE_CREDENTIAL unset: webhooks of unknown or uninstalled merchants"
            " are not skipped"
        )
    return MerchantGate(
        auth if settings.service_credential is not None else None,
        component="edge",
        cache_seconds=settings.webhook_merchant_cache_seconds,
    )


def open_customer_keys(settings: EdgeSettings, database: Database) -> CustomerKeys:
    """The customers' keys, and so their pseudonyms, under the edge's master key."""
    return CustomerKeys(database, master_cipher(settings))


async def build(settings: EdgeSettings) -> ServiceComponents:
    if settings.redis_url is None:
        raise ValueError("the edge service needs LOYALNEST_REDIS_URL (rate limits)")
    secrets = settings.webhook_secrets()
    database = Database(settings, DATABASE)
    await database.open()
    # One cipher for both: building it decodes the keys (and warns of a development key).
    cipher = master_cipher(settings)
    store = EdgeStore(database, cipher)
    customer_keys = CustomerKeys(database, cipher)
    buckets = TokenBuckets.from_url(settings.redis_url)
    plans = PlanDirectory(
        store,
        plans=settings.rate_limit_plans,
        default_plan=settings.rate_limit_default_plan,
        cache_seconds=settings.rate_limit_plan_cache_seconds,
    )
    downstream = CALLS.connect(settings, caller="edge")
    merchants = merchant_gate(settings, downstream.stub(auth_pb2_grpc.AuthServiceStub))
    components = postgres_service(
        settings,
        database,
        service="edge",
        group=events.CONSUMER_GROUP,
        handlers=consumers.handlers(database, plans),
        # The edge owns the pseudonyms: its relay and consumer use its store, no RPC.
        pseudonyms=customer_keys,
        registrations=[
            Registration(
                SERVICE_NAME,
                edge_pb2_grpc.add_EdgeServiceServicer_to_server,
                EdgeServicer(
                    secrets,
                    store,
                    buckets,
                    plans,
                    customer_keys,
                    merchants,
                    stale_after_seconds=settings.webhook_stale_after_seconds,
                ),
            ),
            Registration(
                PSEUDONYMS_SERVICE_NAME,
                customer_pseudonyms_pb2_grpc.add_CustomerPseudonymServiceServicer_to_server,
                CustomerPseudonymServicer(customer_keys),
            ),
            Registration(
                RATE_LIMIT_SERVICE_NAME,
                rls_pb2_grpc.add_RateLimitServiceServicer_to_server,
                RateLimitServicer(buckets, plans, fail_open=settings.rate_limit_fail_open),
            ),
        ],
        cleanup=[buckets.close, downstream.close],
    )
    components.background.append(functools.partial(purge_loop, store, settings))
    components.personal_data = customer_keys
    return components


SPEC = ServiceSpec(
    name="edge",
    settings_type=EdgeSettings,
    build=build,
    database=DATABASE,
    calls=CALLS,
    # The keys sealing customers' data in webhook.received; dead letters (sealed bodies that
    # are not JSON, so name no customer) go with the merchant and after their retention.
    personal_data=PersonalData(tables=("customer_keys",)),
    pseudonym_store=open_customer_keys,
)
