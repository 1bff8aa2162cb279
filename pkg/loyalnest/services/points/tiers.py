"""VIP tiers: the merchant's `vip_tiers`, counted on the ledger, kept per customer.

A customer's qualifying points are the program's metric (points earned, or points redeemed,
reversals netted) within the term: the whole ledger (lifetime), the last 365 days, or the
calendar year (UTC). The tier is the highest whose threshold they reach.

    upgrade     at once: Points evaluates the customer after each of its own points.earned /
                points.redeemed / points.reversed events (its consumer), and the job;
    downgrade   only once the term the tier was reached (or renewed) in has ended and the
                merchant's grace (`vip_grace_days`) after it has passed: the job
                (`loyalnest points tiers`, or the chart's schedule) finds it, idempotently;
    renewal     a customer qualifying at the term's end (or again within the grace) keeps
                the tier for a new term from then.

Perks: the tier's earning multiplier (rules.py, an award "vip:<tier_id>" on the order) and its
entry reward: `entry_reward_points` credited when tier.changed reports an upgrade into the tier,
once per (tier, customer) ever (the ledger's idempotency key `tier-entry:<tier>:<customer>`,
never purged): a customer who drops out and comes back, in the same term or a later one, gets
no second entry reward. Points' own consumer of tier.changed credits it, so the outbox's
at-least-once delivery makes a crash between the tier's change and the credit harmless. Entry
rewards (reason "tier:<tier_id>") do not count towards a tier: a reward cannot cascade into
the next tier.

Every change is a compare-and-set on the stored state (`version`) with its `tier.changed` event
in the same transaction, so concurrent evaluations change a customer once, and a rerun of the
job changes nothing. `tier.changed` carries the Shopify tags to add and remove; Points' own
consumer of it pushes them (`ShopifyTags`: `tagsAdd` / `tagsRemove`, idempotent at Shopify).
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import Counter

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.gen.events.v1 import points_pb2 as events_pb2
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.observability import get_logger
from loyalnest.platform.shop_access import ShopTokens
from loyalnest.platform.shopify_admin import ShopifyAdminClient
from loyalnest.services.points.domain import (
    TIER_ENTRY_REASON_PREFIX,
    Posting,
    TierState,
    TransactionType,
    VipProgress,
)
from loyalnest.services.points.earning import Clock, ProgramCopies, utc_now
from loyalnest.services.points.events import tier_changed_event
from loyalnest.services.points.ledger import Ledger
from loyalnest.services.points.store.base import ledger_history
from loyalnest.services.points.tier_policy import TierPolicy, decide

log = get_logger(__name__)

CHANGES = Counter("loyalnest_points_tier_changes_total", "VIP tier changes.", ["direction"])
RESUMED = Counter(
    "loyalnest_points_tier_job_resumed_total", "Tier job runs resumed after an unfinished one."
)
SKIPPED = Counter(
    "loyalnest_points_tier_evaluations_skipped_total",
    "Ledger events whose figures show they cannot raise the customer's tier: not evaluated.",
)
ENTRY_REWARDS = Counter("loyalnest_points_tier_entry_rewards_total", "Tier entry rewards credited.")
# Customers per read of the tier job (and per stored cursor: a crash redoes at most this many).
JOB_PAGE = 2000
ENTRY_REASON_PREFIX = TIER_ENTRY_REASON_PREFIX
ENTRY_RULE_PREFIX = "vip:"


class VipTiers:
    def __init__(self, ledger: Ledger, programs: ProgramCopies, *, clock: Clock = utc_now) -> None:
        self._ledger = ledger
        self._store = ledger.store
        self._programs = programs
        self._clock = clock

    async def evaluate(
        self, merchant_id: str, customer_id: str, policy: TierPolicy | None = None
    ) -> TierState | None:
        """Applies what the customer's ledger says now; the new state if it changed."""
        if policy is None:
            policy = await self._programs.derived(merchant_id, TierPolicy.of)
        if not policy.enabled:
            return None
        now = self._clock()
        # One read: the window's totals summed by the store and the stored state (the whole
        # ledger read into Python and the tier row apart were most of a tiered order's cost).
        found = await self._store.customer_tier_input(
            merchant_id, customer_id, policy.window_start(now)
        )
        value = policy.value_of(found.earned, found.redeemed)
        return await self._apply(merchant_id, customer_id, policy, found.state, value, now)

    async def _apply(
        self,
        merchant_id: str,
        customer_id: str,
        policy: TierPolicy,
        current: TierState | None,
        value: int,
        now: datetime,
    ) -> TierState | None:
        """decide() applied: the new state saved with its tier.changed (compare-and-set)."""
        new = decide(policy, current, value, now)
        if new is None:
            return None
        before = -1 if current is None else policy.rank(current.tier_id)
        after = policy.rank(new.tier_id)
        event = None
        if current is None or current.tier_id != new.tier_id:
            added, removed = policy.tag(after), policy.tag(before)
            if current is not None and before < 0 and current.tier_id:
                removed = ""  # the removed tier's tag is unknown now
            event = tier_changed_event(
                customer_id,
                "" if current is None else current.tier_id,
                new,
                [added] if added and added != removed else [],
                [removed] if removed and removed != added else [],
            )
        if not await self._store.save_tier(merchant_id, customer_id, current, new, event):
            return None  # another evaluation changed it first: it saw at least as much
        if event is not None:
            CHANGES.labels("up" if after > before else "down").inc()
        return new

    async def progress(self, merchant_id: str, customer_id: str) -> VipProgress | None:
        policy = await self._programs.derived(merchant_id, TierPolicy.of)
        if not policy.enabled:
            return None
        history = await ledger_history(self._store, merchant_id, customer_id)
        value = policy.qualifying(history, self._clock())
        state = await self._store.customer_tier(merchant_id, customer_id)
        rank = -1 if state is None else policy.rank(state.tier_id)
        following = policy.tiers[rank + 1] if rank + 1 < len(policy.tiers) else None
        return VipProgress(
            state=state,
            tier_name=policy.tiers[rank].name if rank >= 0 else "",
            qualifying=value,
            next_tier_id=following.tier_id if following else "",
            to_next=max(following.threshold - value, 0) if following else 0,
        )

    async def run(self) -> int:
        """The recalculation job: every customer of every merchant with tiers; how many
        changed. Idempotent: a change is a compare-and-set, so a rerun changes nothing twice.
        Resumable: after each page the merchant's cursor is stored (tier_job_progress), and a
        run that finds one (the last crashed) starts after it; a finished run drops it. A
        customer of the page a crash interrupted is decided again on resume, and one changed
        before the crash is then found in its new state: changed once.

        Set-based: a page of JOB_PAGE customers is one read (LedgerStore.tier_inputs: the
        window's totals and the stored state); only a customer whose tier changes costs a
        write."""
        changed = 0
        now = self._clock()
        for merchant_id, raw in await self._store.program_copies():
            policy = TierPolicy.of(core_pb2.ProgramSettings.FromString(raw))
            if not policy.enabled:
                continue
            after = await self._store.tier_job_cursor(merchant_id)
            # "" is a cursor too: an erasure rewrote one naming the merchant's first customer.
            if after is not None:
                RESUMED.inc()
                log.info("vip tiers: resuming", merchant_id=merchant_id)
            after = after or ""
            since = policy.window_start(now)
            while True:
                page = await self._store.tier_inputs(merchant_id, after, JOB_PAGE, since)
                for item in page:
                    value = policy.value_of(item.earned, item.redeemed)
                    if decide(policy, item.state, value, now) is None:
                        continue  # most customers: nothing to write
                    new = await self._apply(
                        merchant_id, item.customer_id, policy, item.state, value, now
                    )
                    changed += new is not None
                if len(page) < JOB_PAGE:
                    break
                after = page[-1].customer_id
                await self._store.save_tier_job_cursor(merchant_id, after)
            await self._store.save_tier_job_cursor(merchant_id, None)
        log.info("vip tiers pass", changed=changed)
        return changed

    async def on_tier_changed(self, event: ConsumedEvent) -> bool:
        """The entry reward of a tier the customer moved up into (tier.changed, Points' own):
        once per (tier, customer), ever, however often the event is delivered."""
        changed = event.payload_as(events_pb2.TierChanged)
        policy = await self._programs.derived(event.merchant_id, TierPolicy.of)
        rank = policy.rank(changed.tier_id)
        if rank < 0 or rank <= policy.rank(changed.previous_tier_id):
            return True  # out of the tiers, a downgrade, or a tier since removed
        points = policy.tiers[rank].entry_reward_points
        if points <= 0:
            return True
        tier_id, customer_id = changed.tier_id, changed.customer_id
        posting = Posting(
            event.merchant_id,
            customer_id,
            TransactionType.EARN,
            points,
            ENTRY_REASON_PREFIX + tier_id,
            rule_id=ENTRY_RULE_PREFIX + tier_id,
        )
        # The amount is left out of the fingerprint: a redelivery after the merchant changed
        # the reward replays the first credit instead of failing.
        key = IdempotencyKey.internal(f"tier-entry:{tier_id}:{customer_id}", customer_id)
        result = await self._ledger.post(posting, key)
        if not result.replayed:
            ENTRY_REWARDS.inc()
        return True

    async def on_ledger_event(self, event: ConsumedEvent) -> bool:
        """Points' own points.earned / redeemed / reversed: upgrades at once."""
        payload: events_pb2.PointsEarned | events_pb2.PointsRedeemed | events_pb2.PointsReversed
        if event.event_type == "points.earned":
            payload = event.payload_as(events_pb2.PointsEarned)
        elif event.event_type == "points.redeemed":
            payload = event.payload_as(events_pb2.PointsRedeemed)
        else:
            payload = event.payload_as(events_pb2.PointsReversed)
        policy = await self._programs.derived(event.merchant_id, TierPolicy.of)
        if isinstance(payload, events_pb2.PointsEarned) and policy.out_of_reach(
            payload.lifetime_earned_after
        ):
            # A credit that leaves the customer below every threshold cannot move them up:
            # no read (most orders of most customers). A due downgrade of a tier they hold
            # (a threshold raised since, a tier removed) is the job's, as for anyone who
            # earns nothing, and live_tier already stops its perks at read time.
            SKIPPED.inc()
            return True
        await self.evaluate(event.merchant_id, payload.customer_id, policy)
        return True


