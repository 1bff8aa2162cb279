"""One GDPR redaction makes the customer one anonymous customer across the mesh (issue 18).

Real Auth (service tokens), AdminCore and every personal-data holder on PostgreSQL, events
off (a relay or Kafka down: the customer's events wait in the outboxes). AdminCore's
redaction sends every service the request's erasure key; Points and Core each redact their
unsent events and move their rows to the same `erased:` id, so a consumer adding things up
per customer later sees one anonymous customer, not one per producer. The id is a keyed
hash under a random key AdminCore forgets when the request completes: it does not follow
from the customer's id.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from typing import Any

import grpc
import psycopg
import pytest

from loyalnest.gen.admin_core.v1 import admin_core_pb2 as admin_pb
from loyalnest.gen.admin_core.v1 import admin_core_pb2_grpc
from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.core.v1 import core_pb2, core_pb2_grpc
from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.platform.auth.service_identity import service_credential
from loyalnest.platform.events.envelope import Envelope
from loyalnest.platform.events.topics import spec_for_type
from loyalnest.platform.personal_data import ERASED_PREFIX, HOLDERS, anonymous_id
from loyalnest.platform.tenancy import merchant_id_for_shop
from loyalnest.services.admin_core.service import SPEC as ADMIN_CORE
from loyalnest.services.admin_core.service import AdminCoreSettings
from loyalnest.services.auth.service import SPEC as AUTH
from loyalnest.services.campaign.service import SPEC as CAMPAIGN
from loyalnest.services.campaign.service import CampaignSettings
from loyalnest.services.core.service import SPEC as CORE
from loyalnest.services.edge.service import SPEC as EDGE
from loyalnest.services.event_tracking.service import SPEC as EVENT_TRACKING
from loyalnest.services.event_tracking.service import EventTrackingSettings
from loyalnest.services.gamification.service import SPEC as GAMIFICATION
from loyalnest.services.points.service import SPEC as POINTS
from loyalnest.services.products.service import SPEC as PRODUCTS
from loyalnest.services.products.service import ProductsSettings
from loyalnest.services.referrals.service import SPEC as REFERRALS
from loyalnest.services.rfm.service import SPEC as RFM
from loyalnest.services.users.service import SPEC as USERS
from loyalnest.services.users.service import UsersSettings
from tests.auth import merchant_metadata
from tests.integration.conftest import (
    eventually,
    points_settings,
    service_settings_for_tests,
    serving,
)
from tests.integration.shopify_standin import ShopifyStandIn
from tests.integration.test_access_wiring import auth_with, edge_settings_asking
from tests.integration.test_auth_service import install
from tests.integration.test_core_service import core_settings
from tests.integration.test_gamification_service import settings_for as gamification_settings
from tests.integration.test_referrals_service import referrals_settings
from tests.integration.test_rfm_service import rfm_settings
from tests.integration.test_service_identity import MASTER_KEY

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PERMISSIONS = ("points:write", "points:read", "core:write", "core:read", "admin_core:gdpr")


async def unsent_events(database_url: str, schema: str, merchant_id: str) -> list[Any]:
    """The payloads of the merchant's events waiting in `schema`'s outbox, with their keys."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            f"SELECT partition_key, envelope FROM {schema}.outbox"
            " WHERE sent_at IS NULL AND partition_key LIKE %s ORDER BY id",
            (f"{merchant_id}/%",),
        )
        rows = await cursor.fetchall()
    found = []
    for key, raw in rows:
        envelope = Envelope.FromString(bytes(raw))
        payload = spec_for_type(envelope.event_type).payload_type()
        assert envelope.payload.Unpack(payload)
        found.append((key, payload))
    return found


