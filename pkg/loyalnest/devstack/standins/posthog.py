"""A local stand-in for PostHog's capture API (DESIGN.md §9, external-contracts §1.4).

Not PostHog: it honours the capture contract Event Tracking relies on, started by the tests
(in-process, `PosthogStandIn().start()`) and by `loyalnest up` (a process:
`python -m loyalnest.devstack.standins.posthog --port 58000 --api-key phc_...`).

- `POST /batch/` (`{"api_key", "batch": [...], "sent_at"?, "historical_migration"?}`) and
  `POST /i/v0/e/` (alias `/capture/`, one event `{"api_key", "event", "distinct_id", ...}`),
  the body plain or gzip (`Content-Encoding: gzip`, or gzip's magic bytes, as PostHog sniffs).
- 401 for a missing or unknown `api_key`, or a batch whose events name another key; 400 for
  a body that is not JSON, an empty batch, an event without `event` or `distinct_id`
  (`properties.distinct_id` counts), or an event over 1 MB; else 200 `{"status": 1}`.
- An event whose `uuid` is not a UUID is dropped, not refused (an ingestion warning at
  PostHog). Events are kept by `uuid`, and how often each uuid arrived, so a test can tell a
  duplicate delivery (PostHog deduplicates on it only eventually).
- Faults for tests: `fail_next(503, count=1, retry_after="1")`, or over HTTP
  `POST /_standin/faults {"status": 503, "count": 1, "retry_after": "1"}`; what it got:
  `GET /_standin/events`, `GET /_standin/requests`; `POST /_standin/reset`. The `/_standin/`
  paths are the stand-in's own, never PostHog's.
"""

from __future__ import annotations

import argparse
import gzip
import json
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from loyalnest.devstack.standins.server import ServedStandIn

DEFAULT_API_KEY = "phc_loyalnest_local_standin"
MAX_EVENT_BYTES = 1_000_000
MAX_BODY_BYTES = 20 * 1024 * 1024
CAPTURE_PATHS = frozenset({"/batch/", "/batch", "/i/v0/e/", "/i/v0/e", "/capture/", "/capture"})


@dataclass(frozen=True)
class Fault:
    status: int
    retry_after: str | None = None


@dataclass(frozen=True)
class Received:
    """One request to a capture path, as the stand-in answered it."""

    path: str
    status: int
    events: int
    gzipped: bool


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


