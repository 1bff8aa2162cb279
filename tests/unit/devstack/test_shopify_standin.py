"""The Shopify OAuth stand-in's authorize page, which `loyalnest up` installs the demo shop
through: a 302 back to the app with Shopify's signed query, or 400 for another app's request."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator

import pytest

from loyalnest.devstack.demo_merchant import http_get
from loyalnest.devstack.standins.shopify import ShopifyStandIn
from loyalnest.services.auth.shopify import authorize_url, query_hmac

SHOP = "loyalnest-demo.myshopify.com"


@pytest.fixture
def standin() -> Iterator[ShopifyStandIn]:
    standin = ShopifyStandIn(api_key="app-key", api_secret="app-secret")
    standin.start()
    yield standin
    standin.stop()


def _authorize(standin: ShopifyStandIn, api_key: str) -> str:
    return authorize_url(
        base_url=standin.base_url,
        shop=SHOP,
        api_key=api_key,
        scopes=standin.scope.split(","),
        redirect_uri="http://localhost:5173/auth/callback",
        state="nonce-1",
    )


def test_authorize_redirects_back_with_a_signed_code(standin: ShopifyStandIn) -> None:
    status, headers, _ = http_get(_authorize(standin, "app-key"))
    assert status == 302
    location = urllib.parse.urlsplit(headers["location"])
    assert location.netloc == "localhost:5173"
    query = dict(urllib.parse.parse_qsl(location.query))
    assert (query["shop"], query["state"]) == (SHOP, "nonce-1")
    signed = {k: v for k, v in query.items() if k != "hmac"}
    assert query["hmac"] == query_hmac(signed, "app-secret")
    # The code is one the token endpoint exchanges (once).
    assert standin.auth_codes[query["code"]] == SHOP


def test_authorize_for_another_app_is_refused(standin: ShopifyStandIn) -> None:
    status, headers, body = http_get(_authorize(standin, "someone-else"))
    assert status == 400
    assert "location" not in headers
    assert b"invalid_client" in body
    assert standin.auth_codes == {}
