"""The merchant's shop domain, for referral links: remembered from webhook.received, else
asked of Auth (`ValidateMerchant`, Referrals' own service token, grant `auth:validate`)."""

from __future__ import annotations

import grpc

from loyalnest.gen.auth.v1 import auth_pb2, auth_pb2_grpc
from loyalnest.platform.auth.context import on_own_behalf
from loyalnest.platform.errors import Unavailable
from loyalnest.services.referrals.domain import ShopUnknown
from loyalnest.services.referrals.store import ReferralStore

TIMEOUT_SECONDS = 2.0


class ShopDomains:
    def __init__(self, store: ReferralStore, auth: auth_pb2_grpc.AuthServiceStub | None) -> None:
        # None: no Auth target or service credential: only shops learnt from webhooks.
        self._store = store
        self._auth = auth

    async def shop(self, merchant_id: str, claimed: str = "") -> str:
        """`claimed`: a domain the caller named, already checked to be the merchant's."""
        known = await self._store.shop(merchant_id)
        if known is not None:
            return known
        if claimed:
            await self._store.save_shop(merchant_id, claimed)
            return claimed
        if self._auth is None:
            raise ShopUnknown(merchant_id)
        try:
            # Referrals' own token for no merchant: auth:validate reads any merchant.
            with on_own_behalf(None):
                response = await self._auth.ValidateMerchant(
                    auth_pb2.ValidateMerchantRequest(merchant_id=merchant_id),
                    timeout=TIMEOUT_SECONDS,
                )
        except grpc.aio.AioRpcError as error:
            if error.code() in (
                grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.FAILED_PRECONDITION,
                grpc.StatusCode.INVALID_ARGUMENT,
            ):
                raise ShopUnknown(merchant_id) from error
            raise Unavailable("the merchant's shop could not be looked up; retry") from error
        shop: str = response.merchant.shop_domain
        if not shop:
            raise ShopUnknown(merchant_id)
        await self._store.save_shop(merchant_id, shop)
        return shop
