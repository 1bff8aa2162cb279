"""A local stand-in for Shopify's OAuth endpoints (DESIGN.md §7), started by the tests
(in-process, `ShopifyStandIn(...).start()`) and by `loyalnest up` (a process:
`python -m loyalnest.devstack.standins.shopify --port 58001 --api-key K --api-secret S`).

Not Shopify. It plays both sides Shopify plays in an install: `approve(authorize_url)` is the
merchant clicking "Install" (it checks the authorize URL and returns the signed redirect query);
over HTTP, `GET /{shop}/admin/oauth/authorize?...` is the same merchant approving at once: 302
to the `redirect_uri` with that signed query, as Shopify redirects the browser (an authorize
request for another app, or without state or redirect_uri: 400). And
`POST /{shop}/admin/oauth/access_token` exchanges a code once: an unknown, foreign or reused
code gets 400, as Shopify answers. With `expiring=1` the token expires in an hour
(`token_lifetime_seconds`) and comes with a refresh token; `grant_type=refresh_token` with
that refresh token returns a new access token and a new refresh token, and spends the one
presented (a spent, unknown or other shop's refresh token: 400 `invalid_grant`). The access
tokens handed out are what the Admin API stand-in (shopify_admin_standin.py) accepts, each
until it expires.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from loyalnest.services.auth.shopify import query_hmac


@dataclass
class Exchange:
    shop: str
    form: dict[str, str]
    status: int


@dataclass
class ShopifyStandIn:
    api_key: str
    api_secret: str
    scope: str = "read_customers,read_orders,write_discounts"
    # Of expiring offline tokens (Shopify: an hour).
    token_lifetime_seconds: int = 3600
    # code -> shop, for codes not yet exchanged.
    auth_codes: dict[str, str] = field(default_factory=dict)
    # access token -> (shop, unix time it expires or None); refresh token -> shop (unspent).
    access_tokens: dict[str, tuple[str, float | None]] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    # Every access token handed out, to look for them in the database.
    issued_tokens: list[str] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        """For LOYALNEST_SHOPIFY_BASE_URL: the shop's "origin" is a path on this server."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/{{shop}}"

    def start(self) -> None:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                standin._handle(self)

            def do_GET(self) -> None:
                standin._authorize(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ---- the merchant's browser ---------------------------------------------------------

    def sign(self, params: dict[str, str], secret: str | None = None) -> dict[str, str]:
        return {**params, "hmac": query_hmac(params, secret or self.api_secret)}

    def approve(
        self, authorize_url: str, *, timestamp: int | None = None, scope: str | None = None
    ) -> dict[str, str]:
        """The merchant approves the app: the signed query Shopify redirects back with."""
        url = urllib.parse.urlsplit(authorize_url)
        query = dict(urllib.parse.parse_qsl(url.query))
        shop = url.path.split("/")[1]
        assert url.path == f"/{shop}/admin/oauth/authorize", url.path
        assert query["client_id"] == self.api_key
        assert query["scope"] == (scope or self.scope)
        assert query["state"]
        assert query["redirect_uri"]
        code = secrets.token_hex(16)
        with self._lock:
            self.auth_codes[code] = shop
        params = {
            "code": code,
            "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvZXhhbXBsZQ",
            "shop": shop,
            "state": query["state"],
            "timestamp": str(timestamp if timestamp is not None else int(time.time())),
        }
        return self.sign(params)

    def _authorize(self, request: BaseHTTPRequestHandler) -> None:
        """The merchant's browser at the authorize URL: approved at once, redirected back."""
        url = urllib.parse.urlsplit(request.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        parts = url.path.split("/")
        if len(parts) != 5 or parts[2:] != ["admin", "oauth", "authorize"]:
            self._reply(request, 404, {"errors": "Not Found"})
            return
        if query.get("client_id") != self.api_key:
            self._reply(request, 400, {"error": "invalid_client", "error_description": "client_id"})
            return
        if not query.get("state") or not query.get("redirect_uri"):
            self._reply(request, 400, {"error": "invalid_request", "error_description": "state"})
            return
        # The scopes granted are the ones asked for, as when the merchant approves them all.
        approved = self.approve(
            urllib.parse.urlunsplit(("http", "standin", url.path, url.query, "")),
            scope=query.get("scope", self.scope),
        )
        location = f"{query['redirect_uri']}?{urllib.parse.urlencode(approved)}"
        request.send_response(302)
        request.send_header("location", location)
        request.send_header("content-length", "0")
        request.end_headers()

    # ---- the token endpoint -------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = request.path.split("/")
        body = request.rfile.read(int(request.headers.get("content-length", "0")))
        if request.headers.get("content-type", "").startswith("application/json"):
            form = {k: str(v) for k, v in json.loads(body or b"{}").items()}
        else:
            form = dict(urllib.parse.parse_qsl(body.decode()))
        if len(parts) != 5 or parts[2:] != ["admin", "oauth", "access_token"]:
            self._reply(request, 404, {"errors": "Not Found"})
            return
        shop = parts[1]
        with self._lock:
            status, payload = self._exchange(shop, form)
            self.exchanges.append(Exchange(shop, form, status))
        self._reply(request, status, payload)

    def _exchange(self, shop: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("client_id") != self.api_key or form.get("client_secret") != self.api_secret:
            return 400, {"error": "invalid_client"}
        if form.get("grant_type") == "refresh_token":
            if self.refresh_tokens.get(form.get("refresh_token", "")) != shop:
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "refresh token is invalid, expired or already used",
                }
            del self.refresh_tokens[form["refresh_token"]]  # rotates: works once
            return 200, self._issue(shop, expiring=True)
        if self.auth_codes.get(form.get("code", "")) != shop:
            return 400, {"error": "invalid_request", "error_description": "invalid code"}
        del self.auth_codes[form["code"]]  # a code works once
        return 200, self._issue(shop, expiring=form.get("expiring") == "1")

    def _issue(self, shop: str, *, expiring: bool) -> dict[str, Any]:
        token = f"shpat_{secrets.token_hex(16)}"
        self.issued_tokens.append(token)
        payload: dict[str, Any] = {"access_token": token, "scope": self.scope}
        expires_at = None
        if expiring:
            refresh = f"shprt_{secrets.token_hex(16)}"
            payload |= {
                "expires_in": self.token_lifetime_seconds,
                "refresh_token": refresh,
                "refresh_token_expires_in": 7_776_000,
            }
            self.issued_tokens.append(refresh)
            self.refresh_tokens[refresh] = shop
            expires_at = time.time() + self.token_lifetime_seconds
        self.access_tokens[token] = (shop, expires_at)
        return payload

    def _accepts(self, shop: str, access_token: str) -> bool:
        """Whether `access_token` is good for `shop` now (issued, not expired); the caller
        holds the lock."""
        issued = self.access_tokens.get(access_token)
        now = time.time()
        return issued is not None and issued[0] == shop and (issued[1] is None or issued[1] > now)

    def token_requests(self, grant_type: str) -> list[Exchange]:
        """Token endpoint requests of one grant ("refresh_token", or "" for code exchanges)."""
        with self._lock:
            return [e for e in self.exchanges if e.form.get("grant_type", "") == grant_type]

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        request.send_response(status)
        request.send_header("content-type", "application/json")
        request.send_header("content-length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)


def main(argv: list[str] | None = None, standin_type: type[ShopifyStandIn] | None = None) -> None:
    """Serves a stand-in of `standin_type` (this one, or the Admin API's that extends it)."""
    standin_type = standin_type or ShopifyStandIn
    parser = argparse.ArgumentParser(description=(standin_type.__doc__ or __doc__).splitlines()[0])
    parser.add_argument("--port", type=int, default=58001)
    parser.add_argument("--api-key", required=True, help="the app's client id")
    parser.add_argument(
        "--api-secret",
        default=os.environ.get("LOYALNEST_SHOPIFY_API_SECRET", ""),
        help="the app's client secret (default: $LOYALNEST_SHOPIFY_API_SECRET)",
    )
    args = parser.parse_args(argv)
    if not args.api_secret:
        parser.error("--api-secret or LOYALNEST_SHOPIFY_API_SECRET is required")
    standin = standin_type(api_key=args.api_key, api_secret=args.api_secret, port=args.port)
    standin.start()
    print(f"{standin_type.__name__} on {standin.base_url}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
