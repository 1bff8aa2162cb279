"""VIP tiers on every LedgerStore, on a moved clock: upgrade at once, no downgrade before the
end of the term, downgrade at it, idempotent reruns, compare-and-set against a concurrent
writer, progress to the next tier. Figures worked out in the comments."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.gen.events.v1 import points_pb2 as points_events
from loyalnest.platform.events.envelope import ConsumedEvent, new_event
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.program_settings import default_program
from loyalnest.services.points.domain import LedgerNotFound, Posting, TierState, TransactionType
from loyalnest.services.points.earning import ProgramCopies
from loyalnest.services.points.ledger import Ledger
from loyalnest.services.points.rules import RuleEvent
from loyalnest.services.points.store.base import LedgerStore
from loyalnest.services.points.tier_policy import live_tier
from loyalnest.services.points.tiers import VipTiers
from tests.consumed_events import consumed


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def tiered(term: int) -> core_pb2.ProgramSettings:
    settings = default_program()
    settings.version = 1
    settings.vip_metric = core_pb2.VIP_METRIC_POINTS_EARNED
    settings.vip_term = term  # type: ignore[assignment]
    settings.vip_tiers.extend(
        [
            core_pb2.VipTier(
                tier_id="silver", name="Silver", threshold=100, shopify_tag="VIP Silver"
            ),
            core_pb2.VipTier(tier_id="gold", name="Gold", threshold=300, shopify_tag="VIP Gold"),
        ]
    )
    return settings


async def post(ledger: Ledger, merchant: str, kind: TransactionType, points: int) -> None:
    posting = Posting(merchant, "c-1", kind, points, str(kind))
    await ledger.post(posting, IdempotencyKey.internal(str(uuid.uuid4())))


async def test_upgrade_at_once_downgrade_at_the_end_of_the_year(store: LedgerStore) -> None:
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    ledger = Ledger(store, None)
    programs = ProgramCopies(ledger, cache_seconds=0)
    assert await programs.save(merchant, tiered(core_pb2.VIP_TERM_CALENDAR_YEAR))
    clock = Clock()
    tiers = VipTiers(ledger, programs, clock=clock)
    year_end = datetime(clock.now.year + 1, 1, 1, tzinfo=UTC)

    await post(ledger, merchant, TransactionType.EARN, 150)
    silver = await tiers.evaluate(merchant, "c-1")  # 150 >= 100
    assert silver is not None and (silver.tier_id, silver.qualifying) == ("silver", 150)
    assert silver.term_end == year_end
    await post(ledger, merchant, TransactionType.EARN, 200)
    await post(ledger, merchant, TransactionType.REDEEM, -200)  # spending keeps what was earned
    gold = await tiers.evaluate(merchant, "c-1")  # 350 >= 300: up at once
    assert gold is not None and (gold.tier_id, gold.qualifying) == ("gold", 350)
    # An order taken back: 350 - 100 = 250, below gold; kept until the year ends.
    await post(ledger, merchant, TransactionType.REVERSAL, -100)
    assert await tiers.evaluate(merchant, "c-1") is None
    progress = await tiers.progress(merchant, "c-1")
    assert progress is not None
    assert (progress.state and progress.state.tier_id, progress.qualifying) == ("gold", 250)
    assert (progress.next_tier_id, progress.to_next) == ("", 0)
    assert await tiers.run() == 0  # the job: nothing due

    clock.now = year_end  # a new year: nothing earned in it yet -> no tier
    assert await tiers.run() == 1
    assert await tiers.run() == 0  # idempotent
    state = await store.customer_tier(merchant, "c-1")
    assert state is not None and (state.tier_id, state.qualifying, state.term_end) == ("", 0, None)
    progress = await tiers.progress(merchant, "c-1")
    assert progress is not None and (progress.next_tier_id, progress.to_next) == ("silver", 100)


async def test_rolling_term_renews_a_tier_still_earned(store: LedgerStore) -> None:
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    ledger = Ledger(store, None)
    programs = ProgramCopies(ledger, cache_seconds=0)
    assert await programs.save(merchant, tiered(core_pb2.VIP_TERM_LIFETIME))
    clock = Clock()
    tiers = VipTiers(ledger, programs, clock=clock)
    await post(ledger, merchant, TransactionType.EARN, 120)
    state = await tiers.evaluate(merchant, "c-1")
    assert state is not None and (state.tier_id, state.term_end) == ("silver", None)
    clock.now += timedelta(days=3650)  # lifetime: never lost
    assert await tiers.run() == 0


async def test_a_saved_program_changes_the_tiers_this_process_derived_from_the_last(
    store: LedgerStore,
) -> None:
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    ledger = Ledger(store, None)
    programs = ProgramCopies(ledger, cache_seconds=600)  # remembered: the policy too
    assert await programs.save(merchant, tiered(core_pb2.VIP_TERM_LIFETIME))
    tiers = VipTiers(ledger, programs)
    await post(ledger, merchant, TransactionType.EARN, 120)
    assert await tiers.evaluate(merchant, "c-1") is not None  # silver
    progress = await tiers.progress(merchant, "c-1")
    assert progress is not None and (progress.next_tier_id, progress.to_next) == ("gold", 180)
    again = await tiers.progress(merchant, "c-1")
    assert again is not None and (again.next_tier_id, again.to_next) == ("gold", 180)

    higher = tiered(core_pb2.VIP_TERM_LIFETIME)
    higher.version = 2
    higher.vip_tiers[1].threshold = 500
    assert await programs.save(merchant, higher)
    progress = await tiers.progress(merchant, "c-1")
    assert progress is not None and (progress.next_tier_id, progress.to_next) == ("gold", 380)


async def test_a_stale_writer_changes_nothing(store: LedgerStore) -> None:
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    first = TierState("silver", 100, None, now)
    assert await store.save_tier(merchant, "c-9", None, first, None)
    assert not await store.save_tier(merchant, "c-9", None, first, None)  # exists already
    stored = await store.customer_tier(merchant, "c-9")
    assert stored is not None
    gold = TierState("gold", 300, None, now, stored.version)
    assert await store.save_tier(merchant, "c-9", stored, gold, None)
    assert not await store.save_tier(merchant, "c-9", stored, gold, None)  # stale version
    after = await store.customer_tier(merchant, "c-9")
    assert after is not None and (after.tier_id, after.version) == ("gold", stored.version + 1)
    assert await store.ledger_customers(merchant, "", 10) == []


async def test_the_job_reads_what_the_ledger_says_and_keeps_its_cursor(
    store: LedgerStore,
) -> None:
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    ledger = Ledger(store, None)
    # c-1: earned 150 + 50 entry reward (not counted), redeemed 80, 30 of it given back,
    # 20 taken back by a refund: earned 130, redeemed 50. c-2: nothing but an adjustment.
    for customer, kind, points, reason in [
        ("c-1", TransactionType.EARN, 150, "order:1"),
        ("c-1", TransactionType.EARN, 50, "tier:silver"),
        ("c-1", TransactionType.REDEEM, -80, "reward"),
        ("c-1", TransactionType.REVERSAL, 30, "reward:cancel"),
        ("c-1", TransactionType.REVERSAL, -20, "order:1:refund"),
        ("c-2", TransactionType.ADJUST, 5, "goodwill"),
    ]:
        posting = Posting(merchant, customer, kind, points, reason)
        await ledger.post(posting, IdempotencyKey.internal(str(uuid.uuid4())))
    state = TierState("silver", 130, None, datetime.now(UTC))
    assert await store.save_tier(merchant, "c-1", None, state, None)

    page = await store.tier_inputs(merchant, "", 10, None)
    assert [(i.customer_id, i.earned, i.redeemed) for i in page] == [
        ("c-1", 130, 50),
        ("c-2", 0, 0),
    ]
    assert page[0].state is not None and page[0].state.tier_id == "silver"
    assert page[1].state is None
    assert [i.customer_id for i in await store.tier_inputs(merchant, "c-1", 10, None)] == ["c-2"]
    # A window starting after everything: nothing counts.
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert [(i.earned, i.redeemed) for i in await store.tier_inputs(merchant, "", 1, later)] == [
        (0, 0)
    ]

    # One customer's figures (a ledger event's evaluation): the same sums, in one read.
    one = await store.customer_tier_input(merchant, "c-1", None)
    assert (one.customer_id, one.earned, one.redeemed) == ("c-1", 130, 50)
    assert one.state is not None and one.state.tier_id == "silver"
    other = await store.customer_tier_input(merchant, "c-2", later)
    assert (other.earned, other.redeemed, other.state) == (0, 0, None)
    with pytest.raises(LedgerNotFound):
        await store.customer_tier_input(merchant, "c-nobody", None)

    assert await store.tier_job_cursor(merchant) is None
    await store.save_tier_job_cursor(merchant, "c-1")
    await store.save_tier_job_cursor(merchant, "c-2")
    assert await store.tier_job_cursor(merchant) == "c-2"
    await store.save_tier_job_cursor(merchant, None)
    assert await store.tier_job_cursor(merchant) is None


async def test_an_orders_rule_history_and_tier_in_one_read(store: LedgerStore) -> None:
    """rule_events_and_tier: what rule_events and customer_tier give, read together."""
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(microsecond=0)
    events = [
        RuleEvent("punch", "o-1", 0, Decimal("20"), now - timedelta(days=40)),
        RuleEvent("punch", "o-2", 50, Decimal("30.5"), now - timedelta(days=2)),
        RuleEvent("goal", "o-1", 0, Decimal("20"), now - timedelta(days=40)),
        RuleEvent("goal", "o-2", 0, Decimal("30.5"), now - timedelta(days=2)),
        RuleEvent("other", "o-2", 5, Decimal("0"), now - timedelta(days=1)),
    ]
    await store.record_rule_events(merchant, "c-1", events)
    since = {"punch": now - timedelta(days=365), "goal": now - timedelta(days=30)}
    expected = await store.rule_events(merchant, "c-1", since)
    assert [e.occurrence for e in expected["punch"]] == ["o-1", "o-2"]
    assert [e.occurrence for e in expected["goal"]] == ["o-2"]

    assert await store.rule_events_and_tier(merchant, "c-1", since) == (expected, None)
    assert await store.rule_events_and_tier(merchant, "c-1", {}) == ({}, None)
    state = TierState("gold", 300, None, now)
    assert await store.save_tier(merchant, "c-1", None, state, None)
    stored = await store.customer_tier(merchant, "c-1")
    assert stored is not None
    assert await store.rule_events_and_tier(merchant, "c-1", since) == (expected, stored)
    assert await store.rule_events_and_tier(merchant, "c-1", {}) == ({}, stored)
    # Another customer: no events, no tier.
    assert await store.rule_events_and_tier(merchant, "c-2", since) == (
        {"punch": [], "goal": []},
        None,
    )


async def test_a_credit_below_every_threshold_is_not_evaluated(store: LedgerStore) -> None:
    """points.earned whose lifetime figure is below the lowest threshold cannot raise the
    tier: not evaluated (no read). Shown with figures the ledger contradicts (150 earned):
    the event's 99 changes nothing, its 150 upgrades."""
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    ledger = Ledger(store, None)
    programs = ProgramCopies(ledger, cache_seconds=0)
    assert await programs.save(merchant, tiered(core_pb2.VIP_TERM_LIFETIME))
    tiers = VipTiers(ledger, programs)
    await post(ledger, merchant, TransactionType.EARN, 150)

    def earned(lifetime: int) -> ConsumedEvent:
        payload = points_events.PointsEarned(
            customer_id="c-1", points=1, lifetime_earned_after=lifetime
        )
        return consumed(merchant, payload)

    assert await tiers.on_ledger_event(earned(99))
    assert await store.customer_tier(merchant, "c-1") is None
    assert await tiers.on_ledger_event(earned(150))
    state = await store.customer_tier(merchant, "c-1")
    assert state is not None and (state.tier_id, state.qualifying) == ("silver", 150)
    # A redemption is evaluated whatever its figures (it may renew or lower a tier).
    redeemed = points_events.PointsRedeemed(customer_id="c-1", points=1)
    assert await tiers.on_ledger_event(consumed(merchant, redeemed))
    # Under the points-redeemed metric the earned figure bounds nothing: evaluated (c-2
    # redeemed 120, silver, though the event says 0 earned).
    spender = tiered(core_pb2.VIP_TERM_LIFETIME)
    spender.version = 2
    spender.vip_metric = core_pb2.VIP_METRIC_POINTS_REDEEMED
    assert await programs.save(merchant, spender)
    for kind, points in ((TransactionType.EARN, 150), (TransactionType.REDEEM, -120)):
        posting = Posting(merchant, "c-2", kind, points, str(kind))
        await ledger.post(posting, IdempotencyKey.internal(str(uuid.uuid4())))
    payload = points_events.PointsEarned(customer_id="c-2", points=1, lifetime_earned_after=0)
    assert await tiers.on_ledger_event(consumed(merchant, payload))
    spent = await store.customer_tier(merchant, "c-2")
    assert spent is not None and (spent.tier_id, spent.qualifying) == ("silver", 120)


