"""Wires the Referrals service into the platform runtime."""

from __future__ import annotations

import functools
from pathlib import Path

import redis.asyncio as redis
from pydantic import Field, SecretStr

from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.points.v1 import points_pb2_grpc
from loyalnest.gen.referrals.v1 import referrals_pb2, referrals_pb2_grpc
from loyalnest.platform import audit
from loyalnest.platform.calls import Calls
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.event_loops import postgres_service
from loyalnest.platform.http import HttpClient
from loyalnest.platform.observability import get_logger
from loyalnest.platform.personal_data import ByShopifyId, PersonalData
from loyalnest.platform.postgres import Database, DatabaseSpec
from loyalnest.platform.server import Registration, ServiceComponents, ServiceSpec
from loyalnest.platform.shop_access import ShopTokens
from loyalnest.platform.shopify_admin import ShopifyAdminClient
from loyalnest.services.referrals import consumers, events
from loyalnest.services.referrals.crediting import RewardCredits, expiry_sweep
from loyalnest.services.referrals.discounts import FriendDiscounts, ShopNotConnected
from loyalnest.services.referrals.invites import InviteStore
from loyalnest.services.referrals.sending import Credentials, InviteSender, SesSettings
from loyalnest.services.referrals.servicer import ReferralsServicer
from loyalnest.services.referrals.shops import ShopDomains
from loyalnest.services.referrals.status_feed import StatusFeed
from loyalnest.services.referrals.store import ReferralStore

NAME = "referrals"
log = get_logger(__name__)
# The audit trigger function must exist before referrals_0001 attaches it.
DATABASE = DatabaseSpec(
    schema=NAME, migration_dirs=(audit.MIGRATIONS, Path(__file__).parent / "migrations")
)
SERVICE_NAME = referrals_pb2.DESCRIPTOR.services_by_name["ReferralsService"].full_name
# Auth: the merchant's shop (ValidateMerchant) and Referrals' own service tokens; Points:
# the referrers' rewards (EarnPoints, with Referrals' token for the merchant).
CALLS = Calls(auth=auth_pb2_grpc.AuthServiceStub, points=points_pb2_grpc.PointsServiceStub)


class ReferralsSettings(ServiceSettings):
    # How often rewards due are sent to Points (and failed ones retried).
    referrals_reward_interval_seconds: float = Field(1.0, gt=0)
    # How often codes past their expiry are marked EXPIRED.
    referrals_expiry_interval_seconds: float = Field(60.0, gt=0)
    # How often friend discount codes Shopify did not take yet are tried again.
    referrals_discount_retry_interval_seconds: float = Field(10.0, gt=0)
    # Shopify Admin GraphQL API for friend discount codes: `{shop}` is filled in.
    shopify_admin_base_url: str = "https://{shop}"
    shopify_admin_timeout_seconds: float = Field(5.0, gt=0)
    # Invites (sending.py): how often queued ones are sent, and the providers. Keys per
    # merchant: JSON {"<merchant_id>" or "*": {"klaviyo_api_key", "postscript_api_key"}},
    # from the chart's Secret, never logged.
    referrals_invite_interval_seconds: float = Field(1.0, gt=0)
    referrals_provider_keys: SecretStr | None = None
    referrals_provider_timeout_seconds: float = Field(5.0, gt=0)
    referrals_provider_attempts: int = Field(3, ge=1)
    klaviyo_base_url: str = "https://a.klaviyo.com"
    postscript_base_url: str = "https://api.postscript.io"
    # AWS SES v2, the email fallback; unset endpoint: no fallback (a failed Klaviyo call
    # fails the invite). The endpoint is SES's regional one in production.
    ses_endpoint_url: str | None = None
    ses_region: str = "us-east-1"
    ses_access_key_id: str = ""
    ses_secret_access_key: SecretStr = SecretStr("")
    ses_from_address: str = ""


async def build(settings: ReferralsSettings) -> ServiceComponents:
    database = Database(settings, DATABASE)
    await database.open()
    store = ReferralStore(database)
    downstream = CALLS.connect(settings, caller=NAME)
    auth = points = None
    if settings.service_credential is None:
        log.warning(
            "LOYALNEST_SERVICE_CREDENTIAL unset: rewards stay due (Points is not called),"
            " shops are known from webhooks only"
        )
    else:
        auth = downstream.stub(auth_pb2_grpc.AuthServiceStub)
        points = downstream.stub(points_pb2_grpc.PointsServiceStub)
    http = HttpClient(api="shopify-admin", timeout_seconds=settings.shopify_admin_timeout_seconds)
    discounts = FriendDiscounts(
        store,
        ShopifyAdminClient(http, base_url=settings.shopify_admin_base_url),
        ShopTokens(auth, component=NAME, not_connected=ShopNotConnected),
    )
    feed = None
    if settings.redis_url:
        feed = StatusFeed(redis.Redis.from_url(settings.redis_url))
    else:
        log.warning("LOYALNEST_REDIS_URL unset: no live referral status (StreamReferralStatus)")
    invites = InviteStore(database)
    provider_http = [
        HttpClient(
            api=api,
            timeout_seconds=settings.referrals_provider_timeout_seconds,
            attempts=settings.referrals_provider_attempts,
        )
        for api in ("klaviyo", "postscript")
    ]
    sender = InviteSender(
        invites,
        credentials=Credentials(settings.referrals_provider_keys),
        klaviyo=provider_http[0],
        klaviyo_base_url=settings.klaviyo_base_url,
        postscript=provider_http[1],
        postscript_base_url=settings.postscript_base_url,
        ses=SesSettings(
            endpoint_url=settings.ses_endpoint_url,
            region=settings.ses_region,
            access_key_id=settings.ses_access_key_id,
            secret_access_key=settings.ses_secret_access_key,
            from_address=settings.ses_from_address,
        )
        if settings.ses_endpoint_url
        else None,
        feed=feed,
    )
    components = postgres_service(
        settings,
        database,
        service=NAME,
        group=events.CONSUMER_GROUP,
        handlers=consumers.handlers(store, database, feed),
        registrations=[
            Registration(
                SERVICE_NAME,
                referrals_pb2_grpc.add_ReferralsServiceServicer_to_server,
                ReferralsServicer(store, ShopDomains(store, auth), discounts, feed, invites),
            )
        ],
        cleanup=[
            downstream.close,
            http.close,
            *(client.close for client in provider_http),
            *([feed.close] if feed else []),
        ],
    )
    credits = RewardCredits(store, points)
    components.background += [
        functools.partial(credits.run, settings.referrals_reward_interval_seconds),
        functools.partial(expiry_sweep, store, settings.referrals_expiry_interval_seconds),
        functools.partial(discounts.run, settings.referrals_discount_retry_interval_seconds),
        functools.partial(sender.run, settings.referrals_invite_interval_seconds),
    ]
    components.personal_data = ByShopifyId(store)
    return components


SPEC = ServiceSpec(
    name=NAME,
    settings_type=ReferralsSettings,
    build=build,
    database=DATABASE,
    calls=CALLS,
    personal_data=PersonalData(
        tables=("referrals", "conversions", "rewards", "customer_orders", "invites")
    ),
)
