"""Campaigns at Shopify, through real processes: Auth (the shop's token), Campaign (its own
service credential), a Kafka-protocol broker carrying RFM's rfm.updated, Envoy in front, and
Shopify's Admin API played by the stand-in (tests/integration/shopify_admin_standin.py).

- A campaign for an RFM segment creates the right code discount (bound to the segment's
  customers), pauses and resumes it at Shopify, and ApplyCampaign answers for customers in
  and out of the segment;
- a lost answer (the code exists, the reply never came) is settled by TAKEN + lookup, and
  THROTTLED is waited out, or UNAVAILABLE with RetryInfo when it lasts;
- Shopify's 25 active automatic discounts are a precondition failure before any call;
- the reconcile job puts a drifted discount back in line and ends a campaign whose discount
  was deleted at Shopify.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import timestamp_pb2
from prometheus_client import REGISTRY

from loyalnest.devstack.standins.shopify_admin import ShopifyAdminStandIn
from loyalnest.gateway import Upstream
from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.campaign.v1 import campaign_pb2 as pb
from loyalnest.gen.campaign.v1 import campaign_pb2_grpc
from loyalnest.gen.events.v1 import envelope_pb2, rfm_pb2
from loyalnest.platform.auth.service_identity import service_credential
from loyalnest.platform.events.clients import OutgoingRecord, Publisher, new_publisher
from loyalnest.platform.events.envelope import new_event
from loyalnest.services.auth.service import SPEC as AUTH
from loyalnest.services.campaign.domain import customer_code
from loyalnest.services.campaign.service import SERVICE_NAME, SPEC, CampaignSettings
from tests.auth import merchant_headers, merchant_metadata
from tests.integration.broker import BrokerProcess
from tests.integration.conftest import eventually, service_settings_for_tests, serving
from tests.integration.shopify_standin import API_KEY, API_SECRET
from tests.integration.test_access_wiring import auth_with, events_on
from tests.integration.test_auth_service import install
from tests.integration.test_campaign_service import summer, violations
from tests.integration.test_gateway_validate import Gateway, gateway_config, http, running_gateway
from tests.integration.test_service_identity import MASTER_KEY

pytestmark = pytest.mark.integration

READ, WRITE = "campaign:read", "campaign:write"
Stub = campaign_pb2_grpc.CampaignServiceStub


@pytest.fixture
def shopify() -> Iterator[ShopifyAdminStandIn]:
    standin = ShopifyAdminStandIn(api_key=API_KEY, api_secret=API_SECRET)
    standin.start()
    yield standin
    standin.stop()


@dataclass
class Mesh:
    campaign: Stub
    gateway: Gateway
    publisher: Publisher
    shop: str
    merchant_id: str

    async def rfm(self, customer_id: str, segment: int, at: datetime | None = None) -> None:
        """RFM scored a customer (rfm.updated on the broker, as the RFM service sends it)."""
        event = new_event(
            self.merchant_id,
            rfm_pb2.RfmUpdated(customer_id=customer_id, segment=segment),  # type: ignore[arg-type]
            occurred_at=at,
        )
        errors = await self.publisher.publish(
            [OutgoingRecord.of(event.spec.topic.name, event.key, event.value, event.headers)]
        )
        assert errors == [None]

    def write(self) -> tuple[tuple[str, str], ...]:
        return merchant_metadata(self.merchant_id, (WRITE,))

    def read(self) -> tuple[tuple[str, str], ...]:
        return merchant_metadata(self.merchant_id, (READ,))

    async def applicable(self, customer_id: str, subtotal: str) -> list[str]:
        response = await self.campaign.ApplyCampaign(
            pb.ApplyCampaignRequest(customer_id=customer_id, cart=pb.Cart(subtotal=subtotal)),
            metadata=self.read(),
        )
        return [c.campaign_id for c in response.campaigns]


@contextlib.asynccontextmanager
async def mesh(
    database_url: str,
    redis_url: str,
    shopify: ShopifyAdminStandIn,
    tmp_path: Path,
    *,
    reconcile_seconds: float = 3600,
) -> AsyncIterator[Mesh]:
    broker = BrokerProcess()
    await broker.start()
    events = events_on(broker)
    publisher: Publisher | None = None
    try:
        async with serving(AUTH, auth_with(database_url, redis_url, shopify, **events)) as auth:
            settings = service_settings_for_tests(
                CampaignSettings,
                database_url,
                redis_url=redis_url,
                service_credential=service_credential(MASTER_KEY, "campaign"),
                shopify_admin_base_url=shopify.base_url,
                campaign_reconcile_interval_seconds=reconcile_seconds,
                call_targets={"auth": auth.address},
                **events,
            )
            publisher = new_publisher(settings, "test-rfm")
            async with (
                serving(SPEC, settings) as campaign,
                grpc.aio.insecure_channel(auth.address) as auth_channel,
                grpc.aio.insecure_channel(campaign.address) as channel,
            ):
                shop = f"c{uuid.uuid4().hex[:8]}.myshopify.com"
                merchant = await install(auth_pb2_grpc.AuthServiceStub(auth_channel), shopify, shop)
                upstream = Upstream("campaign", (SERVICE_NAME,), (("127.0.0.1", campaign.port),))
                async with running_gateway(
                    gateway_config(upstream), tmp_path, {"campaign": 1}
                ) as gateway:
                    yield Mesh(
                        Stub(channel), gateway, publisher, shop, merchant.merchant.merchant_id
                    )
    finally:
        if publisher is not None:
            await publisher.close()
        broker.close()


async def segments_applied(database_url: str, merchant_id: str, expected: dict[str, str]) -> None:
    async def applied() -> bool:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT customer_id, segment FROM campaign.customer_segments"
                " WHERE merchant_id = %s",
                (merchant_id,),
            )
            return dict(await cursor.fetchall()) == expected

    await eventually(applied, 30, f"segments {expected}")


async def outbox_events(database_url: str, merchant_id: str) -> list[tuple[str, str]]:
    """(event type, state) of the campaign events Campaign published for the merchant."""
    from loyalnest.gen.events.v1 import campaign_pb2 as campaign_events

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT envelope FROM campaign.outbox ORDER BY id", ())
        rows = await cursor.fetchall()
    found = []
    for (raw,) in rows:
        envelope = envelope_pb2.Envelope.FromString(bytes(raw))
        # The outbox also carries the audit shipper's audit_log.recorded: not Campaign's own.
        if envelope.merchant_id != merchant_id or not envelope.event_type.startswith("campaign."):
            continue
        payload: Any = (
            campaign_events.CampaignCreated()
            if envelope.event_type == "campaign.created"
            else campaign_events.CampaignStateChanged()
        )
        envelope.payload.Unpack(payload)
        found.append((envelope.event_type, payload.state))
    return found


def later(**delta: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(datetime.now(UTC) + timedelta(**delta))
    return stamp


async def test_segment_campaign_at_shopify(
    database_url: str, redis_url: str, shopify: ShopifyAdminStandIn, tmp_path: Path
) -> None:
    async with mesh(database_url, redis_url, shopify, tmp_path) as m:
        # RFM scores three customers; 7003 leaves AT_RISK with a newer score, and an older
        # score arriving late changes nothing.
        now = datetime.now(UTC)
        await m.rfm("7001", rfm_pb2.RFM_SEGMENT_AT_RISK, now)
        await m.rfm("7002", rfm_pb2.RFM_SEGMENT_HIGH_VALUE, now)
        await m.rfm("7003", rfm_pb2.RFM_SEGMENT_AT_RISK, now - timedelta(minutes=1))
        await m.rfm("7003", rfm_pb2.RFM_SEGMENT_NEW, now)
        await m.rfm("7001", rfm_pb2.RFM_SEGMENT_NEW, now - timedelta(minutes=5))
        await segments_applied(
            database_url,
            m.merchant_id,
            {
                "7001": "RFM_SEGMENT_AT_RISK",
                "7002": "RFM_SEGMENT_HIGH_VALUE",
                "7003": "RFM_SEGMENT_NEW",
            },
        )

        # Created and published in one call, over REST through Envoy.
        headers = merchant_headers(m.merchant_id, (READ, WRITE))
        body = {
            "campaign": {
                "name": "We miss you",
                "kind": "CAMPAIGN_KIND_SHARED_CODE",
                "rules": {
                    "type": "DISCOUNT_TYPE_PERCENTAGE",
                    "value": "20",
                    "minimum_subtotal": "30.00",
                    "usage_limit": "100",
                    "once_per_customer": True,
                    "combines_with": {"shipping_discounts": True},
                },
                "audience": {"rfm_segments": ["RFM_SEGMENT_AT_RISK"]},
                "end_time": later(days=30).ToJsonString(),
            },
            "idempotency_key": "win-back-1",
        }
        created = await http(
            "POST", f"{m.gateway.url}/v1/api/campaigns", headers=headers, json_body=body
        )
        assert created.status == 200, created.body
        campaign = created.json()["campaign"]
        assert campaign["state"] == "CAMPAIGN_STATE_ACTIVE"
        code = campaign["code"]
        assert code.startswith("LN-")
        discount = shopify.codes_of(m.shop)[code]
        assert discount["id"] == campaign["shopify_discount_id"]
        assert discount["status"] == "ACTIVE"
        sent = discount["input"]
        assert sent["title"].startswith("We miss you (LoyalNest ")
        assert sent["customerSelection"] == {"customers": {"add": ["gid://shopify/Customer/7001"]}}
        assert sent["customerGets"] == {"value": {"percentage": 0.2}, "items": {"all": True}}
        assert sent["minimumRequirement"] == {"subtotal": {"greaterThanOrEqualToSubtotal": "30.00"}}
        assert sent["usageLimit"] == 100 and sent["appliesOncePerCustomer"] is True
        assert sent["combinesWith"] == {
            "orderDiscounts": False,
            "productDiscounts": False,
            "shippingDiscounts": True,
        }
        assert "endsAt" in sent
        # The same request again: the same campaign, nothing more at Shopify.
        calls = shopify.calls
        again = await http(
            "POST", f"{m.gateway.url}/v1/api/campaigns", headers=headers, json_body=body
        )
        assert again.json()["campaign"] == campaign
        assert shopify.calls == calls

        campaign_id = campaign["campaign_id"]
        # Eligibility: 7001 (AT_RISK) with enough in the cart; not 7002, not a small cart.
        assert await m.applicable("7001", "45.00") == [campaign_id]
        assert await m.applicable("7001", "29.99") == []
        assert await m.applicable("7002", "45.00") == []
        # 7002 moves into AT_RISK: eligible from the next call.
        await m.rfm("7002", rfm_pb2.RFM_SEGMENT_AT_RISK)

        async def eligible_7002() -> bool:
            return await m.applicable("7002", "45.00") == [campaign_id]

        await eventually(eligible_7002, 30, "7002 eligible after moving into AT_RISK")
        # ... and bound to the code at Shopify; 7001 leaving the segment is unbound.
        selection = shopify.codes_of(m.shop)[code]["input"]["customerSelection"]
        assert selection == {
            "customers": {"add": ["gid://shopify/Customer/7001", "gid://shopify/Customer/7002"]}
        }
        await m.rfm("7001", rfm_pb2.RFM_SEGMENT_HIGH_VALUE)

        async def unbound_7001() -> bool:
            selection = shopify.codes_of(m.shop)[code]["input"]["customerSelection"]
            return bool(selection == {"customers": {"add": ["gid://shopify/Customer/7002"]}})

        await eventually(unbound_7001, 30, "7001 removed from the code's customers")

        # Shopify hears of it inside the event's transaction, ApplyCampaign's Redis copy
        # after its commit (consumers.py): a moment later.
        async def ineligible_7001() -> bool:
            return await m.applicable("7001", "45.00") == []

        await eventually(ineligible_7001, 30, "7001 no longer eligible")
        await m.rfm("7001", rfm_pb2.RFM_SEGMENT_AT_RISK)

        async def bound_again() -> bool:
            return await m.applicable("7001", "45.00") == [campaign_id]

        await eventually(bound_again, 30, "7001 back in AT_RISK")

        # Paused: deactivated at Shopify, applies to nobody; resumed: active again.
        url = f"{m.gateway.url}/v1/api/campaigns/{campaign_id}"
        paused = await http(
            "POST", f"{url}/pause", headers=headers, json_body={"idempotency_key": "p1"}
        )
        assert (
            paused.status == 200 and paused.json()["campaign"]["state"] == "CAMPAIGN_STATE_PAUSED"
        )
        assert shopify.codes_of(m.shop)[code]["status"] == "EXPIRED"
        assert await m.applicable("7001", "45.00") == []
        resumed = await http(
            "POST", f"{url}/resume", headers=headers, json_body={"idempotency_key": "r1"}
        )
        assert (
            resumed.status == 200 and resumed.json()["campaign"]["state"] == "CAMPAIGN_STATE_ACTIVE"
        )
        assert shopify.codes_of(m.shop)[code]["status"] == "ACTIVE"
        assert await m.applicable("7001", "45.00") == [campaign_id]
        # A second resume (new key) is a precondition failure, a 400 naming it.
        twice = await http(
            "POST", f"{url}/resume", headers=headers, json_body={"idempotency_key": "r2"}
        )
        assert twice.status == 400 and "NOT_PAUSED" in twice.body.decode(), twice.body

        # Shopify throttles once: waited out (cost-based), the pause goes through.
        shopify.throttle_next, shopify.throttle_status = 1, 429
        throttled = await m.campaign.PauseCampaign(
            pb.PauseCampaignRequest(campaign_id=campaign_id, idempotency_key="p2"),
            metadata=m.write(),
        )
        assert throttled.campaign.state == pb.CAMPAIGN_STATE_PAUSED
        assert shopify.throttle_next == 0
        # Throttled for longer than the client waits: UNAVAILABLE with RetryInfo, unchanged.
        shopify.throttle_next, shopify.throttle_status = 10, 200
        with pytest.raises(grpc.aio.AioRpcError) as unavailable:
            await m.campaign.ResumeCampaign(
                pb.ResumeCampaignRequest(campaign_id=campaign_id, idempotency_key="r3"),
                metadata=m.write(),
            )
        assert unavailable.value.code() == grpc.StatusCode.UNAVAILABLE
        assert any(k == "retry-after" for k, _ in unavailable.value.trailing_metadata() or ())
        shopify.throttle_next = 0
        got = await m.campaign.GetCampaign(
            pb.GetCampaignRequest(campaign_id=campaign_id), metadata=m.read()
        )
        assert got.campaign.state == pb.CAMPAIGN_STATE_PAUSED
        # The same key once Shopify answers again: resumed.
        retried = await m.campaign.ResumeCampaign(
            pb.ResumeCampaignRequest(campaign_id=campaign_id, idempotency_key="r3"),
            metadata=m.write(),
        )
        assert retried.campaign.state == pb.CAMPAIGN_STATE_ACTIVE

        # A lost answer: Shopify made the code, the reply was a 503; the retry meets TAKEN,
        # finds the code under this campaign's title, and counts it as made.
        shopify.lose_next_answer = 1
        vip = await m.campaign.CreateCampaign(
            pb.CreateCampaignRequest(
                campaign=summer(name="VIP", code="VIP-2026"), idempotency_key="vip-1"
            ),
            metadata=m.write(),
        )
        assert vip.campaign.state == pb.CAMPAIGN_STATE_ACTIVE
        assert vip.campaign.shopify_discount_id == shopify.codes_of(m.shop)["VIP-2026"]["id"]
        assert len([c for c in shopify.codes_of(m.shop) if c == "VIP-2026"]) == 1
        # Another campaign asking for a code the shop already uses: ALREADY_EXISTS (409).
        taken = await http(
            "POST",
            f"{m.gateway.url}/v1/api/campaigns",
            headers=headers,
            json_body={
                "campaign": {
                    "name": "Copycat",
                    "kind": "CAMPAIGN_KIND_SHARED_CODE",
                    "code": "VIP-2026",
                    "rules": {"type": "DISCOUNT_TYPE_FREE_SHIPPING"},
                    "audience": {"all_customers": True},
                },
                "idempotency_key": "copy-1",
            },
        )
        assert taken.status == 409, taken.body

        # Lifecycle events, in the outbox (relayed to the broker).
        published = await outbox_events(database_url, m.merchant_id)
        assert published[:5] == [
            ("campaign.created", "active"),
            ("campaign.state_changed", "paused"),
            ("campaign.state_changed", "active"),
            ("campaign.state_changed", "paused"),
            ("campaign.state_changed", "active"),
        ]

        # Unique codes: one discount, a code of its own for each AT_RISK customer (7001, 7002),
        # each answered to its customer; 7003 entering AT_RISK gets one then.
        unique = (
            await m.campaign.CreateCampaign(
                pb.CreateCampaignRequest(
                    campaign=summer(
                        name="Yours only",
                        kind=pb.CAMPAIGN_KIND_UNIQUE_CODES,
                        rules=pb.DiscountRules(type=pb.DISCOUNT_TYPE_FREE_SHIPPING),
                        audience=pb.Audience(rfm_segments=[rfm_pb2.RFM_SEGMENT_AT_RISK]),
                    ),
                    idempotency_key="unique-1",
                ),
                metadata=m.write(),
            )
        ).campaign
        codes = {
            customer: customer_code(m.merchant_id, unique.campaign_id, customer)
            for customer in ("7001", "7002", "7003")
        }
        made = shopify.codes_of(m.shop)
        assert made[codes["7001"]]["id"] == made[codes["7002"]]["id"] == unique.shopify_discount_id
        assert codes["7003"] not in made

        async def own_code(customer: str) -> str | None:
            response = await m.campaign.ApplyCampaign(
                pb.ApplyCampaignRequest(customer_id=customer, cart=pb.Cart(subtotal="10")),
                metadata=m.read(),
            )
            found = [c.code for c in response.campaigns if c.campaign_id == unique.campaign_id]
            return found[0] if found else None

        assert await own_code("7001") == codes["7001"]
        assert await own_code("7002") == codes["7002"]
        assert await own_code("7003") is None
        await m.rfm("7003", rfm_pb2.RFM_SEGMENT_AT_RISK)

        async def code_for_7003() -> bool:
            return codes["7003"] in shopify.codes_of(m.shop) and (
                await own_code("7003") == codes["7003"]
            )

        await eventually(code_for_7003, 30, "7003's own code once in AT_RISK")


async def test_twenty_five_active_automatic_discounts(
    database_url: str, redis_url: str, shopify: ShopifyAdminStandIn, tmp_path: Path
) -> None:
    async with mesh(database_url, redis_url, shopify, tmp_path) as m:
        # Other apps' (or the merchant's own) automatic discounts: 24 active.
        for number in range(24):
            shopify.automatic[f"gid://shopify/DiscountAutomaticNode/9{number}"] = {
                "shop": m.shop,
                "title": f"Other {number}",
                "input": {},
                "kind": "basic",
                "status": "ACTIVE",
            }
        automatic = summer(
            name="Everyone 10 off",
            kind=pb.CAMPAIGN_KIND_AUTOMATIC,
            rules=pb.DiscountRules(
                type=pb.DISCOUNT_TYPE_FIXED_AMOUNT, value="10.00", collection_ids=["4410"]
            ),
        )
        first = await m.campaign.CreateCampaign(
            pb.CreateCampaignRequest(campaign=automatic, idempotency_key="auto-1"),
            metadata=m.write(),
        )
        assert first.campaign.state == pb.CAMPAIGN_STATE_ACTIVE and not first.campaign.code
        made = shopify.discount(m.shop, first.campaign.shopify_discount_id)
        assert made is not None and made["status"] == "ACTIVE"
        assert "customerSelection" not in made["input"] and "code" not in made["input"]
        assert made["input"]["customerGets"] == {
            "value": {"discountAmount": {"amount": "10.00", "appliesOnEachItem": False}},
            "items": {"collections": {"add": ["gid://shopify/Collection/4410"]}},
        }
        # The 26th: refused before Shopify is asked to create anything.
        before = len(shopify.automatic)
        with pytest.raises(grpc.aio.AioRpcError) as full:
            await m.campaign.CreateCampaign(
                pb.CreateCampaignRequest(
                    campaign=summer(name="One more", kind=pb.CAMPAIGN_KIND_AUTOMATIC),
                    idempotency_key="auto-2",
                ),
                metadata=m.write(),
            )
        assert full.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "AUTOMATIC_DISCOUNT_LIMIT" in violations(full.value)
        assert len(shopify.automatic) == before
        listed = await m.campaign.ListCampaigns(pb.ListCampaignsRequest(), metadata=m.read())
        assert [c.name for c in listed.campaigns] == ["Everyone 10 off"]  # rolled back
        # Pausing ours makes room; resuming it while another took the room is refused.
        await m.campaign.PauseCampaign(
            pb.PauseCampaignRequest(campaign_id=first.campaign.campaign_id, idempotency_key="ap"),
            metadata=m.write(),
        )
        second = await m.campaign.CreateCampaign(
            pb.CreateCampaignRequest(
                campaign=summer(name="One more", kind=pb.CAMPAIGN_KIND_AUTOMATIC),
                idempotency_key="auto-3",
            ),
            metadata=m.write(),
        )
        assert second.campaign.state == pb.CAMPAIGN_STATE_ACTIVE
        with pytest.raises(grpc.aio.AioRpcError) as no_room:
            await m.campaign.ResumeCampaign(
                pb.ResumeCampaignRequest(
                    campaign_id=first.campaign.campaign_id, idempotency_key="ar"
                ),
                metadata=m.write(),
            )
        assert "AUTOMATIC_DISCOUNT_LIMIT" in violations(no_room.value)
        # Everyone (no segment needed) over the minimum: the active automatic one applies.
        assert await m.applicable("123", "60.00") == [second.campaign.campaign_id]


def drift(found: str) -> float:
    return REGISTRY.get_sample_value("loyalnest_campaign_drift_total", {"found": found}) or 0.0


async def test_reconcile_job_finds_drift(
    database_url: str, redis_url: str, shopify: ShopifyAdminStandIn, tmp_path: Path
) -> None:
    async with mesh(database_url, redis_url, shopify, tmp_path, reconcile_seconds=0.3) as m:
        paused = (
            await m.campaign.CreateCampaign(
                pb.CreateCampaignRequest(campaign=summer(name="Paused"), idempotency_key="d-1"),
                metadata=m.write(),
            )
        ).campaign
        await m.campaign.PauseCampaign(
            pb.PauseCampaignRequest(campaign_id=paused.campaign_id, idempotency_key="d-2"),
            metadata=m.write(),
        )
        gone = (
            await m.campaign.CreateCampaign(
                pb.CreateCampaignRequest(campaign=summer(name="Gone"), idempotency_key="d-3"),
                metadata=m.write(),
            )
        ).campaign
        soon = (
            await m.campaign.CreateCampaign(
                pb.CreateCampaignRequest(
                    campaign=summer(name="Soon", start_time=later(seconds=1.5)),
                    idempotency_key="d-4",
                ),
                metadata=m.write(),
            )
        ).campaign
        assert soon.state == pb.CAMPAIGN_STATE_SCHEDULED
        assert await m.applicable("1", "100") == [gone.campaign_id]

        # The merchant switches the paused discount back on in Shopify's admin, and deletes
        # another campaign's discount.
        before = drift("active_while_paused")
        shopify.set_discount_status(m.shop, paused.shopify_discount_id, "ACTIVE")
        with shopify._lock:
            del shopify.codes[(m.shop, gone.code)]

        async def put_back() -> bool:
            found = shopify.discount(m.shop, paused.shopify_discount_id)
            return found is not None and found["status"] == "EXPIRED"

        await eventually(put_back, 15, "the paused campaign's discount deactivated again")
        assert drift("active_while_paused") > before

        async def state_of(campaign_id: str) -> int:
            got = await m.campaign.GetCampaign(
                pb.GetCampaignRequest(campaign_id=campaign_id), metadata=m.read()
            )
            return int(got.campaign.state)

        async def gone_ended() -> bool:
            return await state_of(gone.campaign_id) == pb.CAMPAIGN_STATE_ENDED

        await eventually(gone_ended, 15, "the campaign whose discount was deleted ended")

        async def soon_active() -> bool:
            return await state_of(soon.campaign_id) == pb.CAMPAIGN_STATE_ACTIVE

        await eventually(soon_active, 15, "the scheduled campaign active once started")
        assert await m.applicable("1", "100") == [soon.campaign_id]
        await asyncio.sleep(0.7)  # more rounds: nothing else moves
        assert await state_of(paused.campaign_id) == pb.CAMPAIGN_STATE_PAUSED
