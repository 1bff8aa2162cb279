"""Shops' Shopify access tokens for LoyalNest's own services (`GetShopAccessToken`).

Auth is the only holder of a shop's offline token (encrypted in `merchants`, DESIGN §7).
A service that must call Shopify for a merchant (Points, for reward discount codes) asks for
it with its service token, bound to that merchant and granted `auth:shop-token`
(SERVICE_GRANTS); a user's token is refused whatever it carries (the RPC is `internal`: the
auth interceptor checks it and the gateway denies it). Every hand-out is logged, counted and
written to `shop_token_reads` (audited).

Expiring offline tokens (mandatory for public apps from 2027): Shopify's answer to the code
exchange carries `expires_in` and a `refresh_token`, stored encrypted with their expiry. A
token with less than LOYALNEST_AUTH_SHOP_TOKEN_REFRESH_AHEAD_SECONDS left is refreshed here,
before it is handed out (`grant_type=refresh_token`), under a row lock: Shopify's refresh
token works once, so two refreshes at the same time would spend it twice and lose the shop.
If Shopify cannot be reached or refuses the refresh, a token that has not expired yet is
still handed out (logged); once expired, UNAVAILABLE or FAILED_PRECONDITION.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from loyalnest.platform.auth.context import current_principal
from loyalnest.platform.auth.tokens import SERVICE_SUBJECT_PREFIX, Principal
from loyalnest.platform.errors import FailedPrecondition, NotFound, PermissionDenied, Unavailable
from loyalnest.platform.observability import get_logger
from loyalnest.platform.validation import is_uuid
from loyalnest.services.auth.domain import ShopTokenRecord
from loyalnest.services.auth.shopify import ShopifyOAuthClient
from loyalnest.services.auth.store import AuthStore

log = get_logger(__name__)

SHOP_TOKEN_READS = Counter(
    "loyalnest_auth_shop_token_reads_total",
    "Shop access tokens handed to services, by service and outcome (ok, refreshed, refused).",
    ["service", "outcome"],
)
SHOP_TOKEN_REFRESHES = Counter(
    "loyalnest_auth_shop_token_refreshes_total",
    "Refreshes of expiring shop tokens with Shopify, by outcome (ok, refused, unavailable).",
    ["outcome"],
)


def _inactive(merchant_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        "the merchant uninstalled the app",
        violation_type="MERCHANT_INACTIVE",
        subject=f"merchants/{merchant_id}",
    )


def _service_caller() -> Principal:
    """The caller, if it is one of LoyalNest's services acting with its own token. The auth
    interceptor refuses user tokens for internal RPCs already; checked again here because
    handing out a shop's credentials must never depend on one declaration alone."""
    caller = current_principal()
    if not caller.service or caller.subject != SERVICE_SUBJECT_PREFIX + caller.service:
        raise PermissionDenied("shop access tokens are handed to LoyalNest's services only")
    return caller


class ShopTokens:
    def __init__(
        self, store: AuthStore, shopify: ShopifyOAuthClient, *, refresh_ahead_seconds: float
    ) -> None:
        self._store = store
        self._shopify = shopify
        self._ahead = timedelta(seconds=refresh_ahead_seconds)

    def _due(self, record: ShopTokenRecord) -> bool:
        return record.expires_at is not None and record.expires_at - self._ahead <= datetime.now(
            UTC
        )

    async def current(self, merchant_id: str) -> tuple[ShopTokenRecord, bool]:
        """The merchant's token, refreshed first when it is about to expire; and whether it
        was refreshed now. NOT_FOUND for an unknown merchant, FAILED_PRECONDITION for an
        uninstalled one or one Shopify no longer refreshes."""
        if not is_uuid(merchant_id):  # merchants are UUIDs: no such merchant
            raise NotFound("merchant", merchant_id)
        async with self._store.pool.connection() as conn:
            record = await self._store.shop_token(conn, merchant_id)
        if record.status != "active":
            raise _inactive(merchant_id)
        if not self._due(record):
            return record, False
        async with self._store.pool.connection() as conn, conn.transaction():
            record = await self._store.shop_token(conn, merchant_id, lock=True)
            if record.status != "active":
                raise _inactive(merchant_id)
            if not self._due(record):  # refreshed by another call while this one waited
                return record, False
            assert record.expires_at is not None  # _due
            expired = record.expires_at <= datetime.now(UTC)
            if record.refresh_token is None:
                if expired:
                    raise FailedPrecondition(
                        "the shop's token expired and there is no refresh token: the merchant"
                        " must open the app again",
                        violation_type="SHOP_REAUTHORIZATION_REQUIRED",
                        subject=f"shop/{record.shop_domain}",
                    )
                return record, False
            try:
                tokens = await self._shopify.refresh(record.shop_domain, record.refresh_token)
            except Unavailable:
                SHOP_TOKEN_REFRESHES.labels("unavailable").inc()
                if expired:
                    raise
                log.warning(
                    "shop token refresh failed; handing out the current one until it expires",
                    merchant_id=merchant_id,
                    expires_at=record.expires_at.isoformat(),
                )
                return record, False
            except FailedPrecondition:
                SHOP_TOKEN_REFRESHES.labels("refused").inc()
                if expired:
                    raise
                # Still good for a while: the merchant must reauthorize before it expires.
                log.error(
                    "shopify refused the shop's refresh token; handing out the current token"
                    " until it expires",
                    merchant_id=merchant_id,
                    expires_at=record.expires_at.isoformat(),
                )
                return record, False
            await self._store.save_refreshed_tokens(conn, merchant_id, tokens)
        SHOP_TOKEN_REFRESHES.labels("ok").inc()
        log.info("shop token refreshed", merchant_id=merchant_id, shop=record.shop_domain)
        async with self._store.pool.connection() as conn:
            return await self._store.shop_token(conn, merchant_id), True

    async def get(self, requested_merchant_id: str) -> ShopTokenRecord:
        """The token of the calling service's merchant (`requested_merchant_id`, when given,
        must be that one), refreshed first if due; the hand-out is audited."""
        caller = _service_caller()
        merchant_id = caller.merchant_id
        # Tenancy: the merchant comes from the service token; the request may only repeat it.
        if not merchant_id:
            raise PermissionDenied("the service token must be bound to the shop's merchant")
        if requested_merchant_id and requested_merchant_id != merchant_id:
            raise PermissionDenied("the service token is bound to another merchant")
        assert caller.service is not None  # _service_caller
        try:
            record, refreshed = await self.current(merchant_id)
        except Exception:
            SHOP_TOKEN_READS.labels(caller.service, "refused").inc()
            raise
        await self._store.record_shop_token_read(
            merchant_id, service=caller.service, token_id=caller.token_id, refreshed=refreshed
        )
        SHOP_TOKEN_READS.labels(caller.service, "refreshed" if refreshed else "ok").inc()
        log.info(
            "shop access token handed out",
            merchant_id=merchant_id,
            service=caller.service,
            refreshed=refreshed,
        )
        return record
