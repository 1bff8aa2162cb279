"""A local stand-in for Shopify's OAuth endpoints (DESIGN.md §7), started by the tests.

It plays both sides Shopify plays in an install: `approve(authorize_url)` is the merchant
clicking "Install" (it checks the authorize URL and returns the signed redirect query), and
`POST /{shop}/admin/oauth/access_token` exchanges a code once: an unknown, foreign or reused
code gets 400, as Shopify answers. With `expiring=1` the token expires in an hour and comes
with a refresh token.
"""

from __future__ import annotations

import json
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


# The app credentials the integration tests' Auth service and stand-in share.
API_KEY = "test-shopify-api-key"
API_SECRET = "test-shopify-api-secret"


@dataclass
class ShopifyStandIn:
    api_key: str
    api_secret: str
    scope: str = "read_customers,read_orders,write_discounts"
    # code -> shop, for codes not yet exchanged.
    codes: dict[str, str] = field(default_factory=dict)
    # Every access token handed out, to look for them in the database.
    issued_tokens: list[str] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
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

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ---- the merchant's browser ---------------------------------------------------------

    def sign(self, params: dict[str, str], secret: str | None = None) -> dict[str, str]:
        return {**params, "hmac": query_hmac(params, secret or self.api_secret)}

    def approve(self, authorize_url: str, *, timestamp: int | None = None) -> dict[str, str]:
        """The merchant approves the app: the signed query Shopify redirects back with."""
        url = urllib.parse.urlsplit(authorize_url)
        query = dict(urllib.parse.parse_qsl(url.query))
        shop = url.path.split("/")[1]
        assert url.path == f"/{shop}/admin/oauth/authorize", url.path
        assert query["client_id"] == self.api_key
        assert query["scope"] == self.scope
        assert query["state"] and query["redirect_uri"]
        code = secrets.token_hex(16)
        with self._lock:
            self.codes[code] = shop
        params = {
            "code": code,
            "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvZXhhbXBsZQ",
            "shop": shop,
            "state": query["state"],
            "timestamp": str(timestamp if timestamp is not None else int(time.time())),
        }
        return self.sign(params)

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
        if self.codes.get(form.get("code", "")) != shop:
            return 400, {"error": "invalid_request", "error_description": "invalid code"}
        del self.codes[form["code"]]  # a code works once
        token = f"shpat_{secrets.token_hex(16)}"
        self.issued_tokens.append(token)
        payload: dict[str, Any] = {"access_token": token, "scope": self.scope}
        if form.get("expiring") == "1":
            payload |= {
                "expires_in": 3600,
                "refresh_token": f"shprt_{secrets.token_hex(16)}",
                "refresh_token_expires_in": 7_776_000,
            }
            self.issued_tokens.append(payload["refresh_token"])
        return 200, payload

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        request.send_response(status)
        request.send_header("content-type", "application/json")
        request.send_header("content-length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
