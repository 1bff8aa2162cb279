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
- The private persons API (personal API key, `Authorization: Bearer phx_...`; PostHog's
  "GET/DELETE persons" endpoints, external-contracts §1.4): a person exists per distinct id
  captured. `GET /api/projects/{project}/persons/?distinct_id=X` lists the person holding it
  (`{"next", "previous", "results": [{"id", "uuid", "distinct_ids", ...}]}`, empty when none);
  `DELETE /api/projects/{project}/persons/{uuid}/?delete_events=true` deletes the person
  (204) and, with `delete_events`, every event of its distinct ids (PostHog does that
  asynchronously; the stand-in at once). 401 without a key or with an unknown one, 404 for
  another project or a person not (or no longer) there, 429 with `Retry-After` past
  `api_rate_per_minute` requests in a minute (PostHog's persons endpoints allow 240/min,
  ⚠ a third-party figure in external-contracts §1.4).
  `POST /api/projects/{project}/persons/bulk_delete/` (PostHog's bulk deletion, scope
  person:write, posthog/api/person.py `bulk_delete`): a JSON body with `distinct_ids` or
  `ids` (person uuids; not both, at most 1000) and `delete_events`; 202 with
  `{"persons_found", "persons_deleted", "events_queued_for_deletion",
  "recordings_queued_for_deletion", "deletion_errors": []}` (ids that name no person are
  just not found), 400 `validation_error` for neither, both, over 1000 or a body that is
  not a JSON object; the same keys, throttle and faults as the other persons endpoints.
  `undeletable` (distinct ids) makes their persons fail as PostHog's own delete can: kept
  (their events still deleted), and listed by person uuid in `deletion_errors`.
- Faults for tests: `fail_next(503, count=1, retry_after="1")` (capture) or
  `fail_api_next(...)` (persons API), or over HTTP `POST /_standin/faults {"status": 503,
  "count": 1, "retry_after": "1", "api": false}`; what it got: `GET /_standin/events`,
  `GET /_standin/persons`, `GET /_standin/requests`; `POST /_standin/reset`. The
  `/_standin/` paths are the stand-in's own, never PostHog's.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from loyalnest.devstack.standins.server import ServedStandIn

DEFAULT_API_KEY = "phc_loyalnest_local_standin"
# The private API's credentials: a personal API key and the project it may reach.
DEFAULT_PERSONAL_API_KEY = "phx_loyalnest_local_standin"
DEFAULT_PROJECT_ID = "1"
_PERSONS = re.compile(r"^/api/(?:projects|environments)/([^/]+)/persons/?(?:([^/]+)/?)?$")
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
    method: str = "POST"


_NOT_FOUND = {"type": "invalid_request", "code": "not_found", "detail": "Not found."}


def _error(kind: str, code: str, detail: str) -> dict[str, Any]:
    return {"type": kind, "code": code, "detail": detail, "attr": None}


def properties_of(event: dict[str, Any]) -> dict[str, Any]:
    properties = event.get("properties")
    return properties if isinstance(properties, dict) else {}


