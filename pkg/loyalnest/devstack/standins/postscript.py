"""A local stand-in for Postscript's send-message API (DESIGN.md §9, external-contracts §1.2).

Not Postscript: `POST /api/v2/message_requests` with `Authorization: Bearer sk_...` (401
`{"errors": [{"loc", "msg", "type"}]}` without or with an unknown key), a JSON body with
`body` (required) and `phone` in E.164 or `subscriber_id` (400 otherwise), `category` one of
promotional, transactional, conversational; then 202 with the message request
(`status: "processing"`). Postscript has no idempotency key: every accepted call is a
message. A queued 429 answers `{"error_code": 3002, "error_message": "Rate limit exceeded",
"success": false}`. Started by the tests (`PostscriptStandIn().start()`) and by
`loyalnest up` (`python -m loyalnest.devstack.standins.postscript --port 58002`).
"""

from __future__ import annotations

import argparse
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from loyalnest.devstack.standins.base import Answer, StandIn, json_body

DEFAULT_API_KEY = "sk_loyalnest_local_standin"
E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
CATEGORIES = frozenset({"promotional", "transactional", "conversational"})


def _invalid(message: str, status: int = 400, kind: str = "value_error") -> Answer:
    return Answer(status, {"errors": [{"loc": ["body"], "msg": message, "type": kind}]})


class PostscriptStandIn(StandIn):
    name = "postscript"

    def __init__(
        self, api_keys: frozenset[str] = frozenset({DEFAULT_API_KEY}), **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.api_keys = api_keys

    def fault_body(self, status: int) -> Any:
        if status == 429:
            return {"error_code": 3002, "error_message": "Rate limit exceeded", "success": False}
        return {"errors": [{"loc": [], "msg": "stand-in fault", "type": "server_error"}]}

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if (method, path.rstrip("/")) != ("POST", "/api/v2/message_requests"):
            return _invalid("not found", 404, "not_found")
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth.split(" ", 1)[1] not in self.api_keys:
            return _invalid("invalid API key", 401, "v2.access_denied")
        message = json_body(body)
        if not isinstance(message, dict) or not message.get("body"):
            return _invalid("body is required")
        phone, subscriber = message.get("phone"), message.get("subscriber_id")
        if not phone and not subscriber:
            return _invalid("phone or subscriber_id is required")
        if phone and not E164_RE.match(str(phone)):
            return _invalid("phone must be an E.164 number")
        category = message.get("category", "promotional")
        if category not in CATEGORIES:
            return _invalid(f"category must be one of {sorted(CATEGORIES)}")
        now = datetime.now(UTC).isoformat()
        request = {
            "id": str(uuid.uuid4()),
            "body": message["body"],
            "category": category,
            "phone": phone,
            "subscriber_id": subscriber,
            "scheduled_at": message.get("scheduled_at"),
            "status": "processing",
            "status_code": None,
            "sent_message": None,
            "created_at": now,
            "updated_at": now,
        }
        with self.lock:
            self.accepted.append(request)
        return Answer(202, request)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Postscript message API stand-in (local only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=58002)
    parser.add_argument("--api-key", action="append", default=None)
    args = parser.parse_args(argv)
    keys = frozenset(args.api_key or [DEFAULT_API_KEY])
    PostscriptStandIn(api_keys=keys, host=args.host, port=args.port).serve_forever()


if __name__ == "__main__":
    main()