async def test_one_redaction_gives_the_customer_one_anonymous_id_in_every_producer(
    database_url: str, redis_url: str, shopify: ShopifyStandIn
) -> None:
    shop = f"anon-{uuid.uuid4().hex[:8]}.myshopify.com"
    merchant_id = merchant_id_for_shop(shop)
    customer, other = (str(8_200_000_000_000 + uuid.uuid4().int % 10**9) for _ in range(2))
    md = merchant_metadata(merchant_id, PERMISSIONS)
    async with (
        serving(AUTH, auth_with(database_url, redis_url, shopify)) as auth,
        grpc.aio.insecure_channel(auth.address) as auth_channel,
    ):
        await install(auth_pb2_grpc.AuthServiceStub(auth_channel), shopify, shop)
        # Every holder answers (a redaction first asks them all for the customer's
        # identifiers); Points and Core are the two producers looked at.
        _, edge = edge_settings_asking(
            auth, database_url, redis_url, secret="anon-secret", cache_seconds=0.2, events={}
        )
        holders: dict[str, tuple[Any, Any]] = {
            "points": (POINTS, points_settings(database_url, redis_url=redis_url)),
            "core": (CORE, core_settings(database_url, redis_url)),
            "edge": (EDGE, edge),
            "users": (USERS, service_settings_for_tests(UsersSettings, database_url)),
            "rfm": (RFM, rfm_settings(database_url, redis_url)),
            "gamification": (GAMIFICATION, gamification_settings(database_url, redis_url)),
            "event_tracking": (
                EVENT_TRACKING,
                service_settings_for_tests(EventTrackingSettings, database_url),
            ),
            "products": (
                PRODUCTS,
                service_settings_for_tests(ProductsSettings, database_url, redis_url=redis_url),
            ),
            "campaign": (
                CAMPAIGN,
                service_settings_for_tests(CampaignSettings, database_url, redis_url=redis_url),
            ),
            "referrals": (REFERRALS, referrals_settings(database_url, redis_url=redis_url)),
        }
        async with contextlib.AsyncExitStack() as stack:
            running = {
                name: await stack.enter_async_context(serving(spec, settings))
                for name, (spec, settings) in holders.items()
            }
            targets = {"auth": auth.address} | {n: r.address for n, r in running.items()}
            assert set(targets) == set(HOLDERS)
            points, core = running["points"], running["core"]
            admin_settings = service_settings_for_tests(
                AdminCoreSettings,
                database_url,
                service_credential=service_credential(MASTER_KEY, "admin_core"),
                call_targets=targets,
                admin_core_gdpr_interval_seconds=0.2,
            )
            async with (
                serving(ADMIN_CORE, admin_settings) as admin,
                grpc.aio.insecure_channel(admin.address) as admin_channel,
                grpc.aio.insecure_channel(points.address) as points_channel,
                grpc.aio.insecure_channel(core.address) as core_channel,
            ):
                points_stub = points_pb2_grpc.PointsServiceStub(points_channel)
                core_stub = core_pb2_grpc.CoreServiceStub(core_channel)
                for who in (customer, other):
                    await points_stub.EarnPoints(
                        points_pb2.EarnPointsRequest(
                            customer_id=who, points=40, reason="welcome", idempotency_key=who
                        ),
                        metadata=md,
                    )
                    await core_stub.CreateCustomer(
                        core_pb2.CreateCustomerRequest(
                            customer=core_pb2.Customer(
                                shopify_customer_id=who, email=f"{who}@example.org"
                            ),
                            idempotency_key=who,
                        ),
                        metadata=md,
                    )
                stub = admin_core_pb2_grpc.AdminCoreServiceStub(admin_channel)
                filed = await stub.HandleGDPRRequest(
                    admin_pb.HandleGDPRRequestRequest(
                        type=admin_pb.GDPR_REQUEST_TYPE_CUSTOMER_REDACT,
                        customer_id=customer,
                        idempotency_key="redact-anon",
                    ),
                    metadata=md,
                )

                async def producers_erased() -> bool:
                    got = await stub.GetGDPRRequest(
                        admin_pb.GetGDPRRequestRequest(request_id=filed.request.request_id),
                        metadata=md,
                    )
                    steps = {s.service: s.status for s in got.request.steps}
                    done = admin_pb.GDPR_REQUEST_STATUS_COMPLETED
                    return steps["points"] == done and steps["core"] == done

                await eventually(producers_erased, timeout=90, what="Points' and Core's steps")

    points_events = await unsent_events(database_url, "points", merchant_id)
    core_events = await unsent_events(database_url, "core", merchant_id)
    # The other customer's events are untouched, in both.
    assert any(getattr(p, "customer_id", "") == other for _, p in points_events)
    assert any(getattr(p, "shopify_customer_id", "") == other for _, p in core_events)

    erased_in_points = {
        p.customer_id
        for _, p in points_events
        if getattr(p, "customer_id", "").startswith(ERASED_PREFIX)
    }
    erased_in_core = {
        p.shopify_customer_id
        for _, p in core_events
        if getattr(p, "shopify_customer_id", "").startswith(ERASED_PREFIX)
    }
    assert len(erased_in_points) == 1, erased_in_points
    (anonymous,) = erased_in_points
    assert erased_in_core == {anonymous}
    # The record keys moved with them (no key names the customer any more).
    assert not [k for k, _ in points_events + core_events if customer in k]
    assert any(k == f"{merchant_id}/{anonymous}" for k, _ in points_events)

    # Their rows too: Points' ledger and Core's customer carry the same id.
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        ledger = await (
            await conn.execute(
                "SELECT balance FROM points.ledgers WHERE merchant_id = %s AND customer_id = %s",
                (merchant_id, anonymous),
            )
        ).fetchone()
        core_row = await (
            await conn.execute(
                "SELECT email_ciphertext FROM core.customers"
                " WHERE merchant_id = %s AND shopify_customer_id = %s",
                (merchant_id, anonymous),
            )
        ).fetchone()
    assert ledger == (40,)
    assert core_row == (None,)

    # Nothing derives it from the customer's id alone: not a plain or merchant-salted digest,
    # nor the keyed one under an empty or guessable key.
    for candidate in (
        hashlib.sha256(customer.encode()).hexdigest(),
        hashlib.sha256(f"{merchant_id}{customer}".encode()).hexdigest(),
        hashlib.sha256(f"{merchant_id}/{customer}".encode()).hexdigest(),
        uuid.uuid5(uuid.NAMESPACE_OID, customer).hex,
    ):
        assert candidate[:32] not in anonymous
    for key in (b"", merchant_id.encode(), customer.encode(), bytes(32)):
        assert anonymous_id(key, customer) != anonymous
    assert customer not in anonymous
