"""The Referrals service against a real PostgreSQL, Auth (the merchant's shop, Referrals' own
service tokens) and Points (the referrers' rewards).

Codes and links, idempotency, status and progress, completion by hand (audited, fraud rules,
the reward credited once through Points, milestones once), over gRPC and as REST through a real
Envoy. `ISOLATION` is its table in the mesh-wide isolation test (test_tenant_isolation.py).
The completion by a friend's order, through the broker: test_referrals_flow.py.
"""

from __future__ import annotations

import asyncio
import http.client as http_client
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2

from loyalnest.devstack.standins.shopify_admin import ShopifyAdminStandIn
from loyalnest.gateway import Upstream
from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.gen.referrals.v1 import referrals_pb2 as pb
from loyalnest.gen.referrals.v1 import referrals_pb2_grpc
from loyalnest.platform.auth.service_identity import service_credential
from loyalnest.platform.server import RunningService
from loyalnest.platform.tenancy import merchant_id_for_shop
from loyalnest.services.points.service import SPEC as POINTS
from loyalnest.services.referrals.domain import CODE_RE, new_code
from loyalnest.services.referrals.service import SERVICE_NAME, SPEC, ReferralsSettings
from tests.auth import merchant_headers, merchant_metadata
from tests.integration.conftest import (
    eventually,
    points_settings,
    service_settings_for_tests,
    serving,
    stub_for,
    wait_for_health,
)
from tests.integration.isolation import Case, Metadata, Table
from tests.integration.shopify_standin import API_KEY, API_SECRET
from tests.integration.test_auth_service import install
from tests.integration.test_gateway_validate import (
    Gateway,
    Response,
    gateway_config,
    http,
    running_gateway,
)
from tests.integration.test_service_identity import MASTER_KEY, serving_auth

pytestmark = pytest.mark.integration

READ, WRITE, MANAGE = "referrals:read", "referrals:write", "referrals:manage"
SHOP = "referrals-test.myshopify.com"
REFERRALS_CREDENTIAL = service_credential(MASTER_KEY, "referrals")
Stub = referrals_pb2_grpc.ReferralsServiceStub


@pytest.fixture
def shopify() -> Iterator[ShopifyAdminStandIn]:
    standin = ShopifyAdminStandIn(api_key=API_KEY, api_secret=API_SECRET)
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture
async def auth(
    database_url: str, redis_url: str, shopify: ShopifyAdminStandIn
) -> AsyncIterator[RunningService]:
    async with serving_auth(database_url, redis_url, shopify) as service:
        yield service


@pytest.fixture
async def merchant_id(auth: RunningService, shopify: ShopifyAdminStandIn) -> str:
    """The merchant of SHOP, installed through Auth."""
    async with grpc.aio.insecure_channel(auth.address) as channel:
        installed = await install(auth_pb2_grpc.AuthServiceStub(channel), shopify, SHOP)
    return str(installed.merchant.merchant_id)


@pytest.fixture
async def points(database_url: str, redis_url: str) -> AsyncIterator[RunningService]:
    async with serving(POINTS, points_settings(database_url, redis_url=redis_url)) as service:
        yield service


def referrals_settings(database_url: str, **overrides: Any) -> ReferralsSettings:
    return service_settings_for_tests(
        ReferralsSettings,
        database_url,
        **({"referrals_reward_interval_seconds": 0.1} | overrides),
    )


@pytest.fixture
async def served(
    database_url: str,
    redis_url: str,
    auth: RunningService,
    points: RunningService,
    shopify: ShopifyAdminStandIn,
) -> AsyncIterator[RunningService]:
    settings = referrals_settings(
        database_url,
        call_targets={"auth": auth.address, "points": points.address},
        service_credential=REFERRALS_CREDENTIAL,
        shopify_admin_base_url=shopify.base_url,
        shopify_admin_timeout_seconds=0.3,
        referrals_discount_retry_interval_seconds=0.1,
        redis_url=redis_url,
    )
    async with serving(SPEC, settings) as service:
        yield service


@pytest.fixture
async def stub(served: RunningService) -> AsyncIterator[Stub]:
    async with stub_for(served, Stub) as referrals:
        yield referrals


@pytest.fixture
async def points_stub(points: RunningService) -> AsyncIterator[points_pb2_grpc.PointsServiceStub]:
    async with stub_for(points, points_pb2_grpc.PointsServiceStub) as stub:
        yield stub


