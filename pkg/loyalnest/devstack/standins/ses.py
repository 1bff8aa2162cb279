"""A local stand-in for AWS SES v2 `SendEmail` (DESIGN.md §9, external-contracts §1.3).

Not SES: `POST /v2/email/outbound-emails` signed with SigV4 (the `Authorization` header's
form is checked: `AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/ses/aws4_request`, and
`X-Amz-Date`; an unknown access key id answers 403 `UnrecognizedClientException`), a
rest-json body with `Content` and `Destination.ToAddresses` (400 `BadRequestException`
otherwise), then 200 `{"MessageId"}`. No idempotency, as at SES: every accepted call is one
email. A queued 429 is `TooManyRequestsException`. Errors carry `x-amzn-ErrorType` and
`{"message"}`, which botocore reads. Started by the tests (`SesStandIn().start()`) and by
`loyalnest up` (`python -m loyalnest.devstack.standins.ses --port 58003`).
"""

from __future__ import annotations

import argparse
import re
import uuid
from typing import Any

from loyalnest.devstack.standins.base import Answer, StandIn, json_body

DEFAULT_ACCESS_KEY_ID = "AKIALOYALNESTSTANDIN"
DEFAULT_SECRET_ACCESS_KEY = "loyalnest-local-ses-standin-secret"
SIGV4_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([A-Z0-9]+)/\d{8}/[a-z0-9-]+/ses/aws4_request,"
    r" ?SignedHeaders=[a-z0-9;-]+, ?Signature=[0-9a-f]{64}$"
)
ERROR_TYPES = {
    400: "BadRequestException",
    403: "UnrecognizedClientException",
    404: "NotFoundException",
    429: "TooManyRequestsException",
    500: "InternalFailure",
    503: "ServiceUnavailable",
}


def _error(status: int, message: str) -> Answer:
    kind = ERROR_TYPES.get(status, "InternalFailure")
    return Answer(status, {"message": message}, {"x-amzn-ErrorType": kind})


class SesStandIn(StandIn):
    name = "ses"

    def __init__(
        self, access_key_ids: frozenset[str] = frozenset({DEFAULT_ACCESS_KEY_ID}), **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.access_key_ids = access_key_ids

    def fault_body(self, status: int) -> Any:
        return {"message": "stand-in fault"}

    def fault_headers(self, status: int) -> dict[str, str]:
        return {"x-amzn-ErrorType": ERROR_TYPES.get(status, "InternalFailure")}

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if (method, path.rstrip("/")) != ("POST", "/v2/email/outbound-emails"):
            return _error(404, "not found")
        signed = SIGV4_RE.match(headers.get("authorization", ""))
        if signed is None or not headers.get("x-amz-date"):
            return _error(403, "Missing or malformed SigV4 Authorization.")
        if signed.group(1) not in self.access_key_ids:
            return _error(403, "The security token included in the request is invalid.")
        email = json_body(body)
        if not isinstance(email, dict) or not isinstance(email.get("Content"), dict):
            return _error(400, "Content is required.")
        to = (email.get("Destination") or {}).get("ToAddresses") or []
        if not to or not email.get("FromEmailAddress"):
            return _error(400, "FromEmailAddress and Destination.ToAddresses are required.")
        message_id = f"{uuid.uuid4().hex}-000000"
        with self.lock:
            self.accepted.append({**email, "MessageId": message_id})
        return Answer(200, {"MessageId": message_id})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="AWS SES v2 SendEmail stand-in (local only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=58003)
    parser.add_argument("--access-key-id", action="append", default=None)
    args = parser.parse_args(argv)
    keys = frozenset(args.access_key_id or [DEFAULT_ACCESS_KEY_ID])
    SesStandIn(access_key_ids=keys, host=args.host, port=args.port).serve_forever()


if __name__ == "__main__":
    main()
