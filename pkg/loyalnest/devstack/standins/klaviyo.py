"""A local stand-in for Klaviyo's Create Event API (DESIGN.md §9, external-contracts §1.1).

Not Klaviyo: `POST /api/events` with `Authorization: Klaviyo-API-Key <key>` (401 without or
with an unknown key), a required `revision: YYYY-MM-DD[.suffix]` header (400 without; 410 for
a retired 2022-2024 revision), a JSON:API body with `properties`, `metric` (name < 128) and
`profile` (email, phone_number or external_id) required (400 otherwise), then 202 with no body.
Events are deduplicated on (profile, metric, unique_id or time to the second), as Klaviyo
records only the first. Errors carry `{"errors": [{"id", "code", "title", "detail"}]}`; a
queued 429 carries `Retry-After` and no `RateLimit-*` headers. Started by the tests
(`KlaviyoStandIn().start()`) and by `loyalnest up`
(`python -m loyalnest.devstack.standins.klaviyo --port 58001`).
"""

from __future__ import annotations

import argparse
import re
import uuid
from typing import Any

from loyalnest.devstack.standins.base import Answer, StandIn, json_body

DEFAULT_API_KEY = "pk_loyalnest_local_standin"
REVISION_RE = re.compile(r"^(\d{4})-\d{2}-\d{2}(\.[a-z]+)?$")
TITLES = {
    400: "Invalid input.",
    401: "Not authenticated.",
    410: "Revision retired.",
    429: "Throttled.",
    500: "A server error occurred.",
    503: "Service unavailable.",
}


def _error(status: int, detail: str) -> Answer:
    return Answer(status, KlaviyoStandIn.errors(status, detail))


class KlaviyoStandIn(StandIn):
    name = "klaviyo"

    def __init__(
        self, api_keys: frozenset[str] = frozenset({DEFAULT_API_KEY}), **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.api_keys = api_keys
        self._seen: set[tuple[str, str, str]] = set()

    @staticmethod
    def errors(status: int, detail: str) -> dict[str, Any]:
        return {
            "errors": [
                {
                    "id": str(uuid.uuid4()),
                    "code": {429: "throttled", 401: "not_authenticated"}.get(status, "error"),
                    "title": TITLES.get(status, "Error."),
                    "detail": detail,
                    "source": {"pointer": "/data/"},
                }
            ]
        }

    def fault_body(self, status: int) -> Any:
        return self.errors(status, "stand-in fault")

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self._seen.clear()

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if (method, path.rstrip("/")) != ("POST", "/api/events"):
            return _error(404, "not found")
        auth = headers.get("authorization", "")
        if not auth.startswith("Klaviyo-API-Key ") or auth.split(" ", 1)[1] not in self.api_keys:
            return _error(401, "Missing or invalid private key.")
        revision = REVISION_RE.match(headers.get("revision", ""))
        if revision is None:
            return _error(400, "The revision header is required (YYYY-MM-DD).")
        if int(revision.group(1)) < 2025:
            return _error(410, "This revision is retired.")
        event = json_body(body)
        attributes = (event or {}).get("data", {}).get("attributes") if event else None
        if not isinstance(attributes, dict) or (event or {}).get("data", {}).get("type") != "event":
            return _error(400, "data.type must be 'event' with attributes.")
        metric = attributes.get("metric", {}).get("data", {}).get("attributes", {}).get("name")
        profile = attributes.get("profile", {}).get("data", {}).get("attributes", {})
        identifier = next(
            (profile.get(k) for k in ("email", "phone_number", "external_id") if profile.get(k)),
            None,
        )
        if not isinstance(attributes.get("properties"), dict):
            return _error(400, "properties is required.")
        if not isinstance(metric, str) or not metric or len(metric) >= 128:
            return _error(400, "metric.data.attributes.name is required (< 128 characters).")
        if not identifier:
            return _error(400, "the profile needs an email, phone_number or external_id.")
        unique = str(attributes.get("unique_id") or attributes.get("time") or "")
        key = (str(identifier), metric, unique)
        with self.lock:
            if key not in self._seen:  # only the first event per unique_id is recorded
                self._seen.add(key)
                self.accepted.append(attributes)
        return Answer(202)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Klaviyo Create Event stand-in (local only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=58001)
    parser.add_argument("--api-key", action="append", default=None)
    args = parser.parse_args(argv)
    keys = frozenset(args.api_key or [DEFAULT_API_KEY])
    KlaviyoStandIn(api_keys=keys, host=args.host, port=args.port).serve_forever()


if __name__ == "__main__":
    main()