def md(merchant: str, *permissions: str) -> Metadata:
    return merchant_metadata(merchant, permissions or (READ, WRITE, MANAGE))


async def create(stub: Stub, merchant: str, referrer: str, key: str | None = None) -> pb.Referral:
    response = await stub.CreateReferral(
        pb.CreateReferralRequest(referrer_id=referrer, idempotency_key=key or uuid.uuid4().hex),
        metadata=md(merchant, WRITE),
    )
    referral: pb.Referral = response.referral
    return referral


async def complete(
    stub: Stub, merchant: str, code: str, referee: str, key: str | None = None
) -> pb.Conversion:
    response = await stub.CompleteReferral(
        pb.CompleteReferralRequest(
            code=code, referee_id=referee, idempotency_key=key or uuid.uuid4().hex
        ),
        metadata=md(merchant, MANAGE),
    )
    conversion: pb.Conversion = response.conversion
    return conversion


async def balance(points: points_pb2_grpc.PointsServiceStub, merchant: str, customer: str) -> int:
    try:
        response = await points.GetPointsBalance(
            points_pb2.GetPointsBalanceRequest(customer_id=customer),
            metadata=merchant_metadata(merchant, ("points:read",)),
        )
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return 0
        raise
    return int(response.balance.balance)


async def test_serves_health(served: RunningService) -> None:
    await wait_for_health(
        served.address, health_pb2.HealthCheckResponse.SERVING, service=SERVICE_NAME
    )


