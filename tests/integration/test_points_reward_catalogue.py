"""The reward catalogue's depth (issue 21): conditions on the code (minimum subtotal, products
or collections, expiry), free products, per-customer limits and tier-only rewards, against
real PostgreSQL, Valkey, Auth and the Shopify Admin API stand-in, whose checkout applies a
code as Shopify does (tests/integration/shopify_admin_standin.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from loyalnest.devstack.standins.shopify_admin import CartLine, CodeRefused
from loyalnest.gen.events.v1 import core_pb2
from loyalnest.gen.points.v1 import points_pb2 as pb
from loyalnest.gen.points.v1 import points_pb2_grpc
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.postgres import Database
from loyalnest.platform.program_settings import default_program
from loyalnest.services.points.domain import LimitPeriod
from loyalnest.services.points.service import DATABASE, SERVICE_NAME, SPEC, build
from loyalnest.services.points.store.postgres import PostgresLedgerStore
from tests.auth import merchant_headers
from tests.integration import test_points_rewards as rewards
from tests.integration.conftest import points_settings, serve_for_test, serving
from tests.integration.test_gateway_validate import Gateway, behind_gateway, http
from tests.integration.test_points_rewards import SHOP, balance, earn, md, precondition
from tests.integration.test_points_service import field_violations
from tests.integration.test_service_identity import POINTS_CREDENTIAL

pytestmark = pytest.mark.integration

# The rewards tests' fixtures: Shopify (OAuth and Admin API), Auth holding the shop's token,
# the installed merchant and Points calling both.
shopify = rewards.shopify
auth = rewards.auth
merchant_id = rewards.merchant_id
stub = rewards.stub

CUSTOMER_GID = "gid://shopify/Customer/{}"


async def create(stub, merchant, **fields) -> pb.Reward:
    reward = pb.Reward(name=fields.pop("name", "reward"), **fields)
    response = await stub.CreateReward(
        pb.CreateRewardRequest(reward=reward, idempotency_key=uuid.uuid4().hex),
        metadata=md(merchant),
    )
    return response.reward


async def redeem(stub, merchant, reward_id, customer, key=None) -> pb.RedeemRewardResponse:
    return await stub.RedeemReward(
        pb.RedeemRewardRequest(
            reward_id=reward_id, customer_id=customer, idempotency_key=key or uuid.uuid4().hex
        ),
        metadata=md(merchant),
    )


def line(product: int, price: str, quantity: int = 1, collections=()) -> CartLine:
    return CartLine(product, product * 100 + 1, Decimal(price), quantity, tuple(collections))


async def test_conditions_reach_shopify_and_its_checkout_honours_them(stub, merchant_id, shopify):
    customer = "7391000000001"
    reward = await create(
        stub,
        merchant_id,
        kind=pb.REWARD_KIND_FIXED_AMOUNT,
        value="10.00",
        points_cost=100,
        min_subtotal="50.00",
        collection_ids=["444"],
        code_expiry_days=7,
    )
    assert (reward.min_subtotal, list(reward.collection_ids), reward.code_expiry_days) == (
        "50.00",
        ["gid://shopify/Collection/444"],
        7,
    )
    await earn(stub, merchant_id, customer, 300)
    done = await redeem(stub, merchant_id, reward.reward_id, customer)

    expires = done.expire_time.ToDatetime(UTC)
    assert expires == done.transaction.create_time.ToDatetime(UTC) + timedelta(days=7)
    sent = shopify.codes_of(SHOP)[done.discount_code]["input"]
    assert sent["minimumRequirement"] == {"subtotal": {"greaterThanOrEqualToSubtotal": "50.00"}}
    assert sent["customerGets"]["items"] == {
        "collections": {"add": ["gid://shopify/Collection/444"]}
    }
    assert datetime.fromisoformat(sent["endsAt"]) == expires

    buyer = CUSTOMER_GID.format(customer)
    # Below the minimum subtotal, outside the collection, after the expiry: refused.
    with pytest.raises(CodeRefused, match=r"Spend at least 50\.00"):
        shopify.checkout(SHOP, done.discount_code, buyer, [line(1, "40.00", collections=[444])])
    with pytest.raises(CodeRefused, match="does not apply"):
        shopify.checkout(SHOP, done.discount_code, buyer, [line(1, "60.00", collections=[9])])
    with pytest.raises(CodeRefused, match="expired"):
        shopify.checkout(
            SHOP,
            done.discount_code,
            buyer,
            [line(1, "60.00", collections=[444])],
            at=expires + timedelta(seconds=1),
        )
    with pytest.raises(CodeRefused, match="not available to you"):
        shopify.checkout(
            SHOP, done.discount_code, CUSTOMER_GID.format(1), [line(1, "60", collections=[444])]
        )
    cart = [line(1, "20.00", collections=[444]), line(2, "45.00")]
    assert shopify.checkout(SHOP, done.discount_code, buyer, cart) == Decimal("10.00")

    # A percentage off some products only: 20% of the 30.00 product, nothing off the other.
    percent = await create(
        stub,
        merchant_id,
        kind=pb.REWARD_KIND_PERCENTAGE,
        value="20",
        points_cost=50,
        product_ids=["gid://shopify/Product/901"],
    )
    code = (await redeem(stub, merchant_id, percent.reward_id, customer)).discount_code
    assert "endsAt" not in shopify.codes_of(SHOP)[code]["input"]  # no expiry set: never
    cart = [line(901, "30.00"), line(902, "50.00")]
    assert shopify.checkout(SHOP, code, buyer, cart) == Decimal("6.00")

    # Free shipping from 30.00.
    shipping = await create(
        stub, merchant_id, kind=pb.REWARD_KIND_FREE_SHIPPING, points_cost=20, min_subtotal="30"
    )
    assert shipping.min_subtotal == "30"
    code = (await redeem(stub, merchant_id, shipping.reward_id, customer)).discount_code
    assert shopify.codes_of(SHOP)[code]["kind"] == "free_shipping"
    with pytest.raises(CodeRefused, match="Spend at least 30"):
        shopify.checkout(SHOP, code, buyer, [line(3, "29.99")])
    assert shopify.checkout(SHOP, code, buyer, [line(3, "30.00")]) == Decimal(0)


async def test_a_free_product_takes_one_unit_of_its_variant_off(stub, merchant_id, shopify):
    customer = "7391000000002"
    shopify.add_product(SHOP, 555, "Mug")  # its variant 55501 costs 30.00
    reward = await create(
        stub,
        merchant_id,
        kind=pb.REWARD_KIND_FREE_PRODUCT,
        points_cost=200,
        variant_id="55501",
    )
    assert reward.variant_id == "gid://shopify/ProductVariant/55501"
    await earn(stub, merchant_id, customer, 500)
    done = await redeem(stub, merchant_id, reward.reward_id, customer)

    gets = shopify.codes_of(SHOP)[done.discount_code]["input"]["customerGets"]
    assert gets["items"] == {
        "products": {"productVariantsToAdd": ["gid://shopify/ProductVariant/55501"]}
    }
    buyer = CUSTOMER_GID.format(customer)
    mugs = CartLine(555, 55501, Decimal("30.00"), quantity=2)
    assert shopify.checkout(SHOP, done.discount_code, buyer, [mugs]) == Decimal("30.00")
    with pytest.raises(CodeRefused, match="does not apply"):
        shopify.checkout(SHOP, done.discount_code, buyer, [line(1, "30.00")])

    # A variant the shop does not have: no code, the points come back, the reason is said.
    gone = await create(
        stub, merchant_id, kind=pb.REWARD_KIND_FREE_PRODUCT, points_cost=100, variant_id="999"
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await redeem(stub, merchant_id, gone.reward_id, customer)
    assert precondition(caught.value) == "REDEMPTION_REFUNDED"
    assert "ProductVariant/999 does not exist" in (caught.value.details() or "")
    assert await balance(stub, merchant_id, customer) == 300


async def test_shopify_throttling_is_waited_out(stub, merchant_id, shopify):
    customer = "7391000000003"
    reward = await create(
        stub, merchant_id, kind=pb.REWARD_KIND_FIXED_AMOUNT, value="5.00", points_cost=10
    )
    await earn(stub, merchant_id, customer, 30)
    shopify.throttle_next, shopify.throttle_status = 1, 429
    done = await redeem(stub, merchant_id, reward.reward_id, customer)
    assert done.discount_code in shopify.codes_of(SHOP)

    # Throttled longer than the client waits: nothing is decided yet, a retry settles it.
    shopify.throttle_next, shopify.throttle_status = 10, 200
    key = "throttled-1"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await redeem(stub, merchant_id, reward.reward_id, customer, key)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    retry = error_details_pb2.RetryInfo()
    assert status is not None and any(d.Unpack(retry) for d in status.details)
    shopify.throttle_next = 0
    settled = await redeem(stub, merchant_id, reward.reward_id, customer, key)
    assert settled.discount_code in shopify.codes_of(SHOP)
    assert await balance(stub, merchant_id, customer) == 10


async def test_bad_rewards_are_refused_field_by_field(stub, merchant_id):
    cases = [
        (
            {"kind": pb.REWARD_KIND_FIXED_AMOUNT, "value": "5.00", "min_subtotal": "-1"},
            "reward.min_subtotal",
        ),
        (
            {"kind": pb.REWARD_KIND_FREE_SHIPPING, "product_ids": ["1"]},
            "reward.product_ids",
        ),
        (
            {"kind": pb.REWARD_KIND_PERCENTAGE, "value": "5", "product_ids": ["gid://x/1"]},
            "reward.product_ids[0]",
        ),
        (
            {
                "kind": pb.REWARD_KIND_PERCENTAGE,
                "value": "5",
                "product_ids": ["1"],
                "collection_ids": ["2"],
            },
            "reward.collection_ids",
        ),
        (
            {"kind": pb.REWARD_KIND_FIXED_AMOUNT, "value": "5.00", "code_expiry_days": 4000},
            "reward.code_expiry_days",
        ),
        (
            {
                "kind": pb.REWARD_KIND_FIXED_AMOUNT,
                "value": "5.00",
                "customer_limit": pb.RedemptionLimit(max_redemptions=2),
            },
            "reward.customer_limit.period",
        ),
        (
            {
                "kind": pb.REWARD_KIND_FIXED_AMOUNT,
                "value": "5.00",
                "customer_limit": pb.RedemptionLimit(
                    max_redemptions=-1, period=core_pb2.LIMIT_PERIOD_DAY
                ),
            },
            "reward.customer_limit.max_redemptions",
        ),
        (
            {"kind": pb.REWARD_KIND_FIXED_AMOUNT, "value": "5.00", "tier_ids": ["gold", "gold"]},
            "reward.tier_ids[1]",
        ),
        ({"kind": pb.REWARD_KIND_FREE_PRODUCT}, "reward.variant_id"),
        ({"kind": pb.REWARD_KIND_FREE_PRODUCT, "value": "3", "variant_id": "1"}, "reward.value"),
        (
            {"kind": pb.REWARD_KIND_FIXED_AMOUNT, "value": "5.00", "variant_id": "1"},
            "reward.variant_id",
        ),
        ({"kind": pb.REWARD_KIND_GIFT_CARD, "value": "0"}, "reward.value"),
        (
            {"kind": pb.REWARD_KIND_GIFT_CARD, "value": "10.00", "min_subtotal": "20.00"},
            "reward.min_subtotal",
        ),
    ]
    for fields, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await create(stub, merchant_id, points_cost=10, **fields)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert field in field_violations(caught.value), (fields, field)

    # An update is checked on the reward as it would be: a kind change must fit its scope.
    scoped = await create(
        stub,
        merchant_id,
        kind=pb.REWARD_KIND_PERCENTAGE,
        value="5",
        points_cost=10,
        product_ids=["7"],
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateReward(
            pb.UpdateRewardRequest(
                reward=pb.Reward(
                    reward_id=scoped.reward_id, kind=pb.REWARD_KIND_FREE_SHIPPING, value=""
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["kind", "value"]),
            ),
            metadata=md(merchant_id),
        )
    assert "reward.product_ids" in field_violations(caught.value)
    updated = await stub.UpdateReward(
        pb.UpdateRewardRequest(
            reward=pb.Reward(
                reward_id=scoped.reward_id,
                collection_ids=["8"],
                customer_limit=pb.RedemptionLimit(
                    max_redemptions=3, period=core_pb2.LIMIT_PERIOD_MONTH
                ),
            ),
            update_mask=field_mask_pb2.FieldMask(
                paths=["product_ids", "collection_ids", "customer_limit"]
            ),
        ),
        metadata=md(merchant_id),
    )
    assert list(updated.reward.collection_ids) == ["gid://shopify/Collection/8"]
    assert not updated.reward.product_ids
    assert updated.reward.customer_limit.max_redemptions == 3


async def test_the_per_customer_limit_holds_under_concurrency(stub, merchant_id, shopify):
    customer = "7391000000004"
    reward = await create(
        stub,
        merchant_id,
        kind=pb.REWARD_KIND_FIXED_AMOUNT,
        value="5.00",
        points_cost=10,
        customer_limit=pb.RedemptionLimit(max_redemptions=2, period=core_pb2.LIMIT_PERIOD_EVER),
    )
    await earn(stub, merchant_id, customer, 1000)
    keys = [f"limit-{i}" for i in range(10)]
    results = await asyncio.gather(
        *(redeem(stub, merchant_id, reward.reward_id, customer, key) for key in keys),
        return_exceptions=True,
    )
    done = {
        k: r for k, r in zip(keys, results, strict=True) if isinstance(r, pb.RedeemRewardResponse)
    }
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(done) == 2 and len(refused) == 8
    assert {precondition(e) for e in refused} == {"REDEMPTION_LIMIT_REACHED"}
    assert {e.code() for e in refused} == {grpc.StatusCode.FAILED_PRECONDITION}
    assert await balance(stub, merchant_id, customer) == 980
    assert len(shopify.codes_of(SHOP)) == 2

    # A retry of a redemption that got through returns it, limit reached or not.
    key, first = next(iter(done.items()))
    assert await redeem(stub, merchant_id, reward.reward_id, customer, key) == first
    # Another customer has a limit of their own.
    await earn(stub, merchant_id, "7391000000005", 10)
    await redeem(stub, merchant_id, reward.reward_id, "7391000000005")

    # A cancelled redemption gave its points back and no longer counts.
    await stub.CancelRedemption(
        pb.CancelRedemptionRequest(redemption_id=first.redemption_id), metadata=md(merchant_id)
    )
    listed = await stub.ListRewards(
        pb.ListRewardsRequest(customer_id=customer), metadata=md(merchant_id)
    )
    assert [(e.redeemable, e.redemptions_left) for e in listed.eligibility] == [(True, 1)]
    again = await redeem(stub, merchant_id, reward.reward_id, customer)
    assert again.balance.balance == 980
    listed = await stub.ListRewards(
        pb.ListRewardsRequest(customer_id=customer), metadata=md(merchant_id)
    )
    (eligibility,) = listed.eligibility
    assert (eligibility.redeemable, eligibility.redemptions_left) == (False, 0)
    assert list(eligibility.reasons) == [pb.REWARD_INELIGIBILITY_LIMIT_REACHED]


def test_limit_periods_are_utc_calendar_periods():
    now = datetime(2026, 12, 6, 13, 45, tzinfo=UTC)
    assert LimitPeriod.DAY.start(now) == datetime(2026, 12, 6, tzinfo=UTC)
    assert LimitPeriod.MONTH.start(now) == datetime(2026, 12, 1, tzinfo=UTC)
    assert LimitPeriod.YEAR.start(now) == datetime(2026, 1, 1, tzinfo=UTC)
    assert LimitPeriod.EVER.start(now) == datetime(1970, 1, 1, tzinfo=UTC)


async def _save_tiers(
    database_url: str,
    merchant_id: str,
    term: core_pb2.VipTerm.ValueType = core_pb2.VIP_TERM_LIFETIME,
    grace_days: int = 0,
) -> None:
    """Points' copy of a program with Silver (100 points earned) and Gold (300)."""
    program = default_program()
    program.version = 1
    program.vip_metric = core_pb2.VIP_METRIC_POINTS_EARNED
    program.vip_term = term
    program.vip_grace_days = grace_days
    program.vip_tiers.add(tier_id="silver", name="Silver", threshold=100)
    program.vip_tiers.add(tier_id="gold", name="Gold", threshold=300)
    database = Database(ServiceSettings(database_url=database_url), DATABASE)
    await database.open()
    try:
        await database.migrate()
        store = PostgresLedgerStore(database)
        assert await store.save_program_settings(merchant_id, 1, program.SerializeToString())
    finally:
        await database.close()


