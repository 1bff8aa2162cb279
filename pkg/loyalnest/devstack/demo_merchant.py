"""The local stack's demo merchant, installed the way a merchant installs the app.

`loyalnest up` runs a Shopify OAuth stand-in (standins/shopify.py) and points Auth at it; once
the gateway is ready it walks the install a merchant's browser walks, through Envoy:
`GET /v1/api/auth/login?shop=...` → Shopify's authorize URL (the stand-in approves at once and
redirects back with the signed query) → `GET /v1/api/auth/callback?<that query>`. Auth then
stores the merchant and its shop token and publishes `merchant.created`, exactly as in
production, so the edge accepts the shop's webhooks and every service knows the merchant; no
other service's tables are written. A second `loyalnest up` runs it again: Auth signs the
existing merchant in (same merchant, no new event) and stores the stand-in's new shop token.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from dataclasses import dataclass

DEMO_SHOP = "loyalnest-demo.myshopify.com"
TIMEOUT_SECONDS = 15.0


class InstallError(Exception):
    pass


@dataclass(frozen=True)
class Installed:
    merchant_id: str
    shop: str
    first_install: bool


def http_get(url: str) -> tuple[int, dict[str, str], bytes]:
    """One GET, redirects not followed (the callback is the app's page, not ours to load)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=TIMEOUT_SECONDS)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", target)
        response = connection.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        connection.close()


def install(gateway_url: str, shop: str = DEMO_SHOP) -> Installed:
    """Installs (or signs in again) `shop` through the gateway's public auth routes."""
    query = urllib.parse.urlencode({"shop": shop})
    status, _, body = http_get(f"{gateway_url}/v1/api/auth/login?{query}")
    if status != 200:
        raise InstallError(f"GET /v1/api/auth/login answered {status}: {body[:300]!r}")
    authorize_url = json.loads(body)["authorize_url"]
    status, headers, body = http_get(authorize_url)
    if status != 302 or "location" not in headers:
        raise InstallError(f"Shopify stand-in authorize answered {status}: {body[:300]!r}")
    signed = urllib.parse.urlsplit(headers["location"]).query
    status, _, body = http_get(f"{gateway_url}/v1/api/auth/callback?{signed}")
    if status != 200:
        raise InstallError(f"GET /v1/api/auth/callback answered {status}: {body[:300]!r}")
    done = json.loads(body)
    return Installed(
        merchant_id=done["merchant"]["merchant_id"],
        shop=done["merchant"]["shop_domain"],
        first_install=bool(done.get("created", False)),
    )