def tier_changed(merchant: str, previous: str, tier_id: str) -> ConsumedEvent:
    payload = points_events.TierChanged(
        customer_id="c-1", previous_tier_id=previous, tier_id=tier_id
    )
    event = new_event(merchant, payload)
    return ConsumedEvent(
        envelope=event.envelope,
        spec=event.spec,
        payload=payload,
        consumer="points",
        topic=event.spec.topic.name,
        partition=0,
        offset=0,
    )


async def test_an_entry_reward_is_credited_once_however_delivered(store: LedgerStore) -> None:
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    ledger = Ledger(store, None)
    programs = ProgramCopies(ledger, cache_seconds=0)
    settings = tiered(core_pb2.VIP_TERM_CALENDAR_YEAR)
    settings.vip_tiers[1].entry_reward_points = 75
    assert await programs.save(merchant, settings)
    tiers = VipTiers(ledger, programs)

    up = tier_changed(merchant, "silver", "gold")
    for event in (up, up, tier_changed(merchant, "", "gold")):  # redelivered; re-entered
        assert await tiers.on_tier_changed(event)
    # Down, and into Silver (no entry reward): nothing.
    assert await tiers.on_tier_changed(tier_changed(merchant, "gold", "silver"))
    assert await tiers.on_tier_changed(tier_changed(merchant, "", "silver"))
    history = await store.list_transactions(merchant, "c-1", limit=10, before_sequence=None)
    assert [(t.points, t.reason, t.rule_id) for t in history] == [(75, "tier:gold", "vip:gold")]


