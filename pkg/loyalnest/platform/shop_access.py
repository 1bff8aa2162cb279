"""A merchant's Shopify Admin API token, from Auth (`GetShopAccessToken`, internal).

A service asks with its own service token bound to the merchant (grant `auth:shop-token`),
never with the caller's: a user's token is refused for that RPC whatever it carries, so no
customer's or staff member's call can read a shop's credentials through another service.
Nothing is cached: the calls are rare, and each hand-out is audited by Auth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc

from loyalnest.gen.auth.v1 import auth_pb2, auth_pb2_grpc
from loyalnest.platform.auth.context import on_own_behalf
from loyalnest.platform.errors import FailedPrecondition, Internal, Unavailable
from loyalnest.platform.observability import get_logger

log = get_logger(__name__)

TIMEOUT_SECONDS = 5.0
# What Auth answers for a merchant whose shop cannot be used now: unknown (NOT_FOUND; or
# INVALID_ARGUMENT, a merchant id that is no installed shop's, e.g. of a development token),
# uninstalled, or a refresh token Shopify refused (FAILED_PRECONDITION).
_NOT_CONNECTED = frozenset(
    {
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INVALID_ARGUMENT,
    }
)


@dataclass(frozen=True)
class ShopAccess:
    shop: str  # e.g. example.myshopify.com
    access_token: str


class ShopNotConnected(FailedPrecondition):
    """The merchant has no usable shop token; `consequence` says what the caller cannot do."""

    def __init__(self, merchant_id: str, consequence: str) -> None:
        super().__init__(
            f"the merchant's Shopify shop is not connected: {consequence}",
            violation_type="SHOP_NOT_CONNECTED",
            subject=f"merchant/{merchant_id}",
        )


class ShopTokens:
    def __init__(
        self,
        auth: auth_pb2_grpc.AuthServiceStub | None,
        *,
        component: str,
        not_connected: Callable[[str], ShopNotConnected],
    ) -> None:
        # None: no Auth target or service credential configured: no shop is connected.
        self._auth = auth
        self._component = component
        self._not_connected = not_connected

    async def shop_access(self, merchant_id: str) -> ShopAccess:
        if self._auth is None:
            raise self._not_connected(merchant_id)
        try:
            with on_own_behalf(merchant_id):
                response = await self._auth.GetShopAccessToken(
                    auth_pb2.GetShopAccessTokenRequest(merchant_id=merchant_id),
                    timeout=TIMEOUT_SECONDS,
                )
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code in _NOT_CONNECTED:
                log.info(
                    "no shop token for the merchant",
                    merchant_id=merchant_id,
                    code=code.name,
                    details=error.details(),
                )
                raise self._not_connected(merchant_id) from error
            if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
                # This service's identity or grant is wrong: a deployment error, not the caller's.
                log.error("auth refused a shop token request", component=self._component)
                raise Internal(
                    f"{self._component} may not read shop credentials (service identity)"
                ) from error
            raise Unavailable("the Auth service did not hand out the shop's token") from error
        return ShopAccess(response.shop, response.access_token)
