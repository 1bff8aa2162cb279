"""Crediting referrers: the rewards a completed conversion or a milestone made due are
credited through Points' `EarnPoints`, with Referrals' own service token for the merchant
(grant `points:write`) and the reward's key as Points' idempotency key, so a retry (after a
lost answer, a crash, another replica's pass) never credits twice. A loop credits what is
due; a reward Points refuses stays due, with its error, and is tried again next pass."""

from __future__ import annotations

import asyncio

import grpc
from prometheus_client import Counter

from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.platform.auth.context import acting_for
from loyalnest.platform.observability import get_logger
from loyalnest.services.referrals.store import ReferralStore

log = get_logger(__name__)

CREDITS = Counter(
    "loyalnest_referrals_rewards_total",
    "Referral rewards sent to Points, by outcome (credited, failed).",
    ["outcome"],
)
BATCH = 100
TIMEOUT_SECONDS = 5.0


class RewardCredits:
    def __init__(
        self, store: ReferralStore, points: points_pb2_grpc.PointsServiceStub | None
    ) -> None:
        # None: no Points target or no service credential: rewards stay due (logged).
        self._store = store
        self._points = points

    async def credit_due(self) -> int:
        """Credits up to BATCH due rewards; how many were due."""
        due = await self._store.rewards_due(BATCH)
        if due and self._points is None:
            log.warning("referral rewards are due but Points cannot be called", due=len(due))
            return len(due)
        for reward in due:
            assert self._points is not None
            try:
                with acting_for(reward.merchant_id):
                    await self._points.EarnPoints(
                        points_pb2.EarnPointsRequest(
                            customer_id=reward.referrer_id,
                            points=reward.points,
                            reason=reward.reason,
                            idempotency_key=reward.key,
                        ),
                        timeout=TIMEOUT_SECONDS,
                    )
            except grpc.aio.AioRpcError as error:
                CREDITS.labels("failed").inc()
                log.warning(
                    "crediting a referral reward failed; retried next pass",
                    merchant_id=reward.merchant_id,
                    reward=reward.key,
                    code=error.code().name,
                )
                await self._store.credit_failed(reward, f"{error.code().name}: {error.details()}")
                continue
            CREDITS.labels("credited").inc()
            await self._store.credited(reward)
        return len(due)

    async def run(self, interval_seconds: float) -> None:
        while True:
            try:
                full = await self.credit_due() >= BATCH and self._points is not None
            except Exception:
                log.exception("crediting referral rewards failed; retrying next pass")
                full = False
            if not full:
                await asyncio.sleep(interval_seconds)


async def expiry_sweep(store: ReferralStore, interval_seconds: float) -> None:
    """Codes past their expiry become EXPIRED (also checked when a code is used)."""
    while True:
        try:
            expired = await store.expire_due()
            if expired:
                log.info("referral codes expired", count=expired)
        except Exception:
            log.exception("the referral expiry sweep failed; retrying next pass")
        await asyncio.sleep(interval_seconds)
