"""Redeeming a reward: points debited atomically, then a single-use Shopify discount code.

1. The debit is an ordinary ledger posting (`Ledger.post`, the store's no-overdraw redeem)
   under the call's idempotency key, so concurrent redemptions can never overdraw and a
   retry never debits twice. Its transaction id is the redemption id.
2. `reward_redemptions` records the redemption as pending (insert-if-absent by that id).
3. The discount code (derived from the redemption id) is created in the shop; the redemption
   becomes completed with its code.
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

import hashlib
from dataclasses import dataclass

from loyalnest.platform.errors import FailedPrecondition, LoyalNestError, Unavailable
from loyalnest.platform.idempotency import INTERNAL, IdempotencyKey
from loyalnest.platform.observability import get_logger
from loyalnest.platform.shopify_admin import ShopifyUnavailable
from loyalnest.services.points.discounts import (
    DiscountCodes,
    ShopNotConnected,
    shopify_customer_gid,
)
from loyalnest.services.points.domain import (
    Posting,
    PostingResult,
    Redemption,
    RedemptionNotCancellable,
    RedemptionStatus,
    Reward,
    RewardInactive,
    TransactionType,
)
from loyalnest.services.points.ledger import Ledger

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


def refund_key(redemption_id: str) -> IdempotencyKey:
    fingerprint = hashlib.sha256(f"RewardRefund\0{redemption_id}".encode()).hexdigest()
    return IdempotencyKey(
        key=f"refund:reward-redemption:{redemption_id}", fingerprint=fingerprint, namespace=INTERNAL
    )


class RewardRedemptions:
    def __init__(self, ledger: Ledger, codes: DiscountCodes | None) -> None:
        self._ledger = ledger
        self._store = ledger.store
        self._codes = codes

    async def redeem(
        self, merchant_id: str, customer_id: str, reward_id: str, key: IdempotencyKey
    ) -> RedeemedReward:
        reward = await self._store.get_reward(merchant_id, reward_id)
        if not reward.active:
            raise RewardInactive(reward_id)
        codes = self._codes
        if codes is None:
            raise ShopNotConnected(merchant_id)
        shopify_customer_gid(customer_id)  # a code is bound to a Shopify customer
        await codes.check_connected(merchant_id)  # before taking any points
        debit = await self._ledger.post(
            Posting(
                merchant_id,
                customer_id,
                TransactionType.REDEEM,
                -reward.points_cost,
                f"reward:{reward_id}",
            ),
            key,
        )
        redemption = await self._store.record_redemption(
            Redemption(
                merchant_id=merchant_id,
                redemption_id=debit.transaction.transaction_id,
                customer_id=customer_id,
                reward_id=reward_id,
                points=-debit.transaction.points,
                status=RedemptionStatus.PENDING,
                discount_code="",
                failure="",
                created_at=debit.transaction.created_at,
            )
        )
        if redemption.status is RedemptionStatus.PENDING:
            redemption = await self._create_code(codes, redemption, reward)
        if redemption.status is RedemptionStatus.REFUNDED:
            await self._refund(redemption)
            raise RedemptionRefunded(redemption)
        return RedeemedReward(redemption, debit, reward)

    async def _create_code(
        self, codes: DiscountCodes, redemption: Redemption, reward: Reward
    ) -> Redemption:
        merchant_id, redemption_id = redemption.merchant_id, redemption.redemption_id
        customer_id = redemption.customer_id
        try:
            code = await codes.create(merchant_id, redemption_id, customer_id, reward)
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