async def test_a_tier_past_its_term_and_grace_counts_for_no_perk_before_the_job(
    store: LedgerStore,
) -> None:
    """live_tier, what the earning multiplier and tier-only rules and rewards read: the
    stored Gold until the year's end plus 30 days' grace; after it, before the job has run,
    what the ledger gives (nothing earned in the new year: no tier), the stored row untouched;
    a customer who still qualifies on a rolling term keeps the tier."""
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    ledger = Ledger(store, None)
    programs = ProgramCopies(ledger, cache_seconds=0)
    program = tiered(core_pb2.VIP_TERM_CALENDAR_YEAR)
    program.vip_grace_days = 30
    assert await programs.save(merchant, program)
    clock = Clock()
    tiers = VipTiers(ledger, programs, clock=clock)
    await post(ledger, merchant, TransactionType.EARN, 350)
    gold = await tiers.evaluate(merchant, "c-1")
    assert gold is not None and gold.tier_id == "gold" and gold.term_end is not None

    async def live(at: datetime) -> str:
        return await live_tier(store, await programs.get(merchant), merchant, "c-1", at)

    assert await live(clock.now) == "gold"
    assert await live(gold.term_end + timedelta(days=29)) == "gold"  # within the grace
    assert await live(gold.term_end + timedelta(days=30)) == ""  # lapsed: no perk
    stored = await store.customer_tier(merchant, "c-1")  # a read: the job writes
    assert stored is not None and (stored.tier_id, stored.term_end) == ("gold", gold.term_end)

    # Rolling 12 months, still earned at the term's end: renewed, so it still counts.
    rolling = tiered(core_pb2.VIP_TERM_ROLLING_12_MONTHS)
    rolling.version = 2
    assert await programs.save(merchant, rolling)
    renewed_at = clock.now + timedelta(days=2)
    state = TierState("gold", 350, clock.now + timedelta(days=1), clock.now)
    assert await store.save_tier(merchant, "c-1", stored, state, None)
    assert await live(renewed_at) == "gold"
