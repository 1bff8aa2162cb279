"""gRPC surface of the Referrals service.

Handlers only: validation, the merchant from the token, the store's calls, proto mapping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from loyalnest.gen.referrals.v1 import referrals_pb2 as pb
from loyalnest.gen.referrals.v1 import referrals_pb2_grpc
from loyalnest.platform import tenancy
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.tenancy import merchant_id_for_shop
from loyalnest.platform.validation import Validator
from loyalnest.services.referrals.discounts import FriendDiscounts
from loyalnest.services.referrals.domain import (
    CODE_RE,
    CUSTOMER_ID_RE,
    DiscountStatus,
    LiveStatusOff,
    Referral,
    ReferralNotFound,
    is_shop_domain,
    normalize_code,
)
from loyalnest.services.referrals.invites import (
    E164_RE,
    EMAIL_RE,
    MAX_EMAIL,
    Channel,
    InviteStore,
)
from loyalnest.services.referrals.shops import ShopDomains
from loyalnest.services.referrals.status_feed import StatusFeed
from loyalnest.services.referrals.store import ReferralStore
from loyalnest.services.referrals.wire import (
    conversion_proto,
    invite_proto,
    progress_proto,
    referral_proto,
    stats_proto,
)

# A REST answer carrying this header becomes a 302 to its value at the gateway
# (loyalnest.gateway.envoy_config, REDIRECT_HEADER).
REDIRECT_HEADER = "x-loyalnest-redirect"
STATS_PERIOD = timedelta(days=30)
CUSTOMER_RULE = "must be the customer's Shopify id (digits)"


def _customer(v: Validator, field: str, value: str) -> None:
    v.check(bool(CUSTOMER_ID_RE.match(value)), field, CUSTOMER_RULE)


def _shop(v: Validator, shop: str, merchant_id: str) -> None:
    if shop:
        v.check(
            is_shop_domain(shop) and merchant_id_for_shop(shop) == merchant_id,
            "shop",
            "must be the myshopify.com domain of the token's merchant",
        )


def _referral_ref(v: Validator, referral_id: str, code: str) -> None:
    """Exactly one of referral_id and code, well formed."""
    if v.check(bool(referral_id) != bool(code), "referral_id", "give referral_id or code"):
        if referral_id:
            v.uuid("referral_id", referral_id)
        else:
            v.check(bool(CODE_RE.match(normalize_code(code))), "code", "is not a referral code")


class ReferralsServicer(referrals_pb2_grpc.ReferralsServiceServicer):
    def __init__(
        self,
        store: ReferralStore,
        shops: ShopDomains,
        discounts: FriendDiscounts,
        feed: StatusFeed | None,
        invites: InviteStore,
    ) -> None:
        self._store = store
        self._invites = invites
        self._shops = shops
        self._discounts = discounts
        # None without Redis: no live status (StreamReferralStatus is FAILED_PRECONDITION).
        self._feed = feed

    async def _status(self, referral: Referral) -> pb.GetReferralStatusResponse:
        conversions = await self._store.conversions(referral.merchant_id, referral.referral_id)
        invites = await self._invites.of_referral(referral.merchant_id, referral.referral_id)
        return pb.GetReferralStatusResponse(
            referral=referral_proto(referral),
            conversions=[conversion_proto(c) for c in conversions],
            invites=[invite_proto(i) for i in invites],
        )

    async def _referral(self, merchant_id: str, referral_id: str, code: str) -> Referral:
        return await self._store.get(
            merchant_id, referral_id=referral_id, code=normalize_code(code) if code else ""
        )

    async def SendInvite(
        self, request: pb.SendInviteRequest, context: Context
    ) -> pb.SendInviteResponse:
        merchant_id = tenancy.merchant_id()
        email, phone = request.friend_email.strip(), request.friend_phone.strip()
        with Validator() as v:
            _customer(v, "referrer_id", request.referrer_id)
            v.idempotency_key("idempotency_key", request.idempotency_key)
            _shop(v, request.shop, merchant_id)
            if request.channel == pb.INVITE_CHANNEL_EMAIL:
                v.check(
                    len(email) <= MAX_EMAIL and bool(EMAIL_RE.match(email)),
                    "friend_email",
                    "must be an email address for channel EMAIL",
                )
                v.check(not phone, "friend_phone", "must be empty for channel EMAIL")
            elif request.channel == pb.INVITE_CHANNEL_SMS:
                v.check(
                    bool(E164_RE.match(phone)),
                    "friend_phone",
                    "must be an E.164 phone number (e.g. +14155550123) for channel SMS",
                )
                v.check(not email, "friend_email", "must be empty for channel SMS")
            else:
                v.check(False, "channel", "must be EMAIL or SMS")
        shop = await self._shops.shop(merchant_id, request.shop.lower())
        # The referral under a key derived from the invite's, so a retry finds the same one.
        referral = await self._store.active_for(
            merchant_id,
            request.referrer_id,
            shop=shop,
            key=IdempotencyKey.internal(
                f"invite:{request.idempotency_key}", request.referrer_id, shop
            ),
        )
        program = await self._store.program(merchant_id)
        channel = Channel.EMAIL if request.channel == pb.INVITE_CHANNEL_EMAIL else Channel.SMS
        invite = await self._invites.queue(
            referral,
            channel,
            email.lower() if channel is Channel.EMAIL else phone,
            per_referrer=program.daily_invites_per_referrer,
            per_merchant=program.daily_invites_per_merchant,
            key=IdempotencyKey.of("SendInvite", request),
        )
        if self._feed is not None:
            await self._feed.announce([referral.referral_id])
        return pb.SendInviteResponse(referral=referral_proto(referral), invite=invite_proto(invite))

    async def CreateReferral(
        self, request: pb.CreateReferralRequest, context: Context
    ) -> pb.CreateReferralResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            _customer(v, "referrer_id", request.referrer_id)
            v.idempotency_key("idempotency_key", request.idempotency_key)
            _shop(v, request.shop, merchant_id)
        shop = await self._shops.shop(merchant_id, request.shop.lower())
        referral = await self._store.active_for(
            merchant_id,
            request.referrer_id,
            shop=shop,
            key=IdempotencyKey.of("CreateReferral", request),
        )
        # The friend's code at Shopify, after the referral is stored (never in its
        # transaction); if Shopify cannot take it now, it stays PENDING and is retried.
        if referral.discount_status is DiscountStatus.PENDING and await self._discounts.ensure(
            referral
        ):
            referral = await self._store.get(merchant_id, referral_id=referral.referral_id)
        return pb.CreateReferralResponse(referral=referral_proto(referral))

    async def GetReferralStatus(
        self, request: pb.GetReferralStatusRequest, context: Context
    ) -> pb.GetReferralStatusResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            _referral_ref(v, request.referral_id, request.code)
        referral = await self._referral(merchant_id, request.referral_id, request.code)
        return await self._status(referral)

    async def StreamReferralStatus(
        self, request: pb.StreamReferralStatusRequest, context: Context
    ) -> AsyncIterator[pb.StreamReferralStatusResponse]:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.uuid("referral_id", request.referral_id)
        referral = await self._store.get(merchant_id, referral_id=request.referral_id)
        if self._feed is None:
            raise LiveStatusOff()
        changes = self._feed.changes(
            referral.referral_id, await self._feed.position(referral.referral_id)
        )
        sent = await self._status(referral)
        yield pb.StreamReferralStatusResponse(
            referral=sent.referral, conversions=sent.conversions, invites=sent.invites
        )
        async for _ in changes:
            referral = await self._store.get(merchant_id, referral_id=request.referral_id)
            now = await self._status(referral)
            if now != sent:
                sent = now
                yield pb.StreamReferralStatusResponse(
                    referral=now.referral, conversions=now.conversions, invites=now.invites
                )

    async def GetReferralProgress(
        self, request: pb.GetReferralProgressRequest, context: Context
    ) -> pb.GetReferralProgressResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            _customer(v, "referrer_id", request.referrer_id)
        return progress_proto(await self._store.progress(merchant_id, request.referrer_id))

    async def ClickReferral(
        self, request: pb.ClickReferralRequest, context: Context
    ) -> pb.ClickReferralResponse:
        code = normalize_code(request.code)
        with Validator() as v:
            v.check(bool(CODE_RE.match(code)), "code", "is not a referral code")
        referral = await self._store.click(code)
        if referral is None:
            raise ReferralNotFound(code)
        # The gateway turns this header of a REST answer into a 302 to it.
        await context.send_initial_metadata(((REDIRECT_HEADER, referral.link),))
        return pb.ClickReferralResponse(location=referral.link)

    async def GetReferralStats(
        self, request: pb.GetReferralStatsRequest, context: Context
    ) -> pb.GetReferralStatsResponse:
        merchant_id = tenancy.merchant_id()
        end = (
            request.end_time.ToDatetime(tzinfo=UTC)
            if request.HasField("end_time")
            else datetime.now(UTC)
        )
        start = (
            request.start_time.ToDatetime(tzinfo=UTC)
            if request.HasField("start_time")
            else end - STATS_PERIOD
        )
        with Validator() as v:
            v.check(start < end, "start_time", "must be before end_time")
        stats = stats_proto(await self._store.stats(merchant_id, start, end), start, end)
        stats.invites_sent, stats.invites_failed = await self._invites.counts(
            merchant_id, start, end
        )
        return stats

    async def CompleteReferral(
        self, request: pb.CompleteReferralRequest, context: Context
    ) -> pb.CompleteReferralResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            _referral_ref(v, request.referral_id, request.code)
            _customer(v, "referee_id", request.referee_id)
            if request.order_id:
                v.identifier("order_id", request.order_id)
            v.idempotency_key("idempotency_key", request.idempotency_key)
        referral = await self._referral(merchant_id, request.referral_id, request.code)
        conversion = await self._store.complete_by_hand(
            merchant_id,
            referral,
            request.referee_id,
            request.order_id,
            key=IdempotencyKey.of("CompleteReferral", request),
        )
        if self._feed is not None:
            await self._feed.announce([referral.referral_id])
        return pb.CompleteReferralResponse(
            referral=referral_proto(referral), conversion=conversion_proto(conversion)
        )
