"""What the Klaviyo, Postscript and SES stand-ins share: a threaded HTTP server on
127.0.0.1, the faults a test queues (`fail_next(status, count=, retry_after=)`, or over HTTP
`POST /_standin/faults {"status", "count", "retry_after"}`), and what was accepted
(`GET /_standin/received`, `POST /_standin/reset`). The `/_standin/` paths are the stand-ins'
own, never the provider's. Each stand-in implements `answer()` with its provider's contract
and `fault_body()` with the provider's error shape."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from loyalnest.devstack.standins.server import ServedStandIn


@dataclass(frozen=True)
class Fault:
    status: int
    retry_after: str | None = None


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any = None  # None: no body (Klaviyo's 202)
    headers: dict[str, str] = field(default_factory=dict)


class StandIn(ServedStandIn):
    """Subclasses set `name` and implement `answer` and `fault_body`."""

    name = "stand-in"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        # What the provider accepted (one entry per accepted call), and every call's status.
        self.accepted: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self._faults: list[Fault] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ---- what subclasses implement --------------------------------------------------------

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        raise NotImplementedError

    def fault_body(self, status: int) -> Any:
        raise NotImplementedError

    def fault_headers(self, status: int) -> dict[str, str]:
        return {}

    # ---- what tests use ------------------------------------------------------------------

    def fail_next(self, status: int, *, count: int = 1, retry_after: str | None = None) -> None:
        """The next `count` provider calls get `status` (429 with Retry-After, 5xx...)."""
        with self.lock:
            self._faults.extend([Fault(status, retry_after)] * count)

    def reset(self) -> None:
        with self.lock:
            self.accepted.clear()
            self.statuses.clear()
            self._faults.clear()

    # ---- HTTP ------------------------------------------------------------------------------

    def _dispatch(self, request: BaseHTTPRequestHandler, method: str) -> None:
        path = request.path.split("?", 1)[0]
        length = int(request.headers.get("content-length") or 0)
        raw = request.rfile.read(length) if length else b""
        if path.startswith("/_standin/") or path == "/_health":
            self._reply(request, self._control(method, path, raw))
            return
        with self.lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            headers = self.fault_headers(fault.status)
            if fault.retry_after:
                headers["retry-after"] = fault.retry_after
            answer = Answer(fault.status, self.fault_body(fault.status), headers)
        else:
            headers = {k.lower(): v for k, v in request.headers.items()}
            answer = self.answer(method, path, headers, raw)
        with self.lock:
            self.statuses.append(answer.status)
        self._reply(request, answer)

    def _control(self, method: str, path: str, raw: bytes) -> Answer:
        if path == "/_health":
            return Answer(200, {"ok": True})
        if method == "POST" and path == "/_standin/faults":
            spec = json.loads(raw or b"{}")
            retry_after = spec.get("retry_after")
            count = int(spec.get("count", 1))
            self.fail_next(
                int(spec["status"]),
                count=count,
                retry_after=None if retry_after is None else str(retry_after),
            )
            return Answer(200, {"queued": count})
        if method == "POST" and path == "/_standin/reset":
            self.reset()
            return Answer(200, {})
        if method == "GET" and path == "/_standin/received":
            with self.lock:
                return Answer(200, {"accepted": list(self.accepted), "statuses": self.statuses})
        return Answer(404, {"error": "not found"})

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, answer: Answer) -> None:
        data = b"" if answer.body is None else json.dumps(answer.body).encode()
        request.send_response(answer.status)
        if answer.body is not None:
            request.send_header("content-type", "application/json")
        request.send_header("content-length", str(len(data)))
        for name, value in answer.headers.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)


def json_body(raw: bytes) -> Any:
    """The body as JSON, or None when it is not."""
    try:
        return json.loads(raw)
    except ValueError:
        return None
