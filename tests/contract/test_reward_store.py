"""The rewards catalog and redemption records of every LedgerStore implementation."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from loyalnest.platform.errors import NotFound
from loyalnest.platform.idempotency import IdempotencyKey, IdempotencyKeyReused
from loyalnest.platform.personal_data import CustomerRef
from loyalnest.services.points.domain import (
    Channel,
    LimitPeriod,
    Posting,
    Redemption,
    RedemptionGuard,
    RedemptionLimitReached,
    RedemptionLimitUnsupported,
    RedemptionStatus,
    Reward,
    RewardInactive,
    RewardKind,
    RewardNotFound,
    TierRequired,
    TierState,
    TransactionType,
)
from loyalnest.services.points.store.base import LedgerStore
from loyalnest.services.points.store.mongo import MongoLedgerStore
from loyalnest.services.points.store.postgres import PostgresLedgerStore


def new_reward(merchant_id: str, name: str = "5 off", points_cost: int = 100) -> Reward:
    now = datetime.now(UTC).replace(microsecond=0)
    return Reward(
        merchant_id=merchant_id,
        reward_id=str(uuid.uuid4()),
        name=name,
        kind=RewardKind.FIXED_AMOUNT,
        value="5.00",
        points_cost=points_cost,
        active=True,
        created_at=now,
        updated_at=now,
    )


async def test_create_get_and_retry(store: LedgerStore, merchant_id: str) -> None:
    reward = new_reward(merchant_id)
    created = await store.create_reward(reward, "fp-1")
    assert created == reward
    assert await store.get_reward(merchant_id, reward.reward_id) == reward
    # A retry of the same create returns the stored reward; other parameters are refused.
    assert await store.create_reward(reward, "fp-1") == reward
    with pytest.raises(IdempotencyKeyReused):
        await store.create_reward(reward, "fp-2")


async def test_rewards_are_per_merchant(store: LedgerStore, merchant_id: str) -> None:
    reward = await store.create_reward(new_reward(merchant_id), "fp")
    with pytest.raises(RewardNotFound):
        await store.get_reward("another-merchant", reward.reward_id)
    assert await store.list_rewards("another-merchant", active_only=False, limit=10, offset=0) == []
    with pytest.raises(RewardNotFound):
        await store.update_reward("another-merchant", reward.reward_id, {"active": False})
    assert (await store.get_reward(merchant_id, reward.reward_id)).active


async def test_update_sets_only_the_given_fields(store: LedgerStore, merchant_id: str) -> None:
    reward = await store.create_reward(new_reward(merchant_id), "fp")
    updated = await store.update_reward(
        merchant_id,
        reward.reward_id,
        {"active": False, "points_cost": 250, "kind": RewardKind.PERCENTAGE, "value": "10"},
    )
    assert (updated.active, updated.points_cost, updated.kind, updated.value) == (
        False,
        250,
        RewardKind.PERCENTAGE,
        "10",
    )
    assert (updated.name, updated.created_at) == (reward.name, reward.created_at)
    assert updated.updated_at >= reward.updated_at
    assert await store.get_reward(merchant_id, reward.reward_id) == updated
    with pytest.raises(RewardNotFound):
        await store.update_reward(merchant_id, str(uuid.uuid4()), {"active": True})


async def test_list_pages_oldest_first_and_filters_inactive(
    store: LedgerStore, merchant_id: str
) -> None:
    rewards = []
    for i in range(5):
        reward = new_reward(merchant_id, f"r{i}")
        reward = Reward(**{**reward.__dict__, "created_at": reward.created_at.replace(second=i)})
        rewards.append(await store.create_reward(reward, f"fp{i}"))
    await store.update_reward(merchant_id, rewards[1].reward_id, {"active": False})

    first = await store.list_rewards(merchant_id, active_only=False, limit=3, offset=0)
    rest = await store.list_rewards(merchant_id, active_only=False, limit=3, offset=3)
    assert [r.name for r in first + rest] == ["r0", "r1", "r2", "r3", "r4"]
    active = await store.list_rewards(merchant_id, active_only=True, limit=10, offset=0)
    assert [r.name for r in active] == ["r0", "r2", "r3", "r4"]
    assert await store.list_rewards(merchant_id, active_only=False, limit=0, offset=0) == []


async def test_redemption_is_recorded_once_and_finished_once(
    store: LedgerStore, merchant_id: str
) -> None:
    reward = await store.create_reward(new_reward(merchant_id), "fp")
    redemption = Redemption(
        merchant_id=merchant_id,
        redemption_id=str(uuid.uuid4()),
        customer_id="c-1",
        reward_id=reward.reward_id,
        points=100,
        status=RedemptionStatus.PENDING,
        discount_code="",
        failure="",
        created_at=datetime.now(UTC).replace(microsecond=0),
    )
    assert await store.record_redemption(redemption) == redemption
    assert await store.record_redemption(redemption) == redemption

    done = await store.finish_redemption(
        merchant_id,
        redemption.redemption_id,
        status=RedemptionStatus.COMPLETED,
        discount_code="LN-ABC",
    )
    assert (done.status, done.discount_code) == (RedemptionStatus.COMPLETED, "LN-ABC")
    # Finished is final: a late refund (or a second completion) changes nothing.
    late = await store.finish_redemption(
        merchant_id, redemption.redemption_id, status=RedemptionStatus.REFUNDED, failure="x"
    )
    assert late == done
    assert await store.record_redemption(redemption) == done
    with pytest.raises(NotFound):
        await store.finish_redemption(
            "another-merchant", redemption.redemption_id, status=RedemptionStatus.REFUNDED
        )

    # A cancellation moves a completed redemption only, keeping its code; once.
    assert await store.get_redemption(merchant_id, redemption.redemption_id) == done
    cancelled = await store.finish_redemption(
        merchant_id,
        redemption.redemption_id,
        status=RedemptionStatus.CANCELLED,
        failure="cancelled",
        from_status=RedemptionStatus.COMPLETED,
    )
    assert (cancelled.status, cancelled.discount_code) == (RedemptionStatus.CANCELLED, "LN-ABC")
    again = await store.finish_redemption(
        merchant_id,
        redemption.redemption_id,
        status=RedemptionStatus.REFUNDED,
        from_status=RedemptionStatus.COMPLETED,
    )
    assert again == cancelled
    with pytest.raises(NotFound):
        await store.get_redemption("another-merchant", redemption.redemption_id)


# ---- conditions, limits and the redemption written with its debit (issue 21) -------------


async def test_conditions_are_stored_and_updated(store: LedgerStore, merchant_id: str) -> None:
    reward = dataclasses.replace(
        new_reward(merchant_id),
        min_subtotal="50.00",
        collection_ids=("gid://shopify/Collection/4",),
        code_expiry_days=30,
        limit_max=2,
        limit_period=LimitPeriod.MONTH,
        tier_ids=("gold", "vip"),
        channels=(Channel.POS,),
    )
    assert await store.create_reward(reward, "fp") == reward
    assert await store.get_reward(merchant_id, reward.reward_id) == reward
    updated = await store.update_reward(
        merchant_id,
        reward.reward_id,
        {"collection_ids": (), "product_ids": ("gid://shopify/Product/1",), "limit_max": 0},
    )
    assert (updated.product_ids, updated.collection_ids, updated.limit_max) == (
        ("gid://shopify/Product/1",),
        (),
        0,
    )
    assert updated.tier_ids == ("gold", "vip")
    assert updated.channels == (Channel.POS,)
    both = await store.update_reward(
        merchant_id, reward.reward_id, {"channels": (Channel.ONLINE, Channel.POS)}
    )
    assert both.channels == (Channel.ONLINE, Channel.POS)
    assert await store.get_reward(merchant_id, reward.reward_id) == both


def _debit(merchant_id: str, customer: str, reward: Reward) -> Posting:
    return Posting(
        merchant_id, customer, TransactionType.REDEEM, -reward.points_cost, f"reward:{reward}"
    )


async def test_redeem_writes_the_debit_and_the_redemption_once(
    store: LedgerStore, merchant_id: str
) -> None:
    reward = await store.create_reward(
        dataclasses.replace(new_reward(merchant_id, points_cost=30), code_expiry_days=3), "fp"
    )
    await store.post(
        Posting(merchant_id, "c-1", TransactionType.EARN, 100, "earn"),
        IdempotencyKey.internal("earn-c-1"),
    )
    key = IdempotencyKey.internal("redeem-1", reward.reward_id)
    debit, redemption = await store.redeem(
        _debit(merchant_id, "c-1", reward), key, reward, RedemptionGuard()
    )
    assert redemption.redemption_id == debit.transaction.transaction_id
    assert redemption.status is RedemptionStatus.PENDING
    assert redemption.expires_at is not None
    assert redemption.expires_at - redemption.created_at == timedelta(days=3)
    # A retry replays, whatever the guard says now.
    again, same = await store.redeem(
        _debit(merchant_id, "c-1", reward),
        key,
        reward,
        RedemptionGuard(refusal=RewardInactive(reward.reward_id)),
    )
    assert (again.transaction, same) == (debit.transaction, redemption) and again.replayed
    assert (await store.get_balance(merchant_id, "c-1")).balance == 70
    # A refusal leaves nothing behind, and the key free.
    other = IdempotencyKey.internal("redeem-2", reward.reward_id)
    with pytest.raises(RewardInactive):
        await store.redeem(
            _debit(merchant_id, "c-1", reward),
            other,
            reward,
            RedemptionGuard(refusal=RewardInactive(reward.reward_id)),
        )
    assert (await store.get_balance(merchant_id, "c-1")).balance == 70
    await store.redeem(_debit(merchant_id, "c-1", reward), other, reward, RedemptionGuard())
    assert (await store.get_balance(merchant_id, "c-1")).balance == 40


async def test_the_limit_counts_under_the_ledger_lock(
    store: LedgerStore, merchant_id: str, frequent_thread_switches: None
) -> None:
    reward = await store.create_reward(
        dataclasses.replace(new_reward(merchant_id, points_cost=1), limit_max=3), "fp"
    )
    await store.post(
        Posting(merchant_id, "c-2", TransactionType.EARN, 100, "earn"),
        IdempotencyKey.internal("earn-c-2"),
    )
    since = datetime.now(UTC) - timedelta(hours=1)
    guard = RedemptionGuard(limit_max=3, since=since)

    async def attempt(i: int) -> object:
        try:
            return await store.redeem(
                _debit(merchant_id, "c-2", reward),
                IdempotencyKey.internal(f"limit-{i}", reward.reward_id),
                reward,
                guard,
            )
        except (RedemptionLimitReached, RedemptionLimitUnsupported) as refused:
            return refused

    results = await asyncio.gather(*(attempt(i) for i in range(12)))
    if isinstance(store, MongoLedgerStore) and not await store.uses_transactions():
        # A standalone MongoDB cannot count and debit at once: refused, nothing taken.
        assert all(isinstance(r, RedemptionLimitUnsupported) for r in results)
        assert (await store.get_balance(merchant_id, "c-2")).balance == 100
        return
    assert sum(isinstance(r, tuple) for r in results) == 3
    assert sum(isinstance(r, RedemptionLimitReached) for r in results) == 9
    assert (await store.get_balance(merchant_id, "c-2")).balance == 97
    counts = await store.redemption_counts(merchant_id, "c-2", {reward.reward_id: since})
    assert counts == {reward.reward_id: 3}
    later = {reward.reward_id: datetime.now(UTC) + timedelta(seconds=5)}
    assert await store.redemption_counts(merchant_id, "c-2", later) == {reward.reward_id: 0}


async def test_a_gift_card_redemption_keeps_the_card_not_its_code(
    store: LedgerStore, merchant_id: str
) -> None:
    reward = await store.create_reward(
        dataclasses.replace(new_reward(merchant_id, points_cost=5), kind=RewardKind.GIFT_CARD),
        "fp",
    )
    await store.post(
        Posting(merchant_id, "c-3", TransactionType.EARN, 5, "earn"),
        IdempotencyKey.internal("earn-c-3"),
    )
    _, pending = await store.redeem(
        _debit(merchant_id, "c-3", reward),
        IdempotencyKey.internal("card", reward.reward_id),
        reward,
        RedemptionGuard(),
    )
    assert pending.expires_at is None
    done = await store.finish_redemption(
        merchant_id,
        pending.redemption_id,
        status=RedemptionStatus.COMPLETED,
        gift_card_id="gid://shopify/GiftCard/7",
        gift_card_last_characters="a1b2",
    )
    assert (done.status, done.gift_card_id, done.gift_card_last_characters) == (
        RedemptionStatus.COMPLETED,
        "gid://shopify/GiftCard/7",
        "a1b2",
    )
    # A later move keeps them (a cancellation names no card).
    cancelled = await store.finish_redemption(
        merchant_id,
        pending.redemption_id,
        status=RedemptionStatus.CANCELLED,
        from_status=RedemptionStatus.COMPLETED,
    )
    assert cancelled.gift_card_id == "gid://shopify/GiftCard/7"
    assert await store.get_redemption(merchant_id, pending.redemption_id) == cancelled


# ---- RFM segments (rfm.updated; segment-only rewards) ------------------------------------


async def test_the_newest_segment_wins_and_goes_with_the_customer(
    store: LedgerStore, merchant_id: str
) -> None:
    at = datetime(2026, 12, 6, 12, tzinfo=UTC)
    assert await store.customer_segment(merchant_id, "c-seg") == ""
    assert await store.save_customer_segment(merchant_id, "c-seg", "high_value", at)
    assert not await store.save_customer_segment(merchant_id, "c-seg", "high_value", at)
    assert not await store.save_customer_segment(
        merchant_id, "c-seg", "new", at - timedelta(hours=1)
    )  # older, arriving late
    assert await store.customer_segment(merchant_id, "c-seg") == "high_value"
    assert await store.save_customer_segment(merchant_id, "c-seg", "", at + timedelta(hours=1))
    assert await store.customer_segment(merchant_id, "c-seg") == ""
    assert await store.customer_segment("another-merchant", "c-seg") == ""
    assert await store.save_customer_segment(merchant_id, "c-seg", "at_risk", at + timedelta(1))

    exported = await store.export_customer(merchant_id, CustomerRef("c-seg"))
    assert exported.data["segment"]["segment"] == "at_risk"
    await store.erase_customer(merchant_id, CustomerRef("c-seg"))
    assert await store.customer_segment(merchant_id, "c-seg") == ""
    assert "segment" not in (await store.export_customer(merchant_id, CustomerRef("c-seg"))).data
    assert await store.save_customer_segment(merchant_id, "c-2", "new", at)
    await store.erase_merchant(merchant_id)
    assert await store.customer_segment(merchant_id, "c-2") == ""


async def test_a_tier_only_redemption_checks_the_stored_tier_with_the_debit(
    store: LedgerStore, merchant_id: str
) -> None:
    """The tier is read in the debit's transaction (RedemptionGuard.tier_ids), whatever a
    check before it said: a customer downgraded since is refused and keeps their points; a
    tier whose term and grace have ended (at the guard's time) counts for nothing."""
    reward = await store.create_reward(
        dataclasses.replace(new_reward(merchant_id, points_cost=10), tier_ids=("gold",)), "fp"
    )
    await store.post(
        Posting(merchant_id, "c-3", TransactionType.EARN, 100, "earn"),
        IdempotencyKey.internal("earn-c-3"),
    )
    now = datetime.now(UTC).replace(microsecond=0)
    term_end = now + timedelta(days=10)
    assert await store.save_tier(
        merchant_id, "c-3", None, TierState("silver", 100, term_end, now), None
    )
    guard = RedemptionGuard(tier_ids=("gold",), tier_grace=timedelta(days=5), at=now)
    key = IdempotencyKey.internal("tier-1", reward.reward_id)
    with pytest.raises(TierRequired):
        await store.redeem(_debit(merchant_id, "c-3", reward), key, reward, guard)
    assert (await store.get_balance(merchant_id, "c-3")).balance == 100

    silver = await store.customer_tier(merchant_id, "c-3")
    assert silver is not None
    gold = TierState("gold", 300, term_end, now)
    assert await store.save_tier(merchant_id, "c-3", silver, gold, None)
    # Past the term and its grace: refused; the same key is still free.
    lapsed = dataclasses.replace(guard, at=term_end + timedelta(days=5))
    with pytest.raises(TierRequired):
        await store.redeem(_debit(merchant_id, "c-3", reward), key, reward, lapsed)
    # Within the grace: redeemed.
    within = dataclasses.replace(guard, at=term_end + timedelta(days=4))
    await store.redeem(_debit(merchant_id, "c-3", reward), key, reward, within)
    assert (await store.get_balance(merchant_id, "c-3")).balance == 90


async def test_a_downgrade_in_flight_holds_the_redemption_back(
    postgres_store: PostgresLedgerStore, frequent_thread_switches: None
) -> None:
    """The lock that serialises them: a tier change is an UPDATE of the customer's tier row
    (save_tier's compare-and-set); the redemption reads that row FOR SHARE after its debit.
    A redemption racing an uncommitted downgrade waits for it, then sees Silver: refused."""
    store, merchant_id = postgres_store, f"m-{uuid.uuid4().hex[:8]}"
    reward = await store.create_reward(
        dataclasses.replace(new_reward(merchant_id, points_cost=10), tier_ids=("gold",)), "fp"
    )
    await store.post(
        Posting(merchant_id, "c-4", TransactionType.EARN, 100, "earn"),
        IdempotencyKey.internal("earn-c-4"),
    )
    now = datetime.now(UTC)
    assert await store.save_tier(merchant_id, "c-4", None, TierState("gold", 300, None, now), None)
    guard = RedemptionGuard(tier_ids=("gold",), at=now)  # the check before: Gold
    async with store._pool.connection() as conn, conn.transaction():
        # The job's downgrade, caught between its write and its commit.
        await conn.execute(
            "UPDATE customer_tiers SET tier_id = 'silver', version = version + 1"
            " WHERE merchant_id = %s AND customer_id = 'c-4'",
            (merchant_id,),
        )
        redemption = asyncio.create_task(
            store.redeem(
                _debit(merchant_id, "c-4", reward),
                IdempotencyKey.internal("tier-race", reward.reward_id),
                reward,
                guard,
            )
        )
        await asyncio.sleep(0.5)
        assert not redemption.done(), "the redemption passed a downgrade in flight"
    with pytest.raises(TierRequired):
        await redemption
    assert (await store.get_balance(merchant_id, "c-4")).balance == 100
