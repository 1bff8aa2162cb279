"""The periodic job that keeps Shopify's discounts and the campaigns' states in step.

Every `campaign_reconcile_interval_seconds` each process walks the live campaigns (scheduled,
active, paused) and, per campaign under its row lock (SKIP LOCKED: a change in flight wins):
- moves it by the clock: SCHEDULED whose start came is ACTIVE, one whose end passed ENDED
  (Shopify starts and expires the discount itself);
- asks Shopify for the discount's status, and where it drifted (a paused campaign's discount
  active again, e.g. switched on in Shopify's admin; an active one expired) puts Shopify back
  in line with the campaign, counted in `loyalnest_campaign_drift_total`;
- ends a campaign whose discount was deleted at Shopify (nothing left to keep in step).
Each move publishes campaign.state_changed and refreshes the eligibility cache.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

from prometheus_client import Counter
from psycopg import AsyncConnection

from loyalnest.platform.errors import LoyalNestError
from loyalnest.platform.observability import get_logger
from loyalnest.platform.shop_access import ShopAccess
from loyalnest.services.campaign.domain import (
    ENDED,
    LIVE,
    PAUSED,
    Campaign,
    state_name,
    time_state,
)
from loyalnest.services.campaign.eligibility import Eligibility
from loyalnest.services.campaign.shopify import CampaignDiscounts
from loyalnest.services.campaign.store import CampaignStore, Change

log = get_logger(__name__)
ACTOR = "service:campaign:reconcile"
DRIFT = Counter(
    "loyalnest_campaign_drift_total",
    "Shopify discounts found out of step with their campaign and put back, by what was found"
    " (active_while_paused, inactive_while_live, missing).",
    ["found"],
)
_SHOPIFY_LIVE = frozenset({"ACTIVE", "SCHEDULED"})


class Reconciler:
    def __init__(
        self,
        store: CampaignStore,
        discounts: CampaignDiscounts,
        eligibility: Eligibility,
        *,
        interval_seconds: float,
    ) -> None:
        self._store = store
        self._discounts = discounts
        self._eligibility = eligibility
        self._interval = interval_seconds

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.once()
            except Exception:
                log.exception("campaign reconciliation failed")

    async def once(self) -> None:
        accesses: dict[str, ShopAccess | None] = {}
        for campaign in await self._store.live():
            merchant_id = campaign.merchant_id
            if merchant_id not in accesses:
                try:
                    accesses[merchant_id] = await self._discounts.access(merchant_id)
                except LoyalNestError as error:  # not connected, Auth unavailable
                    log.info("campaigns not reconciled", merchant_id=merchant_id, error=str(error))
                    accesses[merchant_id] = None
            access = accesses[merchant_id]
            if access is None:
                continue
            try:
                saved = await self._store.reconcile(
                    merchant_id, campaign.campaign_id, self._fixer(access), ACTOR
                )
            except LoyalNestError as error:  # Shopify refused or did not answer: next round
                log.warning(
                    "campaign not reconciled", campaign_id=campaign.campaign_id, error=str(error)
                )
                continue
            if saved is not None and saved != campaign:
                await self._eligibility.changed(saved)

    def _fixer(self, access: ShopAccess) -> Change:
        async def fix(conn: AsyncConnection, campaign: Campaign) -> Campaign:
            if campaign.state not in LIVE and campaign.state != PAUSED:
                return campaign  # moved since the walk began
            now = datetime.now(UTC)
            status = await self._discounts.status(access, campaign)
            if status is None:
                DRIFT.labels("missing").inc()
                log.warning(
                    "campaign's Shopify discount is gone; ending it",
                    campaign_id=campaign.campaign_id,
                )
                return replace(campaign, state=ENDED, end_at=campaign.end_at or now)
            by_clock = time_state(campaign, now) if campaign.state in LIVE else campaign.state
            if by_clock == ENDED:
                return replace(campaign, state=ENDED)
            should_be_live = by_clock in LIVE
            if should_be_live != (status in _SHOPIFY_LIVE):
                DRIFT.labels(
                    "inactive_while_live" if should_be_live else "active_while_paused"
                ).inc()
                log.warning(
                    "campaign's Shopify discount drifted; putting it back",
                    campaign_id=campaign.campaign_id,
                    state=state_name(by_clock),
                    shopify_status=status,
                )
                await self._discounts.set_active(access, campaign, should_be_live)
            return replace(campaign, state=by_clock)

        return fix
