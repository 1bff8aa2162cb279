"""Shopify's OAuth authorization-code grant: request signatures, the authorize URL and the
code exchange (DESIGN.md §7)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from loyalnest.platform.errors import (
    FailedPrecondition,
    InvalidArgument,
    Unauthenticated,
    Unavailable,
)
from loyalnest.platform.observability import get_logger

log = get_logger(__name__)

# Always fullmatch: with match, `$` also matches before a final newline, so
# "evil.myshopify.com\n" would pass and be stored or compared as another shop.
SHOP_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9\-_]*\.myshopify\.com")
# How far Shopify's `timestamp` may lie in the future (clock skew).
FUTURE_SKEW_SECONDS = 60


def _escape(value: str, *, key: bool) -> str:
    value = value.replace("%", "%25").replace("&", "%26")
    return value.replace("=", "%3D") if key else value


def signing_message(params: Mapping[str, str]) -> str:
    """Every parameter but `hmac`, sorted by key, as `k=v` joined with `&`."""
    return "&".join(
        f"{_escape(k, key=True)}={_escape(v, key=False)}"
        for k, v in sorted(params.items())
        if k not in {"hmac", "signature"}
    )


def query_hmac(params: Mapping[str, str], secret: str) -> str:
    message = signing_message(params).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_query(
    params: Mapping[str, str], secrets: Sequence[str], *, now: datetime, max_age_seconds: int
) -> None:
    """Shopify signed these query parameters (hex HMAC-SHA256, constant-time compare), and
    recently. Raises Unauthenticated."""
    received = params.get("hmac", "").strip().lower()
    if not received or not any(
        hmac.compare_digest(query_hmac(params, secret), received) for secret in secrets if secret
    ):
        raise Unauthenticated("the request is not signed by Shopify (hmac mismatch)")
    try:
        stamp = datetime.fromtimestamp(int(params.get("timestamp", "")), UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise Unauthenticated("the request carries no valid timestamp") from exc
    if stamp < now - timedelta(seconds=max_age_seconds) or stamp > now + timedelta(
        seconds=FUTURE_SKEW_SECONDS
    ):
        raise Unauthenticated("the request's timestamp is stale; start the login again")


def valid_shop(shop: str) -> bool:
    return bool(SHOP_RE.fullmatch(shop))


def shop_url(base_url: str, shop: str) -> str:
    """The shop's admin origin: `base_url` with {shop} filled in (https://{shop} in production;
    tests point it at a local stand-in)."""
    return base_url.format(shop=shop).rstrip("/")


def authorize_url(
    *,
    base_url: str,
    shop: str,
    api_key: str,
    scopes: Sequence[str],
    redirect_uri: str,
    state: str,
) -> str:
    # No grant_options[]=per-user: an offline token, which background work needs.
    query = urllib.parse.urlencode(
        {
            "client_id": api_key,
            "scope": ",".join(scopes),
            "redirect_uri": redirect_uri,
            "state": state,
        }
    )
    return f"{shop_url(base_url, shop)}/admin/oauth/authorize?{query}"


class RefreshRefused(FailedPrecondition):
    """Shopify refused the shop's refresh token (spent, expired, or the app uninstalled):
    only the merchant opening the app again (a new install grant) gets a new one."""

    def __init__(self, shop: str) -> None:
        super().__init__(
            f"Shopify refused the refresh token of {shop}: the merchant must open the app again",
            violation_type="SHOP_REAUTHORIZATION_REQUIRED",
            subject=f"shop/{shop}",
        )


@dataclass(frozen=True)
class ShopifyTokens:
    access_token: str
    scopes: tuple[str, ...]
    # Expiring offline tokens only.
    expires_at: datetime | None = None
    refresh_token: str | None = None
    refresh_token_expires_at: datetime | None = None


def _expiry(payload: Mapping[str, object], field: str, now: datetime) -> datetime | None:
    value = payload.get(field)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return now + timedelta(seconds=float(value))
    return None


def parse_token_response(payload: Mapping[str, object], now: datetime) -> ShopifyTokens:
    access_token = payload.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise Unavailable("Shopify's token response carries no access_token")
    scope = payload.get("scope")
    scopes = tuple(s for s in (scope if isinstance(scope, str) else "").split(",") if s)
    refresh = payload.get("refresh_token")
    return ShopifyTokens(
        access_token=access_token,
        scopes=scopes,
        expires_at=_expiry(payload, "expires_in", now),
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        refresh_token_expires_at=_expiry(payload, "refresh_token_expires_in", now),
    )


class ShopifyOAuthClient:
    """`POST {shop}/admin/oauth/access_token`: an authorization code for the shop's offline
    access token (expiring, with a refresh token)."""

    def __init__(
        self, *, base_url: str, api_key: str, api_secret: str, timeout_seconds: float
    ) -> None:
        self._base_url = base_url
        self._api_key = api_key
        self._api_secret = api_secret
        self._timeout = timeout_seconds

    def _post(self, shop: str, form: Mapping[str, str]) -> tuple[int, bytes]:
        request = urllib.request.Request(
            f"{shop_url(self._base_url, shop)}/admin/oauth/access_token",
            data=urllib.parse.urlencode(form).encode(),
            method="POST",
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "accept": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as reply:
                return int(reply.status), bytes(reply.read())
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    async def exchange_code(self, shop: str, code: str) -> ShopifyTokens:
        form = {
            "client_id": self._api_key,
            "client_secret": self._api_secret,
            "code": code,
            # Expiring offline token + refresh token (mandatory for public apps from 2027).
            "expiring": "1",
        }
        status, body = await self._token_request(shop, form)
        if status == 400:
            # Invalid, expired or already used code: only a new login helps.
            raise InvalidArgument.for_field("code", "Shopify rejected the authorization code")
        return self._tokens(shop, status, body)

    async def refresh(self, shop: str, refresh_token: str) -> ShopifyTokens:
        """`grant_type=refresh_token`: a new access token and a new refresh token (the one
        presented is spent). RefreshRefused when Shopify refuses it (400/401)."""
        form = {
            "client_id": self._api_key,
            "client_secret": self._api_secret,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        }
        status, body = await self._token_request(shop, form)
        if status in (400, 401):
            log.warning("shopify refused the shop's refresh token", shop=shop, status=status)
            raise RefreshRefused(shop)
        return self._tokens(shop, status, body)

    async def _token_request(self, shop: str, form: Mapping[str, str]) -> tuple[int, bytes]:
        try:
            return await asyncio.to_thread(self._post, shop, form)
        except (OSError, urllib.error.URLError) as exc:
            log.warning("shopify token request failed", shop=shop, error=repr(exc))
            raise Unavailable("Shopify could not be reached; try again") from exc

    @staticmethod
    def _tokens(shop: str, status: int, body: bytes) -> ShopifyTokens:
        if status != 200:
            log.warning("shopify token request refused", shop=shop, status=status)
            raise Unavailable(f"Shopify answered {status} to the token request")
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise Unavailable("Shopify's token response is not JSON") from exc
        if not isinstance(payload, dict):
            raise Unavailable("Shopify's token response is not a JSON object")
        return parse_token_response(payload, datetime.now(UTC))