TAGS_ADD = """mutation tagsAdd($id: ID!, $tags: [String!]!) {
  tagsAdd(id: $id, tags: $tags) { node { id } userErrors { field message } }
}"""
TAGS_REMOVE = """mutation tagsRemove($id: ID!, $tags: [String!]!) {
  tagsRemove(id: $id, tags: $tags) { node { id } userErrors { field message } }
}"""


class ShopifyTags:
    """Pushes tier.changed's tags to the customer at Shopify (Admin GraphQL `tagsAdd` /
    `tagsRemove`, idempotent there: a redelivered event sets what is set already)."""

    def __init__(self, admin: ShopifyAdminClient, tokens: ShopTokens) -> None:
        self._admin = admin
        self._tokens = tokens

    async def on_tier_changed(self, event: ConsumedEvent) -> bool:
        changed = event.payload_as(events_pb2.TierChanged)
        if not (changed.tags_added or changed.tags_removed):
            return True
        if not (changed.customer_id.isascii() and changed.customer_id.isdigit()):
            return True  # not a Shopify customer: nothing to tag
        access = await self._tokens.shop_access(event.merchant_id)
        gid = f"gid://shopify/Customer/{changed.customer_id}"
        for mutation, tags in ((TAGS_REMOVE, changed.tags_removed), (TAGS_ADD, changed.tags_added)):
            if not tags:
                continue
            name = "tagsAdd" if mutation is TAGS_ADD else "tagsRemove"
            data = await self._admin.graphql(
                access.shop, access.access_token, mutation, {"id": gid, "tags": list(tags)}
            )
            errors = (data.get(name) or {}).get("userErrors") or []
            if errors:
                # The customer is gone or the tag refused: retrying cannot help.
                log.warning("Shopify refused tags", mutation=name, errors=str(errors)[:200])
        return True
