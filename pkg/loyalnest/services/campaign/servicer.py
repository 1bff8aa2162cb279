"""gRPC surface of the Campaign service.

Handlers only: validation, the merchant from the token, the store's calls, proto mapping.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from psycopg import AsyncConnection

from loyalnest.gen.campaign.v1 import campaign_pb2 as pb
from loyalnest.gen.campaign.v1 import campaign_pb2_grpc
from loyalnest.platform import pagination, tenancy
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.validation import Validator
from loyalnest.services.campaign.domain import (
    DRAFT,
    SHOPIFY_ID_RE,
    UPDATABLE_FIELDS,
    Campaign,
    WrongState,
    campaign_problems,
    decimal_of,
)
from loyalnest.services.campaign.eligibility import Eligibility, cart_view
from loyalnest.services.campaign.lifecycle import Lifecycle
from loyalnest.services.campaign.store import CampaignStore, Change
from loyalnest.services.campaign.wire import campaign_proto, times_of

_MAX_CART_IDS = 250
# The requests of the moves: a campaign and a key.
_Move = (
    pb.PublishCampaignRequest
    | pb.PauseCampaignRequest
    | pb.ResumeCampaignRequest
    | pb.EndCampaignRequest
)


def _draft(merchant_id: str, campaign: pb.Campaign) -> Campaign:
    start, end = times_of(campaign)
    now = datetime.now(UTC)
    return Campaign(
        campaign_id="",
        merchant_id=merchant_id,
        name=campaign.name,
        kind=campaign.kind,
        code=campaign.code,
        rules=campaign.rules,
        audience=campaign.audience,
        start_at=start,
        end_at=end,
        state=DRAFT,
        shopify_discount_id="",
        created_at=now,
        updated_at=now,
    )


def _validate(v: Validator, campaign: pb.Campaign) -> None:
    start, end = times_of(campaign)
    for field, description in campaign_problems(campaign, start, end):
        v.check(False, field, description)


class CampaignServicer(campaign_pb2_grpc.CampaignServiceServicer):
    def __init__(
        self, store: CampaignStore, lifecycle: Lifecycle, eligibility: Eligibility
    ) -> None:
        self._store = store
        self._lifecycle = lifecycle
        self._eligibility = eligibility

    async def CreateCampaign(
        self, request: pb.CreateCampaignRequest, context: Context
    ) -> pb.CreateCampaignResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            if v.check(request.HasField("campaign"), "campaign", "is required"):
                _validate(v, request.campaign)
            v.idempotency_key("idempotency_key", request.idempotency_key)
        created = await self._store.create(
            merchant_id,
            _draft(merchant_id, request.campaign),
            key=IdempotencyKey.of("CreateCampaign", request),
            publish=None if request.draft else self._lifecycle.publish,
        )
        await self._eligibility.changed(created)
        return pb.CreateCampaignResponse(campaign=campaign_proto(created))

    async def GetCampaign(
        self, request: pb.GetCampaignRequest, context: Context
    ) -> pb.GetCampaignResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.uuid("campaign_id", request.campaign_id)
        campaign = await self._store.get(merchant_id, request.campaign_id)
        return pb.GetCampaignResponse(campaign=campaign_proto(campaign))

    async def ListCampaigns(
        self, request: pb.ListCampaignsRequest, context: Context
    ) -> pb.ListCampaignsResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            if request.product_id:
                v.check(
                    bool(SHOPIFY_ID_RE.fullmatch(request.product_id)),
                    "product_id",
                    "must be a Shopify product id (digits)",
                )
        limit = pagination.page_size(request.page_size)
        scope = f"campaigns:{merchant_id}:{request.state}:{request.product_id}"
        offset = pagination.decode_page_token(request.page_token, scope) or 0
        rows = await self._store.page(
            merchant_id,
            limit=limit + 1,
            offset=offset,
            state=request.state or None,
            product_id=request.product_id or None,
        )
        token = pagination.encode_page_token(scope, offset + limit) if len(rows) > limit else ""
        return pb.ListCampaignsResponse(
            campaigns=[campaign_proto(c) for c in rows[:limit]], next_page_token=token
        )

    async def UpdateCampaign(
        self, request: pb.UpdateCampaignRequest, context: Context
    ) -> pb.UpdateCampaignResponse:
        merchant_id = tenancy.merchant_id()
        paths = set(request.update_mask.paths)
        with Validator() as v:
            if v.check(request.HasField("campaign"), "campaign", "is required"):
                v.uuid("campaign.campaign_id", request.campaign.campaign_id)
            v.update_mask("update_mask", paths, UPDATABLE_FIELDS)
            v.idempotency_key("idempotency_key", request.idempotency_key)

        async def update(conn: AsyncConnection, current: Campaign) -> Campaign:
            if current.state != DRAFT:
                raise WrongState(current, "change it (only drafts change)", "NOT_A_DRAFT")
            merged = campaign_proto(current)
            for path in paths:
                if path in ("start_time", "end_time", "rules", "audience"):
                    merged.ClearField(path)
                    if request.campaign.HasField(path):
                        getattr(merged, path).CopyFrom(getattr(request.campaign, path))
                else:
                    setattr(merged, path, getattr(request.campaign, path))
            with Validator() as check:
                _validate(check, merged)
            start, end = times_of(merged)
            return replace(
                current,
                name=merged.name,
                kind=merged.kind,
                code=merged.code,
                rules=merged.rules,
                audience=merged.audience,
                start_at=start,
                end_at=end,
            )

        updated = await self._store.change(
            merchant_id,
            request.campaign.campaign_id,
            key=IdempotencyKey.of("UpdateCampaign", request),
            change=update,
        )
        return pb.UpdateCampaignResponse(campaign=campaign_proto(updated))

    async def _move(self, method: str, request: _Move, change: Change) -> Campaign:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.uuid("campaign_id", request.campaign_id)
            v.idempotency_key("idempotency_key", request.idempotency_key)
        moved = await self._store.change(
            merchant_id,
            request.campaign_id,
            key=IdempotencyKey.of(method, request),
            change=change,
        )
        await self._eligibility.changed(moved)
        return moved

    async def PublishCampaign(
        self, request: pb.PublishCampaignRequest, context: Context
    ) -> pb.PublishCampaignResponse:
        moved = await self._move("PublishCampaign", request, self._lifecycle.publish)
        return pb.PublishCampaignResponse(campaign=campaign_proto(moved))

    async def PauseCampaign(
        self, request: pb.PauseCampaignRequest, context: Context
    ) -> pb.PauseCampaignResponse:
        moved = await self._move("PauseCampaign", request, self._lifecycle.pause)
        return pb.PauseCampaignResponse(campaign=campaign_proto(moved))

    async def ResumeCampaign(
        self, request: pb.ResumeCampaignRequest, context: Context
    ) -> pb.ResumeCampaignResponse:
        moved = await self._move("ResumeCampaign", request, self._lifecycle.resume)
        return pb.ResumeCampaignResponse(campaign=campaign_proto(moved))

    async def EndCampaign(
        self, request: pb.EndCampaignRequest, context: Context
    ) -> pb.EndCampaignResponse:
        moved = await self._move("EndCampaign", request, self._lifecycle.end)
        return pb.EndCampaignResponse(campaign=campaign_proto(moved))

    async def ApplyCampaign(
        self, request: pb.ApplyCampaignRequest, context: Context
    ) -> pb.ApplyCampaignResponse:
        merchant_id = tenancy.merchant_id()
        cart = request.cart
        with Validator() as v:
            v.identifier("customer_id", request.customer_id)
            if cart.subtotal:
                v.check(
                    decimal_of(cart.subtotal) is not None,
                    "cart.subtotal",
                    "must be an amount with at most 2 decimals",
                )
            v.check(
                len(cart.product_ids) + len(cart.collection_ids) <= _MAX_CART_IDS,
                "cart.product_ids",
                f"at most {_MAX_CART_IDS} product and collection ids",
            )
        found = await self._eligibility.apply(merchant_id, request.customer_id, cart_view(cart))
        return pb.ApplyCampaignResponse(campaigns=found)
