"""What a VIP tier policy decides (tiers.py applies it), and the tier a perk counts now.

A stored tier is as the job or the last evaluation left it; a term (with the merchant's grace
after it) that has ended since is decided again at read time (`live_tier`): a perk (the
earning multiplier, a tier-only rule or reward) counts the tier the ledger gives now, not one
whose time is up and which the job has not lowered yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.services.points.domain import TierState, Transaction, net_totals
from loyalnest.services.points.store.base import LedgerStore, ledger_history

YEAR = timedelta(days=365)


@dataclass(frozen=True)
class TierPolicy:
    tiers: tuple[core_pb2.VipTier, ...]  # lowest threshold first
    metric: int
    term: int
    grace: timedelta = timedelta(0)  # kept this long past the term's end

    @classmethod
    def of(cls, program: core_pb2.ProgramSettings) -> TierPolicy:
        return cls(
            tiers=tuple(sorted(program.vip_tiers, key=lambda t: t.threshold)),
            metric=program.vip_metric or core_pb2.VIP_METRIC_POINTS_EARNED,
            term=program.vip_term or core_pb2.VIP_TERM_LIFETIME,
            grace=timedelta(days=max(program.vip_grace_days, 0)),
        )

    @property
    def enabled(self) -> bool:
        return bool(self.tiers)

    def window_start(self, now: datetime) -> datetime | None:
        if self.term == core_pb2.VIP_TERM_ROLLING_12_MONTHS:
            return now - YEAR
        if self.term == core_pb2.VIP_TERM_CALENDAR_YEAR:
            return now.astimezone(UTC).replace(
                month=1, day=1, hour=0, minute=0, second=0, microsecond=0
            )
        return None

    def term_end(self, now: datetime) -> datetime | None:
        if self.term == core_pb2.VIP_TERM_ROLLING_12_MONTHS:
            return now + YEAR
        if self.term == core_pb2.VIP_TERM_CALENDAR_YEAR:
            start = self.window_start(now)
            assert start is not None
            return start.replace(year=start.year + 1)
        return None

    def qualifying(self, history: Sequence[Transaction], now: datetime) -> int:
        return self.value_of(*net_totals(history, self.window_start(now)))

    def value_of(self, earned: int, redeemed: int) -> int:
        """The metric from the window's totals (domain.net_totals)."""
        value = redeemed if self.metric == core_pb2.VIP_METRIC_POINTS_REDEEMED else earned
        return max(value, 0)

    def rank(self, tier_id: str) -> int:
        """Position of the tier, -1 for none (or a tier the merchant removed)."""
        return next((i for i, t in enumerate(self.tiers) if t.tier_id == tier_id), -1)

    def tier_for(self, value: int) -> int:
        return max((i for i, t in enumerate(self.tiers) if value >= t.threshold), default=-1)

    def out_of_reach(self, earned_ever: int) -> bool:
        """Whether a customer whose ledger's lifetime earned figure is `earned_ever` qualifies
        for no tier. The figure bounds the points-earned metric from above in every term: it
        counts every credit the metric counts (and entry rewards and adjustments, which it
        does not), less the same reversals, and a window only leaves out older credits."""
        return (
            self.metric == core_pb2.VIP_METRIC_POINTS_EARNED
            and bool(self.tiers)
            and earned_ever < self.tiers[0].threshold
        )

    def tag(self, rank: int) -> str:
        return self.tiers[rank].shopify_tag if rank >= 0 else ""


def decide(
    policy: TierPolicy, current: TierState | None, value: int, now: datetime
) -> TierState | None:
    """The customer's next state, or None when nothing changes."""
    have = -1 if current is None else policy.rank(current.tier_id)
    want = policy.tier_for(value)
    term_over = current is not None and current.term_end is not None and now >= current.term_end
    grace_over = (
        current is not None
        and current.term_end is not None
        and now >= current.term_end + policy.grace
    )
    removed = current is not None and bool(current.tier_id) and have < 0
    if want > have or removed or (want < have and grace_over):
        # Up at once; down once the term's end and the grace after it have passed; a tier
        # the merchant removed: at once.
        tier_id = policy.tiers[want].tier_id if want >= 0 else ""
        end = policy.term_end(now) if want >= 0 else None
        version = 0 if current is None else current.version
        return TierState(tier_id, value, end, now, version)
    if current is not None and want == have and want >= 0 and term_over:
        return replace(current, qualifying=value, term_end=policy.term_end(now), changed_at=now)
    return None


def expired(policy: TierPolicy, state: TierState, now: datetime) -> bool:
    """Whether the stored tier's term and the grace after it have ended at `now`."""
    return state.term_end is not None and now >= state.term_end + policy.grace


async def live_tier(
    store: LedgerStore,
    program: core_pb2.ProgramSettings,
    merchant_id: str,
    customer_id: str,
    now: datetime,
) -> str:
    """The customer's tier as a perk counts it at `now` ("": none). The stored one, unless
    its term and grace have ended: then what decide() gives from the ledger now (kept for a
    new term if they still qualify, else lower), without writing it (the job or the next
    evaluation does). A read only: the common case is one row."""
    state = await store.customer_tier(merchant_id, customer_id)
    return await live_tier_of(store, program, merchant_id, customer_id, state, now)


async def live_tier_of(
    store: LedgerStore,
    program: core_pb2.ProgramSettings,
    merchant_id: str,
    customer_id: str,
    state: TierState | None,
    now: datetime,
) -> str:
    """live_tier from a stored state already read (LedgerStore.rule_events_and_tier)."""
    if state is None:
        return ""
    policy = TierPolicy.of(program)
    if not policy.enabled or not expired(policy, state, now):
        return state.tier_id
    value = policy.qualifying(await ledger_history(store, merchant_id, customer_id), now)
    decided = decide(policy, state, value, now)
    return state.tier_id if decided is None else decided.tier_id
