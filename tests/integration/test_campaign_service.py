"""The Campaign service against a real PostgreSQL and Redis, without a shop: drafts, validation,
listing, eligibility from a seeded live campaign, REST through a real Envoy, and the service's
isolation table. With Shopify (publish, pause, resume, TAKEN, THROTTLED, the 25-automatic limit,
drift, segments from the broker): test_campaign_shopify.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import field_mask_pb2, json_format, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2

from loyalnest.gateway import Upstream
from loyalnest.gen.campaign.v1 import campaign_pb2 as pb
from loyalnest.gen.campaign.v1 import campaign_pb2_grpc
from loyalnest.gen.events.v1 import rfm_pb2
from loyalnest.platform.server import RunningService
from loyalnest.services.campaign.service import SERVICE_NAME, SPEC, CampaignSettings
from tests.auth import merchant_headers, merchant_metadata
from tests.integration.conftest import serve_for_test, service_settings_for_tests, wait_for_health
from tests.integration.isolation import Case, Metadata, Table
from tests.integration.test_gateway_validate import Gateway, gateway_config, http, running_gateway

pytestmark = pytest.mark.integration

READ, WRITE = "campaign:read", "campaign:write"
Stub = campaign_pb2_grpc.CampaignServiceStub
Served = tuple[RunningService, Stub]


@pytest.fixture
async def served(database_url: str, redis_url: str) -> AsyncIterator[Served]:
    """The service (no service credential: no shop), once SERVING, and a stub to it."""
    settings = service_settings_for_tests(CampaignSettings, database_url, redis_url=redis_url)
    async with serve_for_test(SPEC, settings, Stub) as running_service:
        yield running_service


@pytest.fixture
def stub(served: Served) -> Stub:
    return served[1]


def summer(**overrides: Any) -> pb.Campaign:
    campaign = pb.Campaign(
        name="Summer sale",
        kind=pb.CAMPAIGN_KIND_SHARED_CODE,
        rules=pb.DiscountRules(
            type=pb.DISCOUNT_TYPE_PERCENTAGE, value="15", minimum_subtotal="50.00"
        ),
        audience=pb.Audience(all_customers=True),
    )
    for name, value in overrides.items():
        if isinstance(value, pb.DiscountRules | pb.Audience | timestamp_pb2.Timestamp):
            getattr(campaign, name).CopyFrom(value)
        else:
            setattr(campaign, name, value)
    return campaign


async def create_draft(
    stub: Stub, merchant: str, campaign: pb.Campaign | None = None, key: str | None = None
) -> pb.Campaign:
    response = await stub.CreateCampaign(
        pb.CreateCampaignRequest(
            campaign=campaign or summer(), draft=True, idempotency_key=key or uuid.uuid4().hex
        ),
        metadata=merchant_metadata(merchant, (WRITE,)),
    )
    created: pb.Campaign = response.campaign
    return created


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """field -> description of an INVALID_ARGUMENT's BadRequest; type -> subject of a
    FAILED_PRECONDITION's PreconditionFailure."""
    found: dict[str, str] = {}
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)  # type: ignore[arg-type]
            for detail in status.details:
                bad = error_details_pb2.BadRequest()
                precondition = error_details_pb2.PreconditionFailure()
                if detail.Unpack(bad):
                    found |= {v.field: v.description for v in bad.field_violations}
                elif detail.Unpack(precondition):
                    found |= {v.type: v.subject for v in precondition.violations}
    return found


async def test_serves_health(served: Served) -> None:
    service, _ = served
    await wait_for_health(
        service.address, health_pb2.HealthCheckResponse.SERVING, service=SERVICE_NAME
    )


