"""Redeeming a reward: points debited atomically, then a single-use Shopify discount code.

0. Preconditions: the reward active, offered on the redeeming channel (online store or POS:
   Shopify cannot restrict a code to a channel, so this is the one place it is enforced), its
   kind in the merchant's plan (gift cards: Core's plan feature gift_card_rewards, as Points'
   copy of the program has it), the customer in one of its VIP tiers (tier-only rewards; the
   tier is re-evaluated first when the stored one does not qualify, so an upgrade the events
   have not applied yet counts), in one of its RFM segments (segment-only rewards: the
   segment RFM last published, Points' copy), a Shopify customer, the shop connected.
1. The debit and the pending redemption are one store transaction (`store.redeem`) under the
   call's idempotency key: the no-overdraw debit, and first, under the customer's ledger
   lock, the per-customer limit (`customer_limit`: redemptions pending or completed in the
   UTC period), so concurrent redemptions can neither overdraw nor pass the limit, and a
   retry never debits twice. The refusals of step 0 are raised inside that transaction
   too: a retry with the same key returns the first result even if the reward was
   deactivated or the customer changed tier since. The debit's transaction id is the
   redemption id.
2. (Redemptions made before step 1 wrote both at once get their row on a retry.)
3. The discount code (derived from the redemption id) is created in the shop; the redemption
   becomes completed with its code. A gift card (discounts.GiftCards) instead: looked up by
   the redemption first (an earlier attempt's card whose answer was lost is deactivated and
   the redemption refunded: nobody holds its code), then created; its code is returned by
   this call only, and the redemption keeps the card's id and last characters.
4. If the shop refuses, the redemption becomes refunded and the points are given back by a
   reversal whose idempotency key is derived from the redemption id: at most one refund per
   redemption, however often the flow runs. If the shop does not answer (a timeout, 5xx), the
   code may exist all the same: it is looked up by code first (`codeDiscountNodeByCode`);
   found, the redemption completes; absent, it is refunded; if the lookup gets no answer
   either, the redemption stays pending and the call is UNAVAILABLE (retry with the same key).

A retry with the same key resumes wherever the first call stopped (a crash between any two
steps included): a completed redemption is returned as it was, a pending one goes on at 3, a
refunded one makes sure of its refund and fails again the same way. Finishing is one-way
(pending -> completed | refunded), so a late success cannot revive a refunded redemption.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.platform.errors import FailedPrecondition, LoyalNestError, Unavailable
from loyalnest.platform.idempotency import INTERNAL, IdempotencyKey
from loyalnest.platform.observability import get_logger
from loyalnest.platform.shopify_admin import ShopifyUnavailable
from loyalnest.services.points.discounts import (
    DiscountCodes,
    GiftCards,
    ShopNotConnected,
    shopify_customer_gid,
)
from loyalnest.services.points.domain import (
    GIFT_CARD_FEATURE,
    Channel,
    ChannelUnavailable,
    Eligibility,
    Ineligibility,
    LedgerNotFound,
    PlanFeatureRequired,
    Posting,
    PostingResult,
    Redemption,
    RedemptionGuard,
    RedemptionNotCancellable,
    RedemptionStatus,
    Reward,
    RewardInactive,
    RewardKind,
    SegmentRequired,
    TierRequired,
    TransactionType,
)
from loyalnest.services.points.earning import Clock, ProgramCopies, utc_now
from loyalnest.services.points.ledger import Ledger
from loyalnest.services.points.tier_policy import TierPolicy, expired
from loyalnest.services.points.tiers import VipTiers

log = get_logger(__name__)


class RedemptionUndecided(Unavailable):
    def __init__(self, redemption: Redemption) -> None:
        super().__init__(
            f"Shopify did not answer: whether the discount code of redemption"
            f" {redemption.redemption_id} was created is unknown; retry with the same"
            " idempotency_key",
            retry_after_seconds=5.0,
        )


class RedemptionRefunded(FailedPrecondition):
    def __init__(self, redemption: Redemption) -> None:
        super().__init__(
            f"the discount code could not be created ({redemption.failure}); the"
            f" {redemption.points} points were given back. Retry with a new idempotency_key",
            violation_type="REDEMPTION_REFUNDED",
            subject=f"reward_redemption/{redemption.redemption_id}",
        )


@dataclass(frozen=True)
class RedeemedReward:
    redemption: Redemption
    debit: PostingResult
    reward: Reward
    # A gift card's code: only from the call that created the card (never stored).
    gift_card_code: str = ""


def plan_refusal(
    plan: core_pb2.PlanLimits, kind: RewardKind, what: str
) -> PlanFeatureRequired | None:
    """Why the merchant's plan (Points' copy of Core's program) does not allow a reward of
    `kind`: only gift cards need a feature. A plan that does not say (a copy from before
    plans said, or no plan known yet) allows them, as before features existed."""
    if (
        kind is RewardKind.GIFT_CARD
        and plan.HasField("gift_card_rewards")
        and not plan.gift_card_rewards
    ):
        return PlanFeatureRequired(plan.plan, GIFT_CARD_FEATURE, what)
    return None


def refund_key(redemption_id: str) -> IdempotencyKey:
    fingerprint = hashlib.sha256(f"RewardRefund\0{redemption_id}".encode()).hexdigest()
    return IdempotencyKey(
        key=f"refund:reward-redemption:{redemption_id}", fingerprint=fingerprint, namespace=INTERNAL
    )


class RewardRedemptions:
    def __init__(
        self,
        ledger: Ledger,
        codes: DiscountCodes | None,
        tiers: VipTiers | None = None,
        *,
        cards: GiftCards | None = None,
        programs: ProgramCopies | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._ledger = ledger
        self._programs = programs
        self._store = ledger.store
        self._codes = codes
        self._cards = cards
        self._tiers = tiers
        self._clock = clock

    async def redeem(
        self,
        merchant_id: str,
        customer_id: str,
        reward_id: str,
        key: IdempotencyKey,
        channel: Channel = Channel.ONLINE,
    ) -> RedeemedReward:
        reward = await self._store.get_reward(merchant_id, reward_id)
        codes = self._codes
        if codes is None:
            raise ShopNotConnected(merchant_id)
        shopify_customer_gid(customer_id)  # a code is bound to a Shopify customer
        await codes.check_connected(merchant_id)  # before taking any points
        now = self._clock()
        guard = RedemptionGuard(
            refusal=await self._refusal(merchant_id, customer_id, reward, channel),
            limit_max=reward.limit_max,
            since=reward.limit_period.start(now) if reward.limit_max else None,
            # Checked again under the tier row's lock with the debit: a tier change since the
            # check above (a downgrade by the job) cannot let the redemption through.
            tier_ids=reward.tier_ids,
            tier_grace=TierPolicy.of(await self._program(merchant_id)).grace,
            at=now,
        )
        debit, redemption = await self._ledger.redeem(
            Posting(
                merchant_id,
                customer_id,
                TransactionType.REDEEM,
                -reward.points_cost,
                f"reward:{reward_id}",
            ),
            key,
            reward,
            guard,
        )
        card_code = ""
        if redemption.status is RedemptionStatus.PENDING:
            if reward.kind is RewardKind.GIFT_CARD:
                redemption, card_code = await self._issue_gift_card(redemption, reward)
            else:
                redemption = await self._create_code(codes, redemption, reward)
        if redemption.status is RedemptionStatus.REFUNDED:
            await self._refund(redemption)
            raise RedemptionRefunded(redemption)
        return RedeemedReward(redemption, debit, reward, card_code)

    async def _issue_gift_card(
        self, redemption: Redemption, reward: Reward
    ) -> tuple[Redemption, str]:
        """The redemption's gift card: created, and its code returned (once); or refunded.
        A card an earlier attempt created but whose answer (and code) was lost is
        deactivated and the redemption refunded: nobody holds its code."""
        cards = self._cards
        if cards is None:
            raise ShopNotConnected(redemption.merchant_id)
        merchant_id, redemption_id = redemption.merchant_id, redemption.redemption_id
        try:
            orphan = await cards.orphan(redemption)
            if orphan is not None:
                await cards.deactivate(
                    merchant_id, redemption_id, orphan.gift_card_id, unless_used=False
                )
                failure = (
                    "Shopify's answer was lost; the gift card it made (ending"
                    f" {orphan.last_characters}) was deactivated"
                )
                return await self._store.finish_redemption(
                    merchant_id, redemption_id, status=RedemptionStatus.REFUNDED, failure=failure
                ), ""
        except ShopifyUnavailable as exc:
            raise RedemptionUndecided(redemption) from exc
        except LoyalNestError as exc:
            # Refused (no access to gift cards, a locked shop): no card could be made.
            return await self._store.finish_redemption(
                merchant_id, redemption_id, status=RedemptionStatus.REFUNDED, failure=exc.message
            ), ""
        try:
            card = await cards.create(redemption, reward)
        except ShopifyUnavailable as exc:
            # Created or not is unknown: the next attempt (same key) looks it up first.
            raise RedemptionUndecided(redemption) from exc
        except LoyalNestError as exc:
            log.warning("gift card refused; refunding", redemption_id=redemption_id)
            return await self._store.finish_redemption(
                merchant_id, redemption_id, status=RedemptionStatus.REFUNDED, failure=exc.message
            ), ""
        finished = await self._store.finish_redemption(
            merchant_id,
            redemption_id,
            status=RedemptionStatus.COMPLETED,
            gift_card_id=card.gift_card_id,
            gift_card_last_characters=card.last_characters,
        )
        if finished.gift_card_id != card.gift_card_id:
            # A concurrent attempt with the same key finished first: this card's code goes
            # to nobody, so it is switched off.
            await cards.deactivate(merchant_id, redemption_id, card.gift_card_id, unless_used=False)
            return finished, ""
        return finished, card.code

    async def _program(self, merchant_id: str) -> core_pb2.ProgramSettings:
        if self._programs is None:
            return core_pb2.ProgramSettings()  # no plan known: nothing refused; no tiers
        return await self._programs.get(merchant_id)

    async def _plan(self, merchant_id: str) -> core_pb2.PlanLimits:
        return (await self._program(merchant_id)).plan

    async def _refusal(
        self, merchant_id: str, customer_id: str, reward: Reward, channel: Channel
    ) -> LoyalNestError | None:
        """Why the customer may not redeem `reward` now (raised only by a first call)."""
        if not reward.active:
            return RewardInactive(reward.reward_id)
        if not reward.offered_on(channel):
            return ChannelUnavailable(reward.reward_id, reward.channels, channel)
        refused = plan_refusal(
            await self._plan(merchant_id), reward.kind, f"reward {reward.reward_id!r}"
        )
        if refused is not None:
            return refused
        if reward.eligible_segments:
            segment = await self._store.customer_segment(merchant_id, customer_id)
            if segment not in reward.eligible_segments:
                return SegmentRequired(reward.reward_id, reward.eligible_segments, segment)
        if reward.tier_ids:
            tier_id = await self._tier_of(merchant_id, customer_id, reward.tier_ids)
            if tier_id not in reward.tier_ids:
                return TierRequired(reward.reward_id, reward.tier_ids, tier_id)
        return None

    async def _tier_of(self, merchant_id: str, customer_id: str, wanted: tuple[str, ...]) -> str:
        policy = TierPolicy.of(await self._program(merchant_id))
        now = self._clock()
        state = await self._store.customer_tier(merchant_id, customer_id)
        lapsed = state is not None and expired(policy, state, now)
        if (state is None or state.tier_id not in wanted or lapsed) and self._tiers is not None:
            # Upgrades apply at once, but through Points' own events: one they have not
            # reached yet is applied here (the same compare-and-set as theirs); so is the
            # renewal or downgrade of a tier whose term and grace ended before the job ran.
            # No ledger, no tier (the debit then says there is nothing to spend).
            with contextlib.suppress(LedgerNotFound):
                state = await self._tiers.evaluate(merchant_id, customer_id) or state
        if state is None or expired(policy, state, now):
            return ""  # a lapsed tier counts for nothing
        return state.tier_id

    async def eligibility(
        self,
        merchant_id: str,
        customer_id: str,
        rewards: Sequence[Reward],
        channel: Channel = Channel.ONLINE,
    ) -> list[Eligibility]:
        """Whether the customer can redeem each reward now on `channel` (ListRewards)."""
        try:
            balance = (await self._ledger.balance(merchant_id, customer_id)).balance
        except LedgerNotFound:
            balance = 0
        now = self._clock()
        since = {r.reward_id: r.limit_period.start(now) for r in rewards if r.limit_max}
        counts = await self._store.redemption_counts(merchant_id, customer_id, since)
        plan = await self._plan(merchant_id)
        segment = (
            await self._store.customer_segment(merchant_id, customer_id)
            if any(r.eligible_segments for r in rewards)
            else ""
        )
        tier_id: str | None = None
        answers = []
        for reward in rewards:
            reasons = []
            if not reward.active:
                reasons.append(Ineligibility.INACTIVE)
            if not reward.offered_on(channel):
                reasons.append(Ineligibility.CHANNEL_UNAVAILABLE)
            if plan_refusal(plan, reward.kind, "") is not None:
                reasons.append(Ineligibility.PLAN_FEATURE_REQUIRED)
            if reward.eligible_segments and segment not in reward.eligible_segments:
                reasons.append(Ineligibility.SEGMENT_REQUIRED)
            if reward.tier_ids:
                if tier_id is None:
                    # Evaluated afresh (nothing is wanted), so every reward of the page sees
                    # the tier an upgrade not yet applied by the events gives.
                    tier_id = await self._tier_of(merchant_id, customer_id, ())
                if tier_id not in reward.tier_ids:
                    reasons.append(Ineligibility.TIER_REQUIRED)
            left = -1
            if reward.limit_max:
                left = max(reward.limit_max - counts.get(reward.reward_id, 0), 0)
                if left == 0:
                    reasons.append(Ineligibility.LIMIT_REACHED)
            needed = max(reward.points_cost - balance, 0)
            if needed:
                reasons.append(Ineligibility.INSUFFICIENT_POINTS)
            answers.append(Eligibility(reward.reward_id, tuple(reasons), left, needed))
        return answers

    async def _create_code(
        self, codes: DiscountCodes, redemption: Redemption, reward: Reward
    ) -> Redemption:
        merchant_id, redemption_id = redemption.merchant_id, redemption.redemption_id
        customer_id = redemption.customer_id
        try:
            code = await codes.create(redemption, reward)
        except ShopifyUnavailable as exc:
            # No answer is not a refusal: the code may have been created all the same.
            try:
                found = await codes.created(merchant_id, redemption_id, customer_id)
            except LoyalNestError:
                raise RedemptionUndecided(redemption) from exc
            if found is None:
                log.warning("discount code not created; refunding", redemption_id=redemption_id)
                return await self._store.finish_redemption(
                    merchant_id,
                    redemption_id,
                    status=RedemptionStatus.REFUNDED,
                    failure=exc.message,
                )
            code = found
        except LoyalNestError as exc:
            log.warning(
                "discount code creation failed; refunding",
                redemption_id=redemption_id,
                error=exc.message,
            )
            return await self._store.finish_redemption(
                merchant_id, redemption_id, status=RedemptionStatus.REFUNDED, failure=exc.message
            )
        finished = await self._store.finish_redemption(
            merchant_id, redemption_id, status=RedemptionStatus.COMPLETED, discount_code=code
        )
        if finished.status is not RedemptionStatus.COMPLETED:
            # A concurrent attempt with the same key failed and refunded first: the code
            # exists in the shop but was not handed out; it stays unused.
            log.warning("discount code created for a refunded redemption", code=code)
        return finished

    async def _refund(self, redemption: Redemption) -> PostingResult:
        return await self._ledger.post(
            Posting(
                redemption.merchant_id,
                redemption.customer_id,
                TransactionType.REVERSAL,
                redemption.points,
                f"refund:reward-redemption:{redemption.redemption_id}",
            ),
            refund_key(redemption.redemption_id),
        )

    async def cancel(
        self, merchant_id: str, redemption_id: str
    ) -> tuple[Redemption, PostingResult]:
        """Cancels an unused redemption: its code deactivated at Shopify, then the redemption
        CANCELLED, then its points given back under the redemption's refund key: once,
        however often it is called, a crash between any two steps included (a CANCELLED one
        only makes sure of its refund). A Shopify timeout leaves the redemption completed
        (UNAVAILABLE: call again)."""
        redemption = await self._store.get_redemption(merchant_id, redemption_id)
        if redemption.status is RedemptionStatus.PENDING:
            raise RedemptionNotCancellable(redemption_id, "it is still being redeemed; retry")
        if redemption.status is RedemptionStatus.REFUNDED:
            raise RedemptionNotCancellable(redemption_id, "its points were given back already")
        if redemption.status is RedemptionStatus.COMPLETED:
            if redemption.gift_card_id:
                if self._cards is None:
                    raise ShopNotConnected(merchant_id)
                await self._cards.deactivate(
                    merchant_id, redemption_id, redemption.gift_card_id, unless_used=True
                )
            else:
                if self._codes is None:
                    raise ShopNotConnected(merchant_id)
                await self._codes.deactivate(merchant_id, redemption_id, redemption.customer_id)
            redemption = await self._store.finish_redemption(
                merchant_id,
                redemption_id,
                status=RedemptionStatus.CANCELLED,
                failure="cancelled",
                from_status=RedemptionStatus.COMPLETED,
            )
        refund = await self._refund(redemption)
        return redemption, refund