@dataclass
class PosthogStandIn(ServedStandIn):
    api_keys: frozenset[str] = frozenset({DEFAULT_API_KEY})
    host: str = "127.0.0.1"
    port: int = 0
    # uuid -> the last event received with it; uuid -> how many times it was accepted.
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: Counter[str] = field(default_factory=Counter)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    _faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def _dispatch(self, request: BaseHTTPRequestHandler, method: str) -> None:
        if method == "POST":
            self._handle_post(request)
        else:
            self._handle_get(request)

    # ---- what tests use ------------------------------------------------------------------

    def fail_next(self, status: int, *, count: int = 1, retry_after: str | None = None) -> None:
        """The next `count` capture requests get `status` (e.g. 503, 429 with Retry-After)."""
        with self._lock:
            self._faults.extend([Fault(status, retry_after)] * count)

    def reset(self) -> None:
        with self._lock:
            self.events.clear()
            self.deliveries.clear()
            self.dropped.clear()
            self.requests.clear()
            self._faults.clear()

    def received(self, event_name: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events.values() if event_name in (None, e.get("event"))]

    # ---- the capture contract ------------------------------------------------------------

    def _handle_post(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        length = int(request.headers.get("content-length") or 0)
        raw = request.rfile.read(length) if length else b""
        if path.startswith("/_standin/"):
            self._control(request, path, raw)
            return
        if path not in CAPTURE_PATHS:
            self._reply(request, 404, {"error": "not found"})
            return
        gzipped = request.headers.get("content-encoding", "").lower() == "gzip" or raw[:2] == (
            b"\x1f\x8b"
        )
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            self.requests.append(Received(path, fault.status, 0, gzipped))
            headers = {"retry-after": fault.retry_after} if fault.retry_after else {}
            self._reply(request, fault.status, {"error": "stand-in fault"}, headers)
            return
        try:
            events = self._capture(path, raw, gzipped)
        except Refused as refused:
            self.requests.append(Received(path, refused.status, 0, gzipped))
            self._reply(
                request, refused.status, {"type": "validation_error", "detail": str(refused)}
            )
            return
        self.requests.append(Received(path, 200, events, gzipped))
        self._reply(request, 200, {"status": 1})

    def _capture(self, path: str, raw: bytes, gzipped: bool) -> int:
        if len(raw) > MAX_BODY_BYTES:
            raise Refused(413, "request body too large")
        try:
            body = json.loads(gzip.decompress(raw) if gzipped else raw)
        except (OSError, ValueError) as exc:
            raise Refused(400, f"failed to decode the request: {exc}") from exc
        if not isinstance(body, dict):
            raise Refused(400, "the body must be a JSON object")
        api_key = body.get("api_key")
        if not api_key:
            raise Refused(401, "API key is missing")
        if api_key not in self.api_keys:
            raise Refused(401, "API key is not valid")
        batch = body.get("batch") if path.startswith("/batch") else [body]
        if not isinstance(batch, list) or not batch:
            raise Refused(400, "empty batch")
        for event in batch:
            if not isinstance(event, dict):
                raise Refused(400, "an event must be a JSON object")
            if event.get("api_key") not in (None, api_key):
                raise Refused(401, "inconsistent API keys in one batch")
            properties = event.get("properties") or {}
            if not event.get("event"):
                raise Refused(400, "missing event name")
            if not (event.get("distinct_id") or properties.get("distinct_id")):
                raise Refused(400, "missing distinct_id")
            if len(json.dumps(event).encode()) > MAX_EVENT_BYTES:
                raise Refused(400, "event too big")
        with self._lock:
            for event in batch:
                event_uuid = event.get("uuid")
                if event_uuid is not None and not _is_uuid(event_uuid):
                    self.dropped.append(event)  # PostHog drops invalid uuids at ingestion
                    continue
                key = str(event_uuid or uuid.uuid4())
                self.events[key] = event
                self.deliveries[key] += 1
        return len(batch)

    # ---- the stand-in's own control paths ------------------------------------------------

    def _control(self, request: BaseHTTPRequestHandler, path: str, raw: bytes) -> None:
        if path == "/_standin/faults":
            spec = json.loads(raw or b"{}")
            retry_after = spec.get("retry_after")
            self.fail_next(
                int(spec["status"]),
                count=int(spec.get("count", 1)),
                retry_after=None if retry_after is None else str(retry_after),
            )
            self._reply(request, 200, {"queued": int(spec.get("count", 1))})
        elif path == "/_standin/reset":
            self.reset()
            self._reply(request, 200, {})
        else:
            self._reply(request, 404, {"error": "not found"})

    def _handle_get(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        with self._lock:
            if path == "/_standin/events":
                body: Any = {
                    "events": list(self.events.values()),
                    "deliveries": dict(self.deliveries),
                    "dropped": len(self.dropped),
                }
            elif path == "/_standin/requests":
                body = [r.__dict__ for r in self.requests]
            elif path == "/_health":
                body = {"ok": True}
            else:
                body = None
        self._reply(request, 200 if body is not None else 404, body or {"error": "not found"})

    @staticmethod
    def _reply(
        request: BaseHTTPRequestHandler,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(payload).encode()
        request.send_response(status)
        request.send_header("content-type", "application/json")
        request.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="PostHog capture API stand-in (local only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=58000)
    parser.add_argument("--api-key", action="append", default=None)
    args = parser.parse_args(argv)
    keys = frozenset(args.api_key or [DEFAULT_API_KEY])
    PosthogStandIn(api_keys=keys, host=args.host, port=args.port).serve_forever()


if __name__ == "__main__":
    main()