async def test_drafts_are_created_read_listed_and_changed(stub: Stub, merchant_id: str) -> None:
    draft = await create_draft(stub, merchant_id, key="k-1")
    assert draft.state == pb.CAMPAIGN_STATE_DRAFT and not draft.shopify_discount_id
    assert draft.rules.value == "15" and draft.audience.all_customers
    # A retry with the same key is the first call's campaign; the key with other fields is refused.
    assert await create_draft(stub, merchant_id, key="k-1") == draft
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await create_draft(stub, merchant_id, summer(name="Other"), key="k-1")
    assert reused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    read = merchant_metadata(merchant_id, (READ,))
    got = await stub.GetCampaign(
        pb.GetCampaignRequest(campaign_id=draft.campaign_id), metadata=read
    )
    assert got.campaign == draft

    shoes = await create_draft(
        stub,
        merchant_id,
        summer(
            name="Shoes",
            rules=pb.DiscountRules(
                type=pb.DISCOUNT_TYPE_FIXED_AMOUNT, value="10.00", product_ids=["111", "222"]
            ),
        ),
    )
    listed = await stub.ListCampaigns(pb.ListCampaignsRequest(page_size=1), metadata=read)
    assert [c.campaign_id for c in listed.campaigns] == [shoes.campaign_id]
    rest = await stub.ListCampaigns(
        pb.ListCampaignsRequest(page_size=1, page_token=listed.next_page_token), metadata=read
    )
    assert [c.campaign_id for c in rest.campaigns] == [draft.campaign_id]
    by_product = await stub.ListCampaigns(pb.ListCampaignsRequest(product_id="222"), metadata=read)
    assert [c.campaign_id for c in by_product.campaigns] == [shoes.campaign_id]

    update = pb.UpdateCampaignRequest(
        campaign=pb.Campaign(
            campaign_id=draft.campaign_id,
            name="Summer sale, longer",
            end_time=json_format.ParseDict("2099-01-01T00:00:00Z", pb.Campaign().end_time),
        ),
        update_mask=field_mask_pb2.FieldMask(paths=["name", "end_time"]),
        idempotency_key="u-1",
    )
    updated = (
        await stub.UpdateCampaign(update, metadata=merchant_metadata(merchant_id, (WRITE,)))
    ).campaign
    assert updated.name == "Summer sale, longer" and updated.end_time.seconds > 0
    assert updated.rules == draft.rules

    # Ended from a draft: nothing at Shopify to deactivate; then no move is possible.
    write = merchant_metadata(merchant_id, (WRITE,))
    ended = await stub.EndCampaign(
        pb.EndCampaignRequest(campaign_id=draft.campaign_id, idempotency_key="e-1"),
        metadata=write,
    )
    assert ended.campaign.state == pb.CAMPAIGN_STATE_ENDED
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await stub.PauseCampaign(
            pb.PauseCampaignRequest(campaign_id=draft.campaign_id, idempotency_key="p-1"),
            metadata=write,
        )
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "NOT_LIVE" in violations(again.value)
    with pytest.raises(grpc.aio.AioRpcError) as frozen:
        await stub.UpdateCampaign(
            pb.UpdateCampaignRequest(
                campaign=pb.Campaign(campaign_id=draft.campaign_id, name="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
                idempotency_key="u-2",
            ),
            metadata=write,
        )
    assert "NOT_A_DRAFT" in violations(frozen.value)


async def test_publishing_without_a_connected_shop_is_a_precondition(
    stub: Stub, merchant_id: str
) -> None:
    draft = await create_draft(stub, merchant_id)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.PublishCampaign(
            pb.PublishCampaignRequest(campaign_id=draft.campaign_id, idempotency_key="pub-1"),
            metadata=merchant_metadata(merchant_id, (WRITE,)),
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "SHOP_NOT_CONNECTED" in violations(refused.value)
    got = await stub.GetCampaign(
        pb.GetCampaignRequest(campaign_id=draft.campaign_id),
        metadata=merchant_metadata(merchant_id, (READ,)),
    )
    assert got.campaign.state == pb.CAMPAIGN_STATE_DRAFT


@pytest.mark.parametrize(
    ("campaign", "field"),
    [
        (summer(name=" "), "campaign.name"),
        (summer(kind=pb.CAMPAIGN_KIND_UNSPECIFIED), "campaign.kind"),
        (summer(code="bad code"), "campaign.code"),
        (summer(rules=pb.DiscountRules(type=pb.DISCOUNT_TYPE_PERCENTAGE, value="150")),
         "campaign.rules.value"),
        (summer(rules=pb.DiscountRules(type=pb.DISCOUNT_TYPE_FIXED_AMOUNT, value="1.234")),
         "campaign.rules.value"),
        (summer(rules=pb.DiscountRules(type=pb.DISCOUNT_TYPE_FREE_SHIPPING, value="5")),
         "campaign.rules.value"),
        (summer(rules=pb.DiscountRules(type=pb.DISCOUNT_TYPE_PERCENTAGE, value="5",
                                       product_ids=["x1"])), "campaign.rules.product_ids"),
        (summer(audience=pb.Audience()), "campaign.audience"),
        (summer(kind=pb.CAMPAIGN_KIND_AUTOMATIC,
                audience=pb.Audience(rfm_segments=[rfm_pb2.RFM_SEGMENT_AT_RISK])),
         "campaign.audience"),
        (summer(kind=pb.CAMPAIGN_KIND_AUTOMATIC,
                rules=pb.DiscountRules(type=pb.DISCOUNT_TYPE_PERCENTAGE, value="5",
                                       usage_limit=3)), "campaign.rules.usage_limit"),
    ],
)  # fmt: skip
async def test_bad_campaigns_are_invalid_arguments(
    stub: Stub, merchant_id: str, campaign: pb.Campaign, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await create_draft(stub, merchant_id, campaign)
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(invalid.value), violations(invalid.value)


async def seed_live_campaign(
    database_url: str,
    merchant_id: str,
    *,
    segments: list[str] | None = None,
    minimum: str = "",
    product_ids: list[str] | None = None,
) -> str:
    """An ACTIVE campaign written directly (as a publish with a shop would leave it)."""
    campaign_id = str(uuid.uuid4())
    rules: dict[str, Any] = {"type": "DISCOUNT_TYPE_PERCENTAGE", "value": "10"}
    if minimum:
        rules["minimum_subtotal"] = minimum
    if product_ids:
        rules["product_ids"] = product_ids
    audience: dict[str, Any] = {"rfm_segments": segments} if segments else {"all_customers": True}
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO campaign.campaigns (campaign_id, merchant_id, name, kind, code, rules,"
            " audience, product_ids, start_at, state, shopify_discount_id)"
            " VALUES (%s, %s, 'Seeded', 'shared_code', %s, %s, %s, %s, %s, 'active', %s)",
            (
                campaign_id,
                merchant_id,
                "SEED-" + campaign_id[:8].upper(),
                psycopg.types.json.Jsonb(rules),
                psycopg.types.json.Jsonb(audience),
                product_ids or [],
                datetime.now(UTC) - timedelta(hours=1),
                f"gid://shopify/DiscountCodeNode/{campaign_id[:8]}",
            ),
        )
        if segments:
            await conn.execute(
                "INSERT INTO campaign.customer_segments (merchant_id, customer_id, segment,"
                " scored_at) VALUES (%s, '900001', %s, now())",
                (merchant_id, segments[0]),
            )
    return campaign_id


async def test_eligibility_of_live_campaigns(
    stub: Stub, merchant_id: str, database_url: str
) -> None:
    everyone = await seed_live_campaign(database_url, merchant_id, minimum="50.00")
    shoes = await seed_live_campaign(database_url, merchant_id, product_ids=["111"])
    at_risk = await seed_live_campaign(database_url, merchant_id, segments=["RFM_SEGMENT_AT_RISK"])
    read = merchant_metadata(merchant_id, (READ,))

    async def applicable(customer: str, subtotal: str, products: list[str]) -> set[str]:
        response = await stub.ApplyCampaign(
            pb.ApplyCampaignRequest(
                customer_id=customer, cart=pb.Cart(subtotal=subtotal, product_ids=products)
            ),
            metadata=read,
        )
        return {c.campaign_id for c in response.campaigns}

    # 900001 is in AT_RISK; 900002 has no segment.
    assert await applicable("900001", "60.00", ["111"]) == {everyone, shoes, at_risk}
    assert await applicable("900002", "60.00", ["222"]) == {everyone}
    assert await applicable("900002", "49.99", ["111"]) == {shoes}
    # Again, from Redis this time (the first call rebuilt the merchant's entries).
    assert await applicable("900001", "10", []) == {at_risk}
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await stub.ApplyCampaign(
            pb.ApplyCampaignRequest(customer_id="900001", cart=pb.Cart(subtotal="ten")),
            metadata=read,
        )
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
async def gateway(served: Served, tmp_path: Path) -> AsyncIterator[Gateway]:
    service, _ = served
    upstream = Upstream("campaign", (SERVICE_NAME,), (("127.0.0.1", service.port),))
    async with running_gateway(gateway_config(upstream), tmp_path, {"campaign": 1}) as gw:
        yield gw


async def test_rest_through_the_gateway(
    gateway: Gateway, merchant_id: str, database_url: str
) -> None:
    headers = merchant_headers(merchant_id, (READ, WRITE))
    created = await http(
        "POST",
        f"{gateway.url}/v1/api/campaigns",
        headers=headers,
        json_body={
            "campaign": {
                "name": "Over REST",
                "kind": "CAMPAIGN_KIND_SHARED_CODE",
                "rules": {"type": "DISCOUNT_TYPE_FREE_SHIPPING"},
                "audience": {"rfm_segments": ["RFM_SEGMENT_HIGH_VALUE"]},
            },
            "draft": True,
            "idempotency_key": "rest-1",
        },
    )
    assert created.status == 200, created.body
    campaign = created.json()["campaign"]
    assert campaign["state"] == "CAMPAIGN_STATE_DRAFT"
    url = f"{gateway.url}/v1/api/campaigns/{campaign['campaign_id']}"
    got = await http("GET", url, headers=headers)
    assert got.status == 200 and got.json()["campaign"] == campaign, got.body
    listed = await http("GET", f"{gateway.url}/v1/api/campaigns?page_size=5", headers=headers)
    assert [c["campaign_id"] for c in listed.json()["campaigns"]] == [campaign["campaign_id"]]
    hidden = await http("GET", url, headers=merchant_headers(f"other-{merchant_id}", (READ,)))
    assert hidden.status == 404, hidden.body
    assert (await http("GET", url)).status == 401
    forbidden = await http(
        "POST",
        f"{url}/end",
        headers=merchant_headers(merchant_id, (READ,)),
        json_body={"idempotency_key": "rest-2"},
    )
    assert forbidden.status == 403, forbidden.body
    # Publishing without a shop: a 400 (FAILED_PRECONDITION) naming the reason.
    refused = await http(
        "POST", f"{url}/publish", headers=headers, json_body={"idempotency_key": "p"}
    )
    assert refused.status == 400 and "SHOP_NOT_CONNECTED" in refused.body.decode(), refused.body
    ended = await http("POST", f"{url}/end", headers=headers, json_body={"idempotency_key": "e"})
    assert ended.status == 200 and ended.json()["campaign"]["state"] == "CAMPAIGN_STATE_ENDED"

    seeded = await seed_live_campaign(database_url, merchant_id)
    applied = await http(
        "POST",
        f"{gateway.url}/v1/api/campaigns/apply",
        headers=headers,
        json_body={"customer_id": "900009", "cart": {"subtotal": "20.00"}},
    )
    assert applied.status == 200, applied.body
    assert [c["campaign_id"] for c in applied.json()["campaigns"]] == [seeded]


# ---- the mesh-wide isolation table (test_tenant_isolation.py) ---------------------------


async def _arrange(ch: grpc.aio.Channel, md: Metadata) -> dict[str, Any]:
    create = pb.CreateCampaignRequest(campaign=summer(), draft=True, idempotency_key="key-b")
    draft = (await Stub(ch).CreateCampaign(create, metadata=md)).campaign
    return {"secrets": [draft.campaign_id], "draft": draft, "create": create}


async def _seed(database_url: str, merchant_b: str) -> dict[str, Any]:
    live = await seed_live_campaign(database_url, merchant_b)
    return {"secrets": [live], "live": live}


async def _snapshot(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    listed = await Stub(ch).ListCampaigns(pb.ListCampaignsRequest(page_size=100), metadata=md)
    return sorted((c.campaign_id, c.state, c.name) for c in listed.campaigns)


def _move(method: str, request_type: Any, which: str) -> Case:
    async def attack(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
        campaign_id = b["draft"].campaign_id if which == "draft" else b["live"]
        request = request_type(campaign_id=campaign_id, idempotency_key=f"a-{method}-{which}")
        return await getattr(Stub(ch), method)(request, metadata=md)

    return Case(attack)


async def _get(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    return await Stub(ch).GetCampaign(pb.GetCampaignRequest(campaign_id=b["live"]), metadata=md)


async def _list(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    return await Stub(ch).ListCampaigns(pb.ListCampaignsRequest(), metadata=md)


async def _update(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    return await Stub(ch).UpdateCampaign(
        pb.UpdateCampaignRequest(
            campaign=pb.Campaign(campaign_id=b["draft"].campaign_id, name="A was here"),
            update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            idempotency_key="a-update",
        ),
        metadata=md,
    )


async def _replay_create(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    # B's exact request, key included: A gets a draft of its own, never B's.
    return await Stub(ch).CreateCampaign(b["create"], metadata=md)


async def _apply(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    # B's live campaign applies to everyone in B's shop: never in A's answer.
    return await Stub(ch).ApplyCampaign(
        pb.ApplyCampaignRequest(customer_id="900001", cart=pb.Cart(subtotal="100")), metadata=md
    )


ISOLATION = Table(
    arrange=_arrange,
    seed=_seed,
    snapshot=_snapshot,
    cases={
        "CreateCampaign": [Case(_replay_create, may_succeed=True)],
        "GetCampaign": [Case(_get)],
        "ListCampaigns": [Case(_list, may_succeed=True)],
        "UpdateCampaign": [Case(_update)],
        "PublishCampaign": [_move("PublishCampaign", pb.PublishCampaignRequest, "draft")],
        "PauseCampaign": [_move("PauseCampaign", pb.PauseCampaignRequest, "live")],
        "ResumeCampaign": [_move("ResumeCampaign", pb.ResumeCampaignRequest, "live")],
        "EndCampaign": [
            _move("EndCampaign", pb.EndCampaignRequest, "live"),
            _move("EndCampaign", pb.EndCampaignRequest, "draft"),
        ],
        "ApplyCampaign": [Case(_apply, may_succeed=True)],
    },
)


async def test_personal_data_export_and_erasure(database_url: str, served: Served) -> None:
    """The customers' segments Campaign keeps (issue 18's contract: export, erase)."""
    from loyalnest.platform.postgres import Database
    from loyalnest.services.campaign.service import DATABASE
    from loyalnest.services.campaign.store import CampaignStore

    merchant = f"m-{uuid.uuid4().hex[:8]}"
    await seed_live_campaign(database_url, merchant, segments=["RFM_SEGMENT_NEW"])
    database = Database(service_settings_for_tests(CampaignSettings, database_url), DATABASE)
    await database.open()
    try:
        store = CampaignStore(database)
        exported = await store.export_customer(merchant, "900001")
        assert exported["rfm_segment"]["segment"] == "RFM_SEGMENT_NEW"
        assert await store.export_customer(merchant, "900002") == {}
        assert await store.erase_customer(merchant, "900001") == 1
        assert await store.erase_customer(merchant, "900001") == 0  # a repeat
        assert await store.export_customer(merchant, "900001") == {}
        assert await store.live(merchant)
        await store.erase_merchant(merchant)
        assert await store.live(merchant) == []
    finally:
        await database.close()