async def test_tier_only_rewards(stub, merchant_id, shopify, database_url):
    await _save_tiers(database_url, merchant_id)
    gold_only = await create(
        stub,
        merchant_id,
        kind=pb.REWARD_KIND_FREE_SHIPPING,
        points_cost=50,
        tier_ids=["gold"],
    )
    everyone = await create(
        stub, merchant_id, kind=pb.REWARD_KIND_PERCENTAGE, value="5", points_cost=500
    )
    silver, gold = "7391000000006", "7391000000007"
    await earn(stub, merchant_id, silver, 150)
    await earn(stub, merchant_id, gold, 350)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await redeem(stub, merchant_id, gold_only.reward_id, silver)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert precondition(caught.value) == "TIER_REQUIRED"
    assert "tier 'silver'" in (caught.value.details() or "")
    assert await balance(stub, merchant_id, silver) == 150
    # The Gold customer redeems (their upgrade applied now: events are off in this test).
    done = await redeem(stub, merchant_id, gold_only.reward_id, gold)
    assert done.balance.balance == 300

    listed = await stub.ListRewards(
        pb.ListRewardsRequest(customer_id=silver), metadata=md(merchant_id)
    )
    by_id = {e.reward_id: e for e in listed.eligibility}
    assert list(by_id[gold_only.reward_id].reasons) == [pb.REWARD_INELIGIBILITY_TIER_REQUIRED]
    assert list(by_id[everyone.reward_id].reasons) == [pb.REWARD_INELIGIBILITY_INSUFFICIENT_POINTS]
    assert by_id[everyone.reward_id].points_needed == 350
    assert by_id[gold_only.reward_id].redemptions_left == -1
    listed = await stub.ListRewards(
        pb.ListRewardsRequest(customer_id=gold), metadata=md(merchant_id)
    )
    assert [e.redeemable for e in listed.eligibility] == [True, False]
    stranger = await stub.ListRewards(
        pb.ListRewardsRequest(customer_id="7391000000099"), metadata=md(merchant_id)
    )
    assert [list(e.reasons) for e in stranger.eligibility] == [
        [pb.REWARD_INELIGIBILITY_TIER_REQUIRED, pb.REWARD_INELIGIBILITY_INSUFFICIENT_POINTS],
        [pb.REWARD_INELIGIBILITY_INSUFFICIENT_POINTS],
    ]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await redeem(stub, merchant_id, gold_only.reward_id, "7391000000099")
    assert precondition(caught.value) == "TIER_REQUIRED"
    # Without customer_id, no eligibility; a bad one is named.
    plain = await stub.ListRewards(pb.ListRewardsRequest(), metadata=md(merchant_id))
    assert len(plain.rewards) == 2 and not plain.eligibility
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListRewards(pb.ListRewardsRequest(customer_id="a b"), metadata=md(merchant_id))
    assert list(field_violations(caught.value)) == ["customer_id"]

    # A retry of the Gold customer's redemption returns it after the reward was deactivated.
    key = "gold-retry"
    first = await redeem(stub, merchant_id, gold_only.reward_id, gold, key)
    await stub.UpdateReward(
        pb.UpdateRewardRequest(
            reward=pb.Reward(reward_id=gold_only.reward_id, active=False),
            update_mask=field_mask_pb2.FieldMask(paths=["active"]),
        ),
        metadata=md(merchant_id),
    )
    replayed = await redeem(stub, merchant_id, gold_only.reward_id, gold, key)
    replayed.ClearField("reward")  # the reward as it is now (inactive)
    first.ClearField("reward")
    assert replayed == first
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await redeem(stub, merchant_id, gold_only.reward_id, gold)
    assert precondition(caught.value) == "REWARD_INACTIVE"


