"""A campaign's moves (publish, pause, resume, end) with its Shopify discount kept in step.

Each move is a `Change` the store runs on the locked campaign inside the move's transaction:
the Shopify call comes first, and the new state is saved only when Shopify agreed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from psycopg import AsyncConnection

from loyalnest.services.campaign.domain import (
    ACTIVE,
    DRAFT,
    ENDED,
    LIVE,
    PAUSED,
    SHOPIFY_ID_RE,
    AudienceEmpty,
    Campaign,
    CampaignOver,
    WrongState,
    customer_code,
    derived_code,
    published_state,
)
from loyalnest.services.campaign.shopify import CampaignDiscounts
from loyalnest.services.campaign.store import CampaignStore


class Lifecycle:
    def __init__(self, discounts: CampaignDiscounts, store: CampaignStore) -> None:
        self._discounts = discounts
        self._store = store

    async def segment_moved(
        self, merchant_id: str, customer_id: str, previous: str | None, current: str
    ) -> None:
        """A customer entered or left segments: added to or removed from the customer list
        of every live code campaign whose audience that changes (publishing bound the codes
        to the members of the time)."""
        if not SHOPIFY_ID_RE.fullmatch(customer_id):
            return  # not a Shopify customer: nothing to bind at Shopify
        concerned = []
        for campaign in await self._store.live(merchant_id):
            segments = campaign.segments()
            if campaign.automatic or segments is None:
                continue
            was, now = previous in segments, current in segments
            if was != now:
                concerned.append((campaign, now))
        if not concerned:
            return
        access = await self._discounts.access(merchant_id)
        for campaign, member in concerned:
            if member and campaign.unique_codes:
                code = customer_code(merchant_id, campaign.campaign_id, customer_id)
                await self._discounts.add_codes(access, campaign, [code])
            await self._discounts.set_customer(access, campaign, customer_id, member=member)

    async def publish(self, conn: AsyncConnection, campaign: Campaign) -> Campaign:
        if campaign.state != DRAFT:
            raise WrongState(campaign, "publish it", "NOT_A_DRAFT")
        now = datetime.now(UTC)
        if campaign.end_at is not None and campaign.end_at <= now:
            raise CampaignOver(campaign.campaign_id)
        access = await self._discounts.access(campaign.merchant_id)
        customers: list[str] = []
        segments = campaign.segments()
        if segments is not None:
            # The segment's members now; later entries reach eligibility through rfm.updated.
            members = await CampaignStore.members(conn, campaign.merchant_id, segments)
            customers = [m for m in members if SHOPIFY_ID_RE.fullmatch(m)]
            if not customers:
                raise AudienceEmpty(segments)
        code = ""
        if campaign.unique_codes:
            # One discount, a code per customer: the first made with it, the others added.
            codes = [
                customer_code(campaign.merchant_id, campaign.campaign_id, c) for c in customers
            ]
            code = codes[0]
        elif not campaign.automatic:
            code = campaign.code or derived_code(campaign.merchant_id, campaign.campaign_id)
        coded = replace(campaign, code=code)
        discount_id = await self._discounts.create(access, coded, code, customers)
        published = replace(coded, shopify_discount_id=discount_id)
        if campaign.unique_codes:
            await self._discounts.add_codes(access, published, codes[1:])
        return replace(published, state=published_state(coded, now))

    async def pause(self, conn: AsyncConnection, campaign: Campaign) -> Campaign:
        if campaign.state not in LIVE:
            raise WrongState(campaign, "pause it", "NOT_LIVE")
        access = await self._discounts.access(campaign.merchant_id)
        await self._discounts.set_active(access, campaign, False)
        return replace(campaign, state=PAUSED)

    async def resume(self, conn: AsyncConnection, campaign: Campaign) -> Campaign:
        if campaign.state != PAUSED:
            raise WrongState(campaign, "resume it", "NOT_PAUSED")
        if campaign.end_at is not None and campaign.end_at <= datetime.now(UTC):
            raise CampaignOver(campaign.campaign_id)
        access = await self._discounts.access(campaign.merchant_id)
        await self._discounts.set_active(access, campaign, True)
        # Shopify's activation starts the discount now, whatever its start was.
        return replace(campaign, state=ACTIVE)

    async def end(self, conn: AsyncConnection, campaign: Campaign) -> Campaign:
        if campaign.state == ENDED:
            raise WrongState(campaign, "end it", "ALREADY_ENDED")
        now = datetime.now(UTC)
        if campaign.state in LIVE:  # a paused discount is deactivated already
            access = await self._discounts.access(campaign.merchant_id)
            await self._discounts.set_active(access, campaign, False)
        end_at = now if campaign.end_at is None else min(campaign.end_at, now)
        return replace(campaign, state=ENDED, end_at=end_at)