def _distinct_id(event: dict[str, Any]) -> str:
    return str(event.get("distinct_id") or properties_of(event).get("distinct_id"))


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
    personal_api_keys: frozenset[str] = frozenset({DEFAULT_PERSONAL_API_KEY})
    project_id: str = DEFAULT_PROJECT_ID
    api_rate_per_minute: int = 240
    # person uuid -> the person; distinct id -> its person's uuid.
    persons: dict[str, dict[str, Any]] = field(default_factory=dict)
    _person_of: dict[str, str] = field(default_factory=dict)
    # Distinct ids whose persons a bulk deletion fails to delete (deletion_errors).
    undeletable: set[str] = field(default_factory=set)
    _faults: list[Fault] = field(default_factory=list)
    _api_faults: list[Fault] = field(default_factory=list)
    _api_calls: deque[float] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def _dispatch(self, request: BaseHTTPRequestHandler, method: str) -> None:
        if request.path.startswith("/api/"):
            self._handle_api(request, method)
        elif method == "POST":
            self._handle_post(request)
        else:
            self._handle_get(request)

    # ---- what tests use ------------------------------------------------------------------

    def fail_next(self, status: int, *, count: int = 1, retry_after: str | None = None) -> None:
        """The next `count` capture requests get `status` (e.g. 503, 429 with Retry-After)."""
        with self._lock:
            self._faults.extend([Fault(status, retry_after)] * count)

    def fail_api_next(self, status: int, *, count: int = 1, retry_after: str | None = None) -> None:
        """The next `count` private API requests (persons) get `status`."""
        with self._lock:
            self._api_faults.extend([Fault(status, retry_after)] * count)

    def reset(self) -> None:
        with self._lock:
            self.events.clear()
            self.deliveries.clear()
            self.dropped.clear()
            self.requests.clear()
            self.persons.clear()
            self._person_of.clear()
            self._faults.clear()
            self._api_faults.clear()
            self._api_calls.clear()
            self.undeletable.clear()

    def person(self, distinct_id: str) -> dict[str, Any] | None:
        """The person holding `distinct_id`, if PostHog has one."""
        with self._lock:
            person_uuid = self._person_of.get(distinct_id)
            return None if person_uuid is None else dict(self.persons[person_uuid])

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
                self._identify(_distinct_id(event))
        return len(batch)

    def _identify(self, distinct_id: str) -> None:
        """An event's distinct id makes (or finds) its person (under the lock)."""
        if distinct_id in self._person_of:
            return
        person_uuid = str(uuid.uuid4())
        self.persons[person_uuid] = {
            "id": len(self.persons) + 1,
            "uuid": person_uuid,
            "name": distinct_id,
            "distinct_ids": [distinct_id],
            "properties": {},
            "created_at": datetime.now(UTC).isoformat(),
        }
        self._person_of[distinct_id] = person_uuid

    # ---- the private persons API ---------------------------------------------------------

    def _handle_api(self, request: BaseHTTPRequestHandler, method: str) -> None:
        path, _, query = request.path.partition("?")
        params = {name: values[-1] for name, values in parse_qs(query).items()}
        length = int(request.headers.get("content-length") or 0)
        raw = request.rfile.read(length) if length else b""
        status, payload, headers = self._api(method, path, params, request.headers, raw)
        self.requests.append(Received(path, status, 0, False, method))
        self._reply(request, status, payload, headers)

    def _api(
        self, method: str, path: str, params: dict[str, str], headers: Any, raw: bytes = b""
    ) -> tuple[int, Any, dict[str, str]]:
        authorization = headers.get("authorization") or ""
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key:
            return (
                401,
                _error(
                    "authentication_error",
                    "not_authenticated",
                    "Authentication credentials were not provided.",
                ),
                {},
            )
        if key.strip() not in self.personal_api_keys:
            return (
                401,
                _error(
                    "authentication_error",
                    "authentication_failed",
                    "Personal API key found in request Authorization header is invalid.",
                ),
                {},
            )
        with self._lock:
            fault = self._api_faults.pop(0) if self._api_faults else None
            now = time.monotonic()
            while self._api_calls and now - self._api_calls[0] >= 60:
                self._api_calls.popleft()
            throttled = fault is None and len(self._api_calls) >= self.api_rate_per_minute
            if throttled:
                wait = max(1, int(60 - (now - self._api_calls[0])) + 1)
            elif fault is None:
                self._api_calls.append(now)
        if fault is not None:
            retry = {"retry-after": fault.retry_after} if fault.retry_after else {}
            return fault.status, {"detail": "stand-in fault"}, retry
        if throttled:
            detail = f"Request was throttled. Expected available in {wait} seconds."
            return 429, _error("throttled_error", "throttled", detail), {"retry-after": str(wait)}
        match = _PERSONS.match(path)
        if match is None or match.group(1) != self.project_id:
            return 404, _NOT_FOUND, {}
        person_id = match.group(2)
        if method == "POST" and person_id == "bulk_delete":
            return self._bulk_delete(raw)
        with self._lock:
            if method == "GET" and person_id is None:
                wanted = params.get("distinct_id")
                found = [
                    dict(p)
                    for p in self.persons.values()
                    if wanted is None or wanted in p["distinct_ids"]
                ]
                return 200, {"next": None, "previous": None, "results": found}, {}
            if method == "DELETE" and person_id is not None:
                person = self.persons.pop(person_id, None)
                if person is None:
                    return 404, _NOT_FOUND, {}
                self._forget(person, params.get("delete_events", "").lower() in ("true", "1"))
                return 204, None, {}
        return (
            405,
            _error("invalid_request", "method_not_allowed", f'Method "{method}" not allowed.'),
            {},
        )

    def _forget(self, person: dict[str, Any], delete_events: bool) -> None:
        """A deleted person's distinct ids, and with `delete_events` its events (under the
        lock; PostHog deletes events asynchronously, the stand-in at once)."""
        for distinct_id in person["distinct_ids"]:
            self._person_of.pop(distinct_id, None)
        self._forget_events(person, delete_events)

    def _forget_events(self, person: dict[str, Any], delete_events: bool) -> None:
        if delete_events:
            gone = set(person["distinct_ids"])
            for key in [k for k, e in self.events.items() if _distinct_id(e) in gone]:
                del self.events[key]

    def _bulk_delete(self, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return 400, _error("validation_error", "parse_error", "JSON parse error"), {}
        distinct_ids, ids = body.get("distinct_ids"), body.get("ids")
        problem = (
            "You must provide either distinct_ids or ids, not both"
            if distinct_ids and ids
            else "You need to specify either distinct_ids or ids"
            if not distinct_ids and not ids
            else None
        )
        wanted = distinct_ids or ids
        if problem is None and (not isinstance(wanted, list) or len(wanted) > 1000):
            kind = "distinct_ids" if distinct_ids else "ids"
            problem = f"You can only pass 1000 {kind} in one call"
        if problem is not None:
            return 400, _error("validation_error", "invalid_input", problem), {}
        assert isinstance(wanted, list)
        with self._lock:
            uuids = {self._person_of.get(str(i)) if distinct_ids else str(i) for i in wanted} - {
                None
            }
            found = [self.persons[u] for u in sorted(u for u in uuids if u in self.persons)]
            failed = [p for p in found if set(p["distinct_ids"]) & self.undeletable]
            for person in found:
                if person in failed:  # its events are still queued for deletion, as PostHog does
                    self._forget_events(person, bool(body.get("delete_events")))
                else:
                    del self.persons[person["uuid"]]
                    self._forget(person, bool(body.get("delete_events")))
        summary = {
            "persons_found": len(found),
            "persons_deleted": len(found) - len(failed),
            "events_queued_for_deletion": bool(body.get("delete_events")) and bool(found),
            "recordings_queued_for_deletion": bool(body.get("delete_recordings")) and bool(found),
            "deletion_errors": [{"person_uuid": p["uuid"]} for p in failed],
        }
        return 202, summary, {}

    # ---- the stand-in's own control paths ------------------------------------------------

    def _control(self, request: BaseHTTPRequestHandler, path: str, raw: bytes) -> None:
        if path == "/_standin/faults":
            spec = json.loads(raw or b"{}")
            retry_after = spec.get("retry_after")
            inject = self.fail_api_next if spec.get("api") else self.fail_next
            inject(
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
            elif path == "/_standin/persons":
                body = {"persons": list(self.persons.values())}
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
        # 204 carries no body (RFC 9110 §15.3.5).
        data = b"" if status == 204 else json.dumps(payload).encode()
        request.send_response(status)
        if data:
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
    parser.add_argument("--personal-api-key", action="append", default=None)
    parser.add_argument("--project-id", default=DEFAULT_PROJECT_ID)
    args = parser.parse_args(argv)
    keys = frozenset(args.api_key or [DEFAULT_API_KEY])
    personal = frozenset(args.personal_api_key or [DEFAULT_PERSONAL_API_KEY])
    PosthogStandIn(
        api_keys=keys,
        personal_api_keys=personal,
        project_id=args.project_id,
        host=args.host,
        port=args.port,
    ).serve_forever()


if __name__ == "__main__":
    main()