async def test_one_active_unguessable_code_per_referrer(stub: Stub, merchant_id: str) -> None:
    referral = await create(stub, merchant_id, "1001", key="k-1")
    assert CODE_RE.match(referral.code), referral.code
    assert referral.link == f"https://{SHOP}/?ref={referral.code}"
    assert referral.status == pb.REFERRAL_STATUS_ACTIVE and referral.referrer_id == "1001"
    # The same key replays; another key for the same referrer reuses the active referral.
    assert await create(stub, merchant_id, "1001", key="k-1") == referral
    assert await create(stub, merchant_id, "1001", key="k-2") == referral
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await create(stub, merchant_id, "1002", key="k-1")
    assert reused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    other = await create(stub, merchant_id, "1002")
    assert other.code != referral.code and other.referral_id != referral.referral_id

    read = md(merchant_id, READ)
    by_id = await stub.GetReferralStatus(
        pb.GetReferralStatusRequest(referral_id=referral.referral_id), metadata=read
    )
    by_code = await stub.GetReferralStatus(
        pb.GetReferralStatusRequest(code=referral.code.lower()), metadata=read
    )
    assert by_id.referral == by_code.referral == referral and not by_id.conversions
    for bad in (
        pb.GetReferralStatusRequest(),
        pb.GetReferralStatusRequest(code="guess"),
        pb.GetReferralStatusRequest(referral_id="not-a-uuid"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await stub.GetReferralStatus(bad, metadata=read)
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetReferralStatus(
            pb.GetReferralStatusRequest(code="REF-0000000000AB"), metadata=read
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as invalid_referrer:
        await create(stub, merchant_id, "ann@example.com")
    assert invalid_referrer.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_shop_not_known_yet_may_be_named_if_it_is_the_merchants(stub: Stub) -> None:
    # Not installed through Auth and no webhook seen: the link's shop is unknown ...
    shop = f"hint-{uuid.uuid4().hex[:8]}.myshopify.com"
    merchant = merchant_id_for_shop(shop)
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await create(stub, merchant, "6001")
    assert unknown.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # ... unless the caller names it; another shop than the token's merchant's is refused.
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await stub.CreateReferral(
            pb.CreateReferralRequest(
                referrer_id="6001", shop="evil.myshopify.com", idempotency_key="h-1"
            ),
            metadata=md(merchant, WRITE),
        )
    assert other.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    named = await stub.CreateReferral(
        pb.CreateReferralRequest(referrer_id="6001", shop=shop, idempotency_key="h-2"),
        metadata=md(merchant, WRITE),
    )
    assert named.referral.link == f"https://{shop}/?ref={named.referral.code}"


async def test_the_code_is_the_friends_discount_at_shopify_created_once(
    stub: Stub, merchant_id: str, shopify: ShopifyAdminStandIn
) -> None:
    referral = await create(stub, merchant_id, "4001")
    assert referral.friend_discount == pb.FRIEND_DISCOUNT_STATUS_CREATED
    codes = shopify.codes_of(SHOP)
    assert list(codes) == [referral.code]
    made = codes[referral.code]["input"]
    # Referrals' default program: 10 % for the friend, once per customer, anyone may use it.
    assert made["customerGets"]["value"] == {"percentage": 0.1}
    assert made["customerSelection"] == {"all": True} and made["appliesOncePerCustomer"]
    assert made["title"] == f"LoyalNest referral {referral.referral_id}"
    await create(stub, merchant_id, "4001")  # the same referral: no second code
    assert list(shopify.codes_of(SHOP)) == [referral.code]

    # Shopify took the code but its answer came after the timeout: the referral is PENDING,
    # the retry gets TAKEN, finds the code is this referral's, and counts it as created.
    shopify.stall_mutations = 0.6
    slow = await create(stub, merchant_id, "4002")
    shopify.stall_mutations = 0
    assert slow.friend_discount == pb.FRIEND_DISCOUNT_STATUS_PENDING

    async def created() -> bool:
        status = await stub.GetReferralStatus(
            pb.GetReferralStatusRequest(referral_id=slow.referral_id), metadata=md(merchant_id)
        )
        return status.referral.friend_discount == pb.FRIEND_DISCOUNT_STATUS_CREATED

    await eventually(created, 10, "the retry to find the code created")
    assert sorted(shopify.codes_of(SHOP)) == sorted([referral.code, slow.code])

    # Shopify down: the referral is still given (its link works), the code follows later.
    shopify.unavailable = True
    later = await create(stub, merchant_id, "4003")
    assert later.friend_discount == pb.FRIEND_DISCOUNT_STATUS_PENDING and later.link
    shopify.unavailable = False

    async def created_later() -> bool:
        return later.code in shopify.codes_of(SHOP)

    await eventually(created_later, 10, "the code once Shopify is back")


async def test_completion_by_hand_credits_once_refuses_fraud_and_pays_milestones_once(
    stub: Stub,
    merchant_id: str,
    points_stub: points_pb2_grpc.PointsServiceStub,
    database_url: str,
) -> None:
    referral = await create(stub, merchant_id, "2001")
    first = await complete(stub, merchant_id, referral.code, "2101", key="done-1")
    assert first.status == pb.CONVERSION_STATUS_COMPLETED and first.reward_points == 100
    # A retry of the call is the same conversion; the reward is credited once.
    assert (
        await complete(stub, merchant_id, referral.code, "2101", key="done-1")
    ).conversion_id == (first.conversion_id)
    await eventually(
        lambda: _equals(balance(points_stub, merchant_id, "2001"), 100), 10, "reward credited"
    )
    # The same friend again, and the referrer themself: refused with the reason, recorded.
    again = await complete(stub, merchant_id, referral.code, "2101")
    assert again.status == pb.CONVERSION_STATUS_REFUSED
    assert again.refusal_reason == "already_referred"
    self_referral = await complete(stub, merchant_id, referral.code, "2001")
    assert self_referral.status == pb.CONVERSION_STATUS_REFUSED
    assert self_referral.refusal_reason == "self_referral"
    status = await stub.GetReferralStatus(
        pb.GetReferralStatusRequest(referral_id=referral.referral_id), metadata=md(merchant_id)
    )
    assert [(c.referee_id, c.refusal_reason) for c in status.conversions] == [
        ("2101", ""),
        ("2101", "already_referred"),
        ("2001", "self_referral"),
    ]
    assert status.conversions[0].rewarded
    # Audited: the conversion's audit row names the caller's token subject.
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT actor FROM referrals.audit_logs WHERE entity_type = 'conversions'"
            " AND entity_id = %s",
            (first.conversion_id,),
        )
        actors = [row[0] for row in await cursor.fetchall()]
    assert actors and all(actor for actor in actors), actors
    assert await balance(points_stub, merchant_id, "2001") == 100


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


@pytest.fixture
async def gateway(served: RunningService, tmp_path: Path) -> AsyncIterator[Gateway]:
    upstream = Upstream("referrals", (SERVICE_NAME,), (("127.0.0.1", served.port),))
    async with running_gateway(gateway_config(upstream), tmp_path, {"referrals": 1}) as gw:
        yield gw


async def get_without_following(url: str) -> Response:
    """A GET that shows a redirect instead of following it."""

    def get() -> Response:
        parts = urllib.parse.urlsplit(url)
        connection = http_client.HTTPConnection(parts.netloc, timeout=15)
        try:
            connection.request("GET", parts.path)
            reply = connection.getresponse()
            return Response(
                reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
            )
        finally:
            connection.close()

    return await asyncio.to_thread(get)


async def test_rest_through_the_gateway(gateway: Gateway, merchant_id: str) -> None:
    headers = merchant_headers(merchant_id, (READ, WRITE, MANAGE))
    created = await http(
        "POST",
        f"{gateway.url}/v1/api/referrals/create",
        headers=headers,
        json_body={"referrer_id": "3001", "idempotency_key": "rest-1"},
    )
    assert created.status == 200, created.body
    referral = created.json()["referral"]
    assert referral["link"] == f"https://{SHOP}/?ref={referral['code']}"
    assert referral["status"] == "REFERRAL_STATUS_ACTIVE"
    status = await http(
        "GET", f"{gateway.url}/v1/api/referrals/status?code={referral['code']}", headers=headers
    )
    assert status.status == 200, status.body
    assert status.json()["referral"] == referral
    done = await http(
        "POST",
        f"{gateway.url}/v1/api/referrals/complete",
        headers=headers,
        json_body={"code": referral["code"], "referee_id": "3002", "idempotency_key": "rest-2"},
    )
    assert done.status == 200, done.body
    assert done.json()["conversion"]["status"] == "CONVERSION_STATUS_COMPLETED"
    progress = await http(
        "GET", f"{gateway.url}/v1/api/referrals/progress?referrer_id=3001", headers=headers
    )
    assert progress.status == 200, progress.body
    assert progress.json()["completed"] == "1"
    hidden = await http(
        "GET",
        f"{gateway.url}/v1/api/referrals/status?code={referral['code']}",
        headers=merchant_headers(f"other-{merchant_id}", (READ,)),
    )
    assert hidden.status == 404, hidden.body
    anonymous = await http("GET", f"{gateway.url}/v1/api/referrals/status?code=x")
    assert anonymous.status == 401, anonymous.body
    forbidden = await http(
        "POST",
        f"{gateway.url}/v1/api/referrals/complete",
        headers=merchant_headers(merchant_id, (READ, WRITE)),
        json_body={"code": referral["code"], "referee_id": "3003", "idempotency_key": "rest-3"},
    )
    assert forbidden.status == 403, forbidden.body
    # The public click endpoint: counted, and a 302 to the shop's link (no token needed).
    for _ in range(3):
        clicked = await get_without_following(
            f"{gateway.url}/v1/api/referrals/click/{referral['code']}"
        )
        assert clicked.status == 302, clicked.body
        assert clicked.headers["location"] == referral["link"]
        assert not any(
            h.startswith("grpc-") or h == "x-loyalnest-redirect" for h in clicked.headers
        )
    unknown = await get_without_following(f"{gateway.url}/v1/api/referrals/click/REF-0000000000AB")
    assert unknown.status == 404, unknown.body
    stats = await http("GET", f"{gateway.url}/v1/api/referrals/stats", headers=headers)
    assert stats.status == 200, stats.body
    figures = stats.json()
    assert (figures["referrals_created"], figures["clicks"], figures["conversions"]) == (
        "1",
        "3",
        "1",
    )
    assert figures["conversion_rate"] == pytest.approx(1 / 3)
    invalid = await http(
        "POST",
        f"{gateway.url}/v1/api/referrals/create",
        headers=headers,
        json_body={"referrer_id": "", "idempotency_key": "rest-4"},
    )
    assert invalid.status == 400, invalid.body


async def test_the_status_stream_shows_a_change_within_a_second(
    gateway: Gateway, merchant_id: str
) -> None:
    headers = merchant_headers(merchant_id, (READ, WRITE, MANAGE))
    created = await http(
        "POST",
        f"{gateway.url}/v1/api/referrals/create",
        headers=headers,
        json_body={"referrer_id": "8001", "idempotency_key": "stream-1"},
    )
    referral = created.json()["referral"]
    lines: list[tuple[float, dict[str, Any]]] = []
    first_line = threading.Event()
    host, port = gateway.address.split(":")
    connection = http_client.HTTPConnection(host, int(port), timeout=10)

    def read() -> None:
        connection.request(
            "GET", f"/v1/api/referrals/stream/{referral['referral_id']}", headers=headers
        )
        response = connection.getresponse()
        assert response.status == 200
        while len(lines) < 2:
            line = response.readline()
            if not line:
                return
            if line.strip():
                lines.append((time.monotonic(), json.loads(line)))
                first_line.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert await asyncio.to_thread(first_line.wait, 10), "no first line"
    first = lines[0][1]
    assert first["referral"]["referral_id"] == referral["referral_id"]
    assert first["conversions"] == []

    written_at = time.monotonic()
    done = await http(
        "POST",
        f"{gateway.url}/v1/api/referrals/complete",
        headers=headers,
        json_body={"code": referral["code"], "referee_id": "8002", "idempotency_key": "s-2"},
    )
    assert done.status == 200, done.body
    await asyncio.to_thread(reader.join, 5)
    connection.close()
    assert len(lines) == 2, lines
    received_at, update = lines[1]
    assert [c["status"] for c in update["conversions"]] == ["CONVERSION_STATUS_COMPLETED"]
    assert received_at - written_at < 1.0
    hidden = await http(
        "GET",
        f"{gateway.url}/v1/api/referrals/stream/{referral['referral_id']}",
        headers=merchant_headers(f"other-{merchant_id}", (READ,)),
    )
    assert hidden.status == 404, hidden.body


# ---- the mesh-wide isolation table (test_tenant_isolation.py) ---------------------------
# The isolation test runs Referrals without Auth, so B's merchant has no shop to create
# referrals with: B's shop, referral and conversion are seeded in the database.

B_REFERRER = "9001"


async def _arrange(ch: grpc.aio.Channel, md: Metadata) -> dict[str, Any]:
    return {"secrets": []}


async def _seed(database_url: str, merchant_b: str) -> dict[str, Any]:
    referral_id, conversion_id = str(uuid.uuid4()), str(uuid.uuid4())
    code = new_code()
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute(
            "INSERT INTO referrals.shops (merchant_id, shop) VALUES (%s, 'b.myshopify.com')",
            (merchant_b,),
        )
        await conn.execute(
            "INSERT INTO referrals.referrals (merchant_id, referral_id, referrer_id, code, shop)"
            " VALUES (%s, %s, %s, %s, 'b.myshopify.com')",
            (merchant_b, referral_id, B_REFERRER, code),
        )
        await conn.execute(
            "INSERT INTO referrals.conversions (merchant_id, conversion_id, referral_id,"
            " referrer_id, referee_id, order_id, status) VALUES (%s, %s, %s, %s, '9002', '77',"
            " 'pending')",
            (merchant_b, conversion_id, referral_id, B_REFERRER),
        )
    return {"secrets": [referral_id, conversion_id, code], "referral_id": referral_id, "code": code}


async def _snapshot(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    return await Stub(ch).GetReferralStatus(
        pb.GetReferralStatusRequest(referral_id=b["referral_id"]), metadata=md
    )


async def _status_by_id(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    request = pb.GetReferralStatusRequest(referral_id=b["referral_id"])
    return await Stub(ch).GetReferralStatus(request, metadata=md)


async def _status_by_code(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    return await Stub(ch).GetReferralStatus(
        pb.GetReferralStatusRequest(code=b["code"]), metadata=md
    )


async def _progress(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    request = pb.GetReferralProgressRequest(referrer_id=B_REFERRER)
    return await Stub(ch).GetReferralProgress(request, metadata=md)


async def _stats(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    return await Stub(ch).GetReferralStats(pb.GetReferralStatsRequest(), metadata=md)


async def _stream_b(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    request = pb.StreamReferralStatusRequest(referral_id=b["referral_id"])
    call = Stub(ch).StreamReferralStatus(request, metadata=md)
    try:
        return await call.read()
    finally:
        call.cancel()


async def _complete_b(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    request = pb.CompleteReferralRequest(code=b["code"], referee_id="9003", idempotency_key="k")
    return await Stub(ch).CompleteReferral(request, metadata=md)


async def _create_as_b_referrer(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    # A's own namespace: A's merchant has no shop here (FAILED_PRECONDITION), and with one
    # it would get a referral of its own, never B's.
    request = pb.CreateReferralRequest(referrer_id=B_REFERRER, idempotency_key="k")
    return await Stub(ch).CreateReferral(request, metadata=md)


async def _invite_as_b_referrer(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    # As CreateReferral: in A's own namespace, never B's referral or invites.
    request = pb.SendInviteRequest(
        referrer_id=B_REFERRER,
        channel=pb.INVITE_CHANNEL_SMS,
        friend_phone="+14155550123",
        idempotency_key="k",
    )
    return await Stub(ch).SendInvite(request, metadata=md)


ISOLATION = Table(
    arrange=_arrange,
    seed=_seed,
    snapshot=_snapshot,
    cases={
        "GetReferralStatus": [Case(_status_by_id), Case(_status_by_code)],
        "GetReferralProgress": [Case(_progress, may_succeed=True)],
        "CompleteReferral": [Case(_complete_b)],
        "GetReferralStats": [Case(_stats, may_succeed=True)],
        "StreamReferralStatus": [Case(_stream_b)],
        "SendInvite": [
            Case(
                _invite_as_b_referrer,
                may_succeed=True,
                also_denied=frozenset({grpc.StatusCode.FAILED_PRECONDITION}),
            )
        ],
        "CreateReferral": [
            Case(
                _create_as_b_referrer,
                may_succeed=True,
                also_denied=frozenset({grpc.StatusCode.FAILED_PRECONDITION}),
            )
        ],
    },
)


# ---- personal data (issue 18's contract) --------------------------------------------------


async def test_export_and_erase_a_customer_and_a_merchant(
    stub: Stub, merchant_id: str, served: RunningService, database_url: str
) -> None:
    from loyalnest.platform.postgres import Database
    from loyalnest.services.referrals.service import DATABASE
    from loyalnest.services.referrals.store import ReferralStore

    referral = await create(stub, merchant_id, "5001")
    await complete(stub, merchant_id, referral.code, "5002")
    other = await create(stub, merchant_id, "5003")
    database = Database(referrals_settings(database_url), DATABASE)
    await database.open()
    try:
        store = ReferralStore(database)
        exported = await store.export_customer(merchant_id, "5001")
        assert [r["code"] for r in exported["referrals"]] == [referral.code]
        assert [c["referee_id"] for c in exported["conversions"]] == ["5002"]
        as_friend = await store.export_customer(merchant_id, "5002")
        assert [c["referrer_id"] for c in as_friend["conversions"]] == ["5001"]
        assert as_friend["referrals"] == []

        assert await store.erase_customer(merchant_id, "5001") >= 2  # referral, conversion
        assert await store.erase_customer(merchant_id, "5001") == 0  # a repeat
        gone = await store.export_customer(merchant_id, "5001")
        assert gone == {
            "referrals": [],
            "conversions": [],
            "rewards": [],
            "first_order_id": None,
            "invites": [],
        }
        assert (await store.export_customer(merchant_id, "5002"))["conversions"] == []
        with pytest.raises(grpc.aio.AioRpcError) as erased:
            await stub.GetReferralStatus(
                pb.GetReferralStatusRequest(code=referral.code), metadata=md(merchant_id)
            )
        assert erased.value.code() == grpc.StatusCode.NOT_FOUND
        # Another customer's referral is untouched until the merchant is erased.
        await stub.GetReferralStatus(
            pb.GetReferralStatusRequest(code=other.code), metadata=md(merchant_id)
        )
        await store.erase_merchant(merchant_id)
        assert (await store.export_customer(merchant_id, "5003"))["referrals"] == []
    finally:
        await database.close()


async def test_an_expired_code_refuses_and_the_referrer_gets_a_new_one(
    stub: Stub, merchant_id: str, database_url: str
) -> None:
    old = await create(stub, merchant_id, "7001")
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute(
            "UPDATE referrals.referrals SET expires_at = now() - interval '1 minute'"
            " WHERE referral_id = %s",
            (old.referral_id,),
        )
    refused = await complete(stub, merchant_id, old.code, "7002")
    assert (refused.status, refused.refusal_reason) == (pb.CONVERSION_STATUS_REFUSED, "expired")
    new = await create(stub, merchant_id, "7001")
    assert new.code != old.code and new.status == pb.REFERRAL_STATUS_ACTIVE
    status = await stub.GetReferralStatus(
        pb.GetReferralStatusRequest(referral_id=old.referral_id), metadata=md(merchant_id)
    )
    assert status.referral.status == pb.REFERRAL_STATUS_EXPIRED
