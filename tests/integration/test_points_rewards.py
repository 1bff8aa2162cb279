"""Rewards catalog and RedeemReward against real PostgreSQL, Valkey and a local stand-in of
Shopify's Admin GraphQL API (tests/integration/shopify_admin_standin.py)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import grpc
import psycopg
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from loyalnest.devstack.standins.shopify_admin import ShopifyAdminStandIn
from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.points.v1 import points_pb2 as pb
from loyalnest.gen.points.v1 import points_pb2_grpc
from loyalnest.platform.server import RunningService
from loyalnest.services.points.service import SPEC
from tests.auth import merchant_metadata
from tests.integration.conftest import points_settings, serve_for_test
from tests.integration.shopify_standin import API_KEY, API_SECRET
from tests.integration.test_auth_service import install
from tests.integration.test_points_service import field_violations
from tests.integration.test_service_identity import POINTS_CREDENTIAL, serving_auth

pytestmark = pytest.mark.integration

PERMISSIONS = ("points:read", "points:write", "rewards:write")
SHOP = "rewards-test.myshopify.com"


@pytest.fixture
def shopify() -> Iterator[ShopifyAdminStandIn]:
    """Shopify for one shop: its OAuth endpoint (the install hands Auth the shop's token) and
    its Admin API, which accepts only tokens the OAuth part issued and not expired."""
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
    """The merchant of SHOP, installed through Auth (which keeps its Shopify token)."""
    async with grpc.aio.insecure_channel(auth.address) as channel:
        installed = await install(auth_pb2_grpc.AuthServiceStub(channel), shopify, SHOP)
    return installed.merchant.merchant_id


@pytest.fixture
async def stub(
    database_url: str,
    redis_url: str,
    merchant_id: str,
    shopify: ShopifyAdminStandIn,
    auth: RunningService,
) -> AsyncIterator[points_pb2_grpc.PointsServiceStub]:
    settings = points_settings(
        database_url,
        redis_url=redis_url,
        shopify_admin_base_url=shopify.base_url,
        # Points gets the shop's token from Auth, with its own service identity.
        call_targets={"auth": auth.address},
        service_credential=POINTS_CREDENTIAL,
    )
    async with serve_for_test(SPEC, settings, points_pb2_grpc.PointsServiceStub) as (_, stub):
        yield stub


def md(merchant: str) -> tuple[tuple[str, str], ...]:
    return merchant_metadata(merchant, PERMISSIONS)


async def create_reward(
    stub, merchant, *, cost=100, kind=pb.REWARD_KIND_FIXED_AMOUNT, value="5.00"
):
    response = await stub.CreateReward(
        pb.CreateRewardRequest(
            reward=pb.Reward(name="5 off", kind=kind, value=value, points_cost=cost),
            idempotency_key=uuid.uuid4().hex,
        ),
        metadata=md(merchant),
    )
    return response.reward


async def earn(stub, merchant, customer, points):
    await stub.EarnPoints(
        pb.EarnPointsRequest(customer_id=customer, points=points, idempotency_key=uuid.uuid4().hex),
        metadata=md(merchant),
    )


async def balance(stub, merchant, customer) -> int:
    response = await stub.GetPointsBalance(
        pb.GetPointsBalanceRequest(customer_id=customer), metadata=md(merchant)
    )
    return response.balance.balance


def redeem_request(reward_id: str, customer: str, key: str | None = None) -> pb.RedeemRewardRequest:
    return pb.RedeemRewardRequest(
        reward_id=reward_id, customer_id=customer, idempotency_key=key or uuid.uuid4().hex
    )


def precondition(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    failure = error_details_pb2.PreconditionFailure()
    assert status is not None and status.details[0].Unpack(failure)
    return failure.violations[0].type


async def test_catalog_create_list_update(stub, merchant_id):
    fixed = await create_reward(stub, merchant_id)
    assert (fixed.name, fixed.value, fixed.points_cost, fixed.active) == (
        "5 off",
        "5.00",
        100,
        True,
    )
    percent = await create_reward(stub, merchant_id, kind=pb.REWARD_KIND_PERCENTAGE, value="10")
    shipping = await create_reward(stub, merchant_id, kind=pb.REWARD_KIND_FREE_SHIPPING, value="")

    updated = await stub.UpdateReward(
        pb.UpdateRewardRequest(
            reward=pb.Reward(reward_id=percent.reward_id, active=False, points_cost=300),
            update_mask=field_mask_pb2.FieldMask(paths=["active", "points_cost"]),
        ),
        metadata=md(merchant_id),
    )
    assert (updated.reward.active, updated.reward.points_cost, updated.reward.value) == (
        False,
        300,
        "10",
    )

    everything = await stub.ListRewards(pb.ListRewardsRequest(), metadata=md(merchant_id))
    assert [r.reward_id for r in everything.rewards] == [
        fixed.reward_id,
        percent.reward_id,
        shipping.reward_id,
    ]
    page = await stub.ListRewards(
        pb.ListRewardsRequest(active_only=True, page_size=1), metadata=md(merchant_id)
    )
    assert [r.reward_id for r in page.rewards] == [fixed.reward_id]
    rest = await stub.ListRewards(
        pb.ListRewardsRequest(active_only=True, page_token=page.next_page_token),
        metadata=md(merchant_id),
    )
    assert [r.reward_id for r in rest.rewards] == [shipping.reward_id]
    assert rest.next_page_token == ""


async def test_create_is_idempotent_and_validated(stub, merchant_id):
    request = pb.CreateRewardRequest(
        reward=pb.Reward(
            name="Ten percent", kind=pb.REWARD_KIND_PERCENTAGE, value="10", points_cost=5
        ),
        idempotency_key="create-1",
    )
    first = await stub.CreateReward(request, metadata=md(merchant_id))
    assert (await stub.CreateReward(request, metadata=md(merchant_id))) == first
    request.reward.points_cost = 6
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await stub.CreateReward(request, metadata=md(merchant_id))
    assert set(field_violations(reused.value)) == {"idempotency_key"}

    bad = [
        (
            pb.Reward(name="x", kind=pb.REWARD_KIND_PERCENTAGE, value="101", points_cost=1),
            "reward.value",
        ),
        (
            pb.Reward(name="x", kind=pb.REWARD_KIND_FIXED_AMOUNT, value="1.234", points_cost=1),
            "reward.value",
        ),
        (
            pb.Reward(name="x", kind=pb.REWARD_KIND_FREE_SHIPPING, value="3", points_cost=1),
            "reward.value",
        ),
        (pb.Reward(name="x", value="3", points_cost=1), "reward.kind"),
        (pb.Reward(name="", kind=pb.REWARD_KIND_FREE_SHIPPING, points_cost=1), "reward.name"),
        (
            pb.Reward(name="x", kind=pb.REWARD_KIND_FREE_SHIPPING, points_cost=0),
            "reward.points_cost",
        ),
    ]
    for reward, field in bad:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateReward(
                pb.CreateRewardRequest(reward=reward, idempotency_key=uuid.uuid4().hex),
                metadata=md(merchant_id),
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in field_violations(caught.value), (reward, field)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateReward(
            pb.UpdateRewardRequest(
                reward=pb.Reward(reward_id=first.reward.reward_id, value="150"),
                update_mask=field_mask_pb2.FieldMask(paths=["value"]),
            ),
            metadata=md(merchant_id),
        )
    assert "reward.value" in field_violations(caught.value)


async def test_redeem_returns_a_single_use_code_once(stub, merchant_id, shopify):
    reward = await create_reward(stub, merchant_id, cost=150, value="7.50")
    await earn(stub, merchant_id, "7390000000001", 400)
    request = redeem_request(reward.reward_id, "7390000000001", key="redeem-1")

    first = await stub.RedeemReward(request, metadata=md(merchant_id))

    assert first.discount_code.startswith("LN-")
    assert (first.transaction.points, first.balance.balance) == (-150, 250)
    created = shopify.codes_of(SHOP)[first.discount_code]
    assert created["input"]["usageLimit"] == 1
    assert created["input"]["customerGets"]["value"]["discountAmount"]["amount"] == "7.50"
    # A retry returns the same code: no second debit, no second code.
    assert (await stub.RedeemReward(request, metadata=md(merchant_id))) == first
    assert await balance(stub, merchant_id, "7390000000001") == 250
    assert len(shopify.codes_of(SHOP)) == 1


async def test_percentage_and_free_shipping_codes(stub, merchant_id, shopify):
    percent = await create_reward(stub, merchant_id, kind=pb.REWARD_KIND_PERCENTAGE, value="15")
    shipping = await create_reward(stub, merchant_id, kind=pb.REWARD_KIND_FREE_SHIPPING, value="")
    await earn(stub, merchant_id, "7390000000002", 200)
    a = await stub.RedeemReward(
        redeem_request(percent.reward_id, "7390000000002"), metadata=md(merchant_id)
    )
    b = await stub.RedeemReward(
        redeem_request(shipping.reward_id, "7390000000002"), metadata=md(merchant_id)
    )
    codes = shopify.codes_of(SHOP)
    assert Decimal(
        str(codes[a.discount_code]["input"]["customerGets"]["value"]["percentage"])
    ) == Decimal("0.15")
    assert codes[b.discount_code]["kind"] == "free_shipping"


async def test_locked_shop_gives_the_points_back_once(stub, merchant_id, shopify):
    reward = await create_reward(stub, merchant_id, cost=100)
    await earn(stub, merchant_id, "7390000000003", 100)
    shopify.locked.add(SHOP)
    request = redeem_request(reward.reward_id, "7390000000003", key="locked-1")

    for _ in range(2):  # the retry gets the same answer and refunds nothing more
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.RedeemReward(request, metadata=md(merchant_id))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert precondition(caught.value) == "REDEMPTION_REFUNDED"
        assert "423" in caught.value.details()
        assert await balance(stub, merchant_id, "7390000000003") == 100

    history = await stub.ListTransactions(
        pb.ListTransactionsRequest(customer_id="7390000000003"), metadata=md(merchant_id)
    )
    assert [(t.type, t.points) for t in history.transactions] == [
        (pb.TRANSACTION_TYPE_REVERSAL, 100),
        (pb.TRANSACTION_TYPE_REDEEM, -100),
        (pb.TRANSACTION_TYPE_EARN, 100),
    ]
    final = await stub.GetPointsBalance(
        pb.GetPointsBalanceRequest(customer_id="7390000000003"), metadata=md(merchant_id)
    )
    assert final.balance.lifetime_redeemed == 0
    # With the shop unlocked, a new key redeems.
    shopify.locked.clear()
    done = await stub.RedeemReward(
        redeem_request(reward.reward_id, "7390000000003"), metadata=md(merchant_id)
    )
    assert done.balance.balance == 0


async def test_unreachable_shop_refunds_and_transient_errors_are_retried(
    stub, merchant_id, shopify
):
    reward = await create_reward(stub, merchant_id, cost=10)
    await earn(stub, merchant_id, "7390000000004", 30)

    shopify.unavailable = True
    # No answer at all: whether the code exists is unknown, so nothing is refunded yet; the
    # redemption waits for a retry with the same key, which settles it.
    unanswered = redeem_request(reward.reward_id, "7390000000004")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RedeemReward(unanswered, metadata=md(merchant_id))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "same idempotency_key" in (caught.value.details() or "")
    assert await balance(stub, merchant_id, "7390000000004") == 20
    shopify.unavailable = False
    shopify.locked.add(SHOP)  # now refused for sure: the retry refunds
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RedeemReward(unanswered, metadata=md(merchant_id))
    assert precondition(caught.value) == "REDEMPTION_REFUNDED"
    assert await balance(stub, merchant_id, "7390000000004") == 30
    shopify.locked.clear()

    shopify.unavailable = False
    shopify.fail_next = 1  # one 503, then the HTTP client's retry succeeds
    ok = await stub.RedeemReward(
        redeem_request(reward.reward_id, "7390000000004"), metadata=md(merchant_id)
    )
    assert ok.balance.balance == 20

    shopify.lose_next_answer = 1  # created, but the answer is lost: the retry finds TAKEN
    lost = await stub.RedeemReward(
        redeem_request(reward.reward_id, "7390000000004"), metadata=md(merchant_id)
    )
    assert lost.discount_code in shopify.codes_of(SHOP)
    assert lost.balance.balance == 10


async def test_the_code_is_keyed_and_only_for_the_redeeming_customer(stub, merchant_id, shopify):
    """Issue 14, finding 8: the code was an unkeyed hash of the redemption id (anyone who
    learnt the id could compute it) and applied to any customer of the shop."""
    reward = await create_reward(stub, merchant_id, cost=10)
    await earn(stub, merchant_id, "7390000000010", 10)
    done = await stub.RedeemReward(
        redeem_request(reward.reward_id, "7390000000010"), metadata=md(merchant_id)
    )
    unkeyed = hashlib.sha256(f"loyalnest-reward:{done.redemption_id}".encode()).digest()
    assert done.discount_code != "LN-" + base64.b32encode(unkeyed).decode()[:12]
    assert len(done.discount_code) == len("LN-") + 16
    created = shopify.codes_of(SHOP)[done.discount_code]["input"]
    assert created["customerSelection"] == {
        "customers": {"add": ["gid://shopify/Customer/7390000000010"]}
    }
    # A customer id that is not Shopify's cannot hold a code: refused before any debit.
    await earn(stub, merchant_id, "pos-guest-1", 10)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RedeemReward(
            redeem_request(reward.reward_id, "pos-guest-1"), metadata=md(merchant_id)
        )
    assert precondition(caught.value) == "NOT_A_SHOPIFY_CUSTOMER"
    assert await balance(stub, merchant_id, "pos-guest-1") == 10


async def test_a_timed_out_code_that_was_created_is_not_refunded(
    database_url, redis_url, merchant_id, shopify, auth
):
    """Issue 14, finding 8: Shopify created the code but its answer came after the client's
    timeout; the points were refunded and the customer kept a working code besides."""
    settings = points_settings(
        database_url,
        redis_url=redis_url,
        shopify_admin_base_url=shopify.base_url,
        shopify_admin_timeout_seconds=0.3,
        call_targets={"auth": auth.address},
        service_credential=POINTS_CREDENTIAL,
    )
    async with serve_for_test(SPEC, settings, points_pb2_grpc.PointsServiceStub) as (_, stub):
        reward = await create_reward(stub, merchant_id, cost=40)
        await earn(stub, merchant_id, "7390000000011", 100)
        shopify.stall_mutations = 0.6
        done = await stub.RedeemReward(
            redeem_request(reward.reward_id, "7390000000011"), metadata=md(merchant_id)
        )
        shopify.stall_mutations = 0
        assert done.discount_code in shopify.codes_of(SHOP)
        assert await balance(stub, merchant_id, "7390000000011") == 60
        history = await stub.ListTransactions(
            pb.ListTransactionsRequest(customer_id="7390000000011"), metadata=md(merchant_id)
        )
        assert [t.type for t in history.transactions] == [
            pb.TRANSACTION_TYPE_REDEEM,
            pb.TRANSACTION_TYPE_EARN,
        ]


async def test_inactive_reward_and_unknown_reward_take_nothing(stub, merchant_id, shopify):
    reward = await create_reward(stub, merchant_id, cost=10)
    await stub.UpdateReward(
        pb.UpdateRewardRequest(
            reward=pb.Reward(reward_id=reward.reward_id, active=False),
            update_mask=field_mask_pb2.FieldMask(paths=["active"]),
        ),
        metadata=md(merchant_id),
    )
    await earn(stub, merchant_id, "7390000000005", 30)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RedeemReward(
            redeem_request(reward.reward_id, "7390000000005"), metadata=md(merchant_id)
        )
    assert precondition(caught.value) == "REWARD_INACTIVE"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RedeemReward(
            redeem_request(str(uuid.uuid4()), "7390000000005"), metadata=md(merchant_id)
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert await balance(stub, merchant_id, "7390000000005") == 30
    assert shopify.codes_of(SHOP) == {}


async def test_fifty_concurrent_redemptions_never_overdraw(stub, merchant_id, shopify):
    reward = await create_reward(stub, merchant_id, cost=100)
    await earn(stub, merchant_id, "7390000000006", 1000)

    results = await asyncio.gather(
        *(
            stub.RedeemReward(
                redeem_request(reward.reward_id, "7390000000006"), metadata=md(merchant_id)
            )
            for _ in range(50)
        ),
        return_exceptions=True,
    )

    codes = [r.discount_code for r in results if isinstance(r, pb.RedeemRewardResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(codes) == len(set(codes)) == 10
    assert len(refused) == 40
    assert {precondition(e) for e in refused} == {"INSUFFICIENT_POINTS"}
    assert await balance(stub, merchant_id, "7390000000006") == 0
    assert set(shopify.codes_of(SHOP)) == set(codes)


async def test_merchant_without_a_connected_shop_is_refused_before_any_debit(stub, merchant_id):
    other = f"{merchant_id}-noshop"
    reward = await create_reward(stub, other, cost=10)
    await earn(stub, other, "7390000000007", 10)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RedeemReward(
            redeem_request(reward.reward_id, "7390000000007"), metadata=md(other)
        )
    assert precondition(caught.value) == "SHOP_NOT_CONNECTED"
    assert await balance(stub, other, "7390000000007") == 10


# ---- the shop's token comes from Auth ----------------------------------------------------


async def auth_rows(database_url: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(sql, params)
        return await cursor.fetchall()


async def test_the_code_is_created_with_the_token_auth_handed_out(
    stub, merchant_id, shopify, database_url
):
    reward = await create_reward(stub, merchant_id, cost=10)
    await earn(stub, merchant_id, "7390000000008", 10)
    redeemed = await stub.RedeemReward(
        redeem_request(reward.reward_id, "7390000000008"), metadata=md(merchant_id)
    )
    # The Admin API stand-in knows no configured token: only the one its OAuth endpoint gave
    # Auth at install, which Auth handed to Points.
    assert shopify.tokens == {}
    assert redeemed.discount_code in shopify.codes_of(SHOP)
    reads = await auth_rows(
        database_url,
        "SELECT merchant_id::text, service, refreshed FROM auth.shop_token_reads",
    )
    assert reads and {r[:2] for r in reads} == {(merchant_id, "points")}
    audited = await auth_rows(
        database_url,
        "SELECT actor FROM auth.audit_logs WHERE entity_type = 'shop_token_reads'",
    )
    assert len(audited) == len(reads) and {a for (a,) in audited} == {"service:points"}


async def test_an_expiring_shop_token_is_refreshed_rotated_and_refused_when_dead(
    stub, auth, shopify, database_url
):
    # A shop whose offline token expires (Shopify: expires_in + refresh_token) in 3 s.
    shop = "expiring.myshopify.com"
    shopify.token_lifetime_seconds = 3
    async with grpc.aio.insecure_channel(auth.address) as channel:
        merchant = (await install(auth_pb2_grpc.AuthServiceStub(channel), shopify, shop)).merchant
    merchant_id = merchant.merchant_id
    (first_refresh,) = [t for t, of in shopify.refresh_tokens.items() if of == shop]
    reward = await create_reward(stub, merchant_id, cost=10)
    await earn(stub, merchant_id, "7390000000009", 30)
    await asyncio.sleep(3.2)  # the install's access token has expired at Shopify

    # Auth refreshes before handing the token out; the refresh token rotates each time.
    first = await stub.RedeemReward(
        redeem_request(reward.reward_id, "7390000000009"), metadata=md(merchant_id)
    )
    assert first.discount_code in shopify.codes_of(shop)
    refreshes = [e for e in shopify.token_requests("refresh_token") if e.shop == shop]
    assert refreshes and all(e.status == 200 for e in refreshes)
    assert refreshes[0].form["refresh_token"] == first_refresh
    assert first_refresh not in shopify.refresh_tokens  # spent
    second = await stub.RedeemReward(
        redeem_request(reward.reward_id, "7390000000009"), metadata=md(merchant_id)
    )
    assert second.discount_code in shopify.codes_of(shop)
    later = [e for e in shopify.token_requests("refresh_token") if e.shop == shop]
    # Each refresh presented the refresh token the one before it got back (the stand-in
    # answers 400 to a spent or unknown one), so Auth stored every rotation.
    assert len(later) > len(refreshes) and all(e.status == 200 for e in later)
    stored = await auth_rows(
        database_url,
        "SELECT access_token_refreshed_at IS NOT NULL, access_token_expires_at > now()"
        " FROM auth.merchants WHERE merchant_id = %s",
        merchant_id,
    )
    assert stored == [(True, True)]

    # Shopify forgets the refresh token (revoked): once the access token expires, no code.
    shopify.refresh_tokens.clear()
    await asyncio.sleep(3.2)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RedeemReward(
            redeem_request(reward.reward_id, "7390000000009"), metadata=md(merchant_id)
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert precondition(caught.value) == "SHOP_NOT_CONNECTED"
    assert shopify.token_requests("refresh_token")[-1].status == 400
    assert await balance(stub, merchant_id, "7390000000009") == 10  # two redeemed, nothing taken


async def test_cancelling_an_unused_reward_gives_its_points_back_once(stub, merchant_id, shopify):
    customer = "7390000000077"
    reward = await create_reward(stub, merchant_id, cost=120)
    await earn(stub, merchant_id, customer, 300)
    redeemed = await stub.RedeemReward(
        redeem_request(reward.reward_id, customer), metadata=md(merchant_id)
    )
    assert redeemed.balance.balance == 180  # 300 - 120
    cancel = pb.CancelRedemptionRequest(redemption_id=redeemed.redemption_id)

    # Shopify does not answer: nothing changes, the caller is told to retry.
    shopify.unavailable = True
    with pytest.raises(grpc.aio.AioRpcError) as unanswered:
        await stub.CancelRedemption(cancel, metadata=md(merchant_id))
    assert unanswered.value.code() == grpc.StatusCode.UNAVAILABLE
    shopify.unavailable = False
    assert await balance(stub, merchant_id, customer) == 180

    first, again = await asyncio.gather(
        stub.CancelRedemption(cancel, metadata=md(merchant_id)),
        stub.CancelRedemption(cancel, metadata=md(merchant_id)),
    )
    assert first.refund.transaction_id == again.refund.transaction_id
    assert (first.refund.points, first.refund.type) == (120, pb.TRANSACTION_TYPE_REVERSAL)
    repeat = await stub.CancelRedemption(cancel, metadata=md(merchant_id))
    assert repeat.refund.transaction_id == first.refund.transaction_id
    assert await balance(stub, merchant_id, customer) == 300  # given back once
    assert shopify.codes_of(SHOP)[redeemed.discount_code]["active"] is False

    # A used code is not cancelled: the points stay spent.
    used = await stub.RedeemReward(
        redeem_request(reward.reward_id, customer), metadata=md(merchant_id)
    )
    shopify.codes_of(SHOP)[used.discount_code]["used"] = 1
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CancelRedemption(
            pb.CancelRedemptionRequest(redemption_id=used.redemption_id), metadata=md(merchant_id)
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert precondition(refused.value) == "REDEMPTION_NOT_CANCELLABLE"
    assert await balance(stub, merchant_id, customer) == 180
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.CancelRedemption(
            pb.CancelRedemptionRequest(redemption_id=str(uuid.uuid4())), metadata=md(merchant_id)
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