async def points_rows(database_url: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(sql, params)
        return await cursor.fetchall()


async def test_a_gift_card_code_is_shown_once_and_never_kept(
    stub, merchant_id, shopify, database_url
):
    customer = "7391000000008"
    reward = await create(
        stub,
        merchant_id,
        kind=pb.REWARD_KIND_GIFT_CARD,
        value="25.00",
        points_cost=1000,
        code_expiry_days=365,
    )
    await earn(stub, merchant_id, customer, 3000)
    first = await redeem(stub, merchant_id, reward.reward_id, customer, "card-1")

    card = first.gift_card
    assert len(card.code) == 16 and card.last_characters == card.code[-4:]
    assert first.discount_code == "" and first.balance.balance == 2000
    made = shopify.gift_cards[card.gift_card_id]
    assert (made["initialValue"], made["customerId"]) == ("25.00", CUSTOMER_GID.format(customer))
    assert made["expiresOn"] == first.expire_time.ToDatetime(UTC).date().isoformat()
    # A retry returns the redemption, not the code (Points does not have it).
    again = await redeem(stub, merchant_id, reward.reward_id, customer, "card-1")
    assert again.redemption_id == first.redemption_id
    assert (again.gift_card.code, again.gift_card.last_characters) == ("", card.last_characters)
    assert again.gift_card.gift_card_id == card.gift_card_id
    assert len(shopify.gift_cards) == 1 and again.balance.balance == 2000
    # Nowhere in Points' tables: only the last characters and Shopify's id.
    for table in ("reward_redemptions", "points_transactions", "idempotency_keys", "outbox"):
        dump = await points_rows(
            database_url, f"SELECT string_agg(t::text, ' ') FROM points.{table} t"
        )
        assert card.code not in str(dump[0][0]), table
    stored = await points_rows(
        database_url,
        "SELECT gift_card_id, gift_card_last_characters, discount_code"
        " FROM points.reward_redemptions WHERE redemption_id = %s",
        first.redemption_id,
    )
    assert stored == [(card.gift_card_id, card.last_characters, "")]

    # The customer pays with it; a used card is not cancelled.
    assert shopify.spend_gift_card(card.code, Decimal("10.00")) == Decimal("15.00")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CancelRedemption(
            pb.CancelRedemptionRequest(redemption_id=first.redemption_id),
            metadata=md(merchant_id),
        )
    assert precondition(caught.value) == "REDEMPTION_NOT_CANCELLABLE"
    # An unused one is: switched off at Shopify, the points back.
    unused = await redeem(stub, merchant_id, reward.reward_id, customer)
    cancelled = await stub.CancelRedemption(
        pb.CancelRedemptionRequest(redemption_id=unused.redemption_id), metadata=md(merchant_id)
    )
    assert cancelled.balance.balance == 2000
    assert shopify.gift_cards[unused.gift_card.gift_card_id]["enabled"] is False
    with pytest.raises(CodeRefused):
        shopify.spend_gift_card(unused.gift_card.code, Decimal("1.00"))


async def test_a_gift_card_whose_answer_was_lost_is_switched_off_and_refunded(
    stub, merchant_id, shopify
):
    customer = "7391000000009"
    reward = await create(
        stub, merchant_id, kind=pb.REWARD_KIND_GIFT_CARD, value="5.00", points_cost=100
    )
    await earn(stub, merchant_id, customer, 300)
    calls = shopify.calls
    key = "lost-card"

    # The lookup is answered, the card is made but the answer is lost: undecided, no refund.
    shopify.lose_answer_of = "giftCardCreate"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await redeem(stub, merchant_id, reward.reward_id, customer, key)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert shopify.calls > calls
    (orphan_id,) = shopify.gift_cards  # made once: the client never re-sends a create
    assert await balance(stub, merchant_id, customer) == 200

    # The retry finds the card nobody has the code of, switches it off, gives points back.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await redeem(stub, merchant_id, reward.reward_id, customer, key)
    assert precondition(caught.value) == "REDEMPTION_REFUNDED"
    assert "was deactivated" in (caught.value.details() or "")
    assert shopify.gift_cards[orphan_id]["enabled"] is False
    assert len(shopify.gift_cards) == 1
    assert await balance(stub, merchant_id, customer) == 300

    # A shop where the app may not issue gift cards (no write_gift_cards): refunded, said why.
    shopify.access_denied.add("giftCardCreate")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await redeem(stub, merchant_id, reward.reward_id, customer)
    assert precondition(caught.value) == "REDEMPTION_REFUNDED"
    assert "ACCESS_DENIED" in (caught.value.details() or "")
    assert await balance(stub, merchant_id, customer) == 300
    shopify.access_denied.add("giftCards(")  # not even read access: refused as well
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await redeem(stub, merchant_id, reward.reward_id, customer)
    assert precondition(caught.value) == "REDEMPTION_REFUNDED"
    assert await balance(stub, merchant_id, customer) == 300


# ---- REST through Envoy ----------------------------------------------------------------


@pytest.fixture
async def gateway(
    database_url, redis_url, merchant_id, shopify, auth, tmp_path
) -> AsyncIterator[Gateway]:
    settings = points_settings(
        database_url,
        redis_url=redis_url,
        shopify_admin_base_url=shopify.base_url,
        call_targets={"auth": auth.address},
        service_credential=POINTS_CREDENTIAL,
    )
    async with (
        serving(SPEC, settings) as points,
        behind_gateway("points", SERVICE_NAME, points, tmp_path) as gateway,
    ):
        yield gateway


def detail(body: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [d for d in body["details"] if d["@type"].endswith(f"google.rpc.{kind}")]
    return found


async def test_the_catalogue_over_rest(gateway: Gateway, merchant_id, shopify):
    headers = merchant_headers(merchant_id, rewards.PERMISSIONS)
    url = f"{gateway.url}/v1/api"
    customer = "7391000000010"
    created = await http(
        "POST",
        f"{url}/rewards",
        headers=headers,
        json_body={
            "reward": {
                "name": "10 off an order of 50 from the sale",
                "kind": "REWARD_KIND_FIXED_AMOUNT",
                "value": "10.00",
                "points_cost": 100,
                "min_subtotal": "50.00",
                "collection_ids": ["444"],
                "code_expiry_days": 30,
                "customer_limit": {"max_redemptions": 1, "period": "LIMIT_PERIOD_MONTH"},
            },
            "idempotency_key": "rest-reward-1",
        },
    )
    assert created.status == 200, created.body
    reward = created.json()["reward"]
    assert reward["customer_limit"] == {"max_redemptions": 1, "period": "LIMIT_PERIOD_MONTH"}
    earned = await http(
        "POST",
        f"{url}/points/earn",
        headers=headers,
        json_body={"customer_id": customer, "points": 500, "idempotency_key": "rest-earn"},
    )
    assert earned.status == 200, earned.body

    redeem_url = f"{url}/rewards/{reward['reward_id']}/redeem"
    done = await http(
        "POST",
        redeem_url,
        headers=headers,
        json_body={"customer_id": customer, "idempotency_key": "rest-redeem-1"},
    )
    assert done.status == 200, done.body
    body = done.json()
    assert body["discount_code"] in shopify.codes_of(SHOP) and body["expire_time"]
    # The month's one redemption is used: 400 FAILED_PRECONDITION with its reason.
    refused = await http(
        "POST",
        redeem_url,
        headers=headers,
        json_body={"customer_id": customer, "idempotency_key": "rest-redeem-2"},
    )
    assert refused.status == 400, refused.body
    error = refused.json()
    assert error["code"] == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert detail(error, "PreconditionFailure")["violations"][0]["type"] == (
        "REDEMPTION_LIMIT_REACHED"
    )
    listed = await http("GET", f"{url}/rewards?customer_id={customer}", headers=headers)
    assert listed.json()["eligibility"] == [
        {
            "reward_id": reward["reward_id"],
            "redeemable": False,
            "reasons": ["REWARD_INELIGIBILITY_LIMIT_REACHED"],
            "redemptions_left": "0",
            "points_needed": "0",
        }
    ]

    # A bad field is named (BadRequest).
    bad = await http(
        "POST",
        f"{url}/rewards",
        headers=headers,
        json_body={
            "reward": {
                "name": "free mug",
                "kind": "REWARD_KIND_FREE_PRODUCT",
                "points_cost": 100,
                "min_subtotal": "abc",
            },
            "idempotency_key": "rest-bad",
        },
    )
    assert bad.status == 400, bad.body
    fields = {v["field"] for v in detail(bad.json(), "BadRequest")["field_violations"]}
    assert fields == {"reward.min_subtotal", "reward.variant_id"}

    # A gift card: its code in this answer only.
    card = await http(
        "POST",
        f"{url}/rewards",
        headers=headers,
        json_body={
            "reward": {
                "name": "5 gift card",
                "kind": "REWARD_KIND_GIFT_CARD",
                "value": "5.00",
                "points_cost": 200,
            },
            "idempotency_key": "rest-card",
        },
    )
    assert card.status == 200, card.body
    card_url = f"{url}/rewards/{card.json()['reward']['reward_id']}/redeem"
    request = {"customer_id": customer, "idempotency_key": "rest-card-1"}
    issued = await http("POST", card_url, headers=headers, json_body=request)
    assert issued.status == 200, issued.body
    gift = issued.json()["gift_card"]
    assert len(gift["code"]) == 16 and gift["last_characters"] == gift["code"][-4:]
    again = await http("POST", card_url, headers=headers, json_body=request)
    assert again.json()["gift_card"]["code"] == ""  # shown once


async def test_a_monthly_limit_opens_again_next_month(
    database_url, redis_url, merchant_id, shopify, auth
):
    """The period is the UTC calendar month of Points' clock: moved past the month's end, the
    customer may redeem again (the redemption made earlier stays counted in its month)."""
    now = [datetime.now(UTC)]
    spec = dataclasses.replace(SPEC, build=functools.partial(build, clock=lambda: now[0]))
    settings = points_settings(
        database_url,
        redis_url=redis_url,
        shopify_admin_base_url=shopify.base_url,
        call_targets={"auth": auth.address},
        service_credential=POINTS_CREDENTIAL,
    )
    async with serve_for_test(spec, settings, points_pb2_grpc.PointsServiceStub) as (_, stub):
        customer = "7391000000011"
        reward = await create(
            stub,
            merchant_id,
            kind=pb.REWARD_KIND_FIXED_AMOUNT,
            value="5.00",
            points_cost=10,
            customer_limit=pb.RedemptionLimit(
                max_redemptions=1, period=core_pb2.LIMIT_PERIOD_MONTH
            ),
        )
        await earn(stub, merchant_id, customer, 100)
        await redeem(stub, merchant_id, reward.reward_id, customer)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await redeem(stub, merchant_id, reward.reward_id, customer)
        assert precondition(caught.value) == "REDEMPTION_LIMIT_REACHED"
        assert "per month" in (caught.value.details() or "")

        now[0] = LimitPeriod.MONTH.start(now[0]) + timedelta(days=32)  # next month
        listed = await stub.ListRewards(
            pb.ListRewardsRequest(customer_id=customer), metadata=md(merchant_id)
        )
        assert [(e.redeemable, e.redemptions_left) for e in listed.eligibility] == [(True, 1)]
        done = await redeem(stub, merchant_id, reward.reward_id, customer)
        assert done.balance.balance == 80


async def test_a_tier_past_its_grace_gets_no_tier_only_reward_before_the_job(
    database_url, redis_url, merchant_id, shopify, auth
):
    """Gold for the calendar year with 10 days' grace: on Points' clock moved past the year's
    end and the grace, with the tier job not run (the stored tier still Gold), the Gold-only
    reward is refused and listed as tier-only; a day earlier it is not."""
    await _save_tiers(database_url, merchant_id, core_pb2.VIP_TERM_CALENDAR_YEAR, 10)
    now = [datetime.now(UTC)]
    spec = dataclasses.replace(SPEC, build=functools.partial(build, clock=lambda: now[0]))
    settings = points_settings(
        database_url,
        redis_url=redis_url,
        shopify_admin_base_url=shopify.base_url,
        call_targets={"auth": auth.address},
        service_credential=POINTS_CREDENTIAL,
    )
    async with serve_for_test(spec, settings, points_pb2_grpc.PointsServiceStub) as (_, stub):
        customer = "7391000000012"
        gold_only = await create(
            stub, merchant_id, kind=pb.REWARD_KIND_FREE_SHIPPING, points_cost=50, tier_ids=["gold"]
        )
        await earn(stub, merchant_id, customer, 350)
        assert (await redeem(stub, merchant_id, gold_only.reward_id, customer)).balance.balance == (
            300
        )
        year_end = datetime(now[0].year + 1, 1, 1, tzinfo=UTC)
        now[0] = year_end + timedelta(days=9, hours=23)  # within the grace
        await redeem(stub, merchant_id, gold_only.reward_id, customer)
        now[0] = year_end + timedelta(days=10)  # the grace over; nothing earned this year
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await redeem(stub, merchant_id, gold_only.reward_id, customer)
        assert precondition(caught.value) == "TIER_REQUIRED"
        assert await balance(stub, merchant_id, customer) == 250
        listed = await stub.ListRewards(
            pb.ListRewardsRequest(customer_id=customer), metadata=md(merchant_id)
        )
        assert [list(e.reasons) for e in listed.eligibility] == [
            [pb.REWARD_INELIGIBILITY_TIER_REQUIRED]
        ]
