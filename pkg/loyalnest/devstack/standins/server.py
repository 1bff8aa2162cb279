"""The HTTP server every stand-in runs on: threaded, on `host:port` (port 0: any free one),
started in a thread by the tests or served in the foreground by `loyalnest up`."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class ServedStandIn:
    """Mixin: the class has `host`, `port` and `_server` and answers `_dispatch`."""

    host: str
    port: int
    _server: ThreadingHTTPServer | None

    def _dispatch(self, request: BaseHTTPRequestHandler, method: str) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://{self.host}:{self._server.server_address[1]}"

    def _make_server(self) -> ThreadingHTTPServer:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as httpx and botocore expect

            def do_POST(self) -> None:
                standin._dispatch(self, "POST")

            def do_GET(self) -> None:
                standin._dispatch(self, "GET")

            def do_DELETE(self) -> None:
                standin._dispatch(self, "DELETE")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return ThreadingHTTPServer((self.host, self.port), Handler)

    def start(self) -> Self:
        self._server = self._make_server()
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def serve_forever(self) -> None:
        self._server = self._make_server()
        self._server.serve_forever()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
