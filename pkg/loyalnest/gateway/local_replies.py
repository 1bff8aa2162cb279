"""Envoy's own error replies as `google.rpc.Status` JSON for REST callers (the HTTP
connection manager's `local_reply_config`).

A backend's gRPC error reaches a REST caller as JSON already (the transcoder's
`convert_grpc_status`). What Envoy answers by itself did not: the transcoder's request errors
(`points: invalid value "abc" for type TYPE_INT64`, `Could not resolve ... to a method`),
jwt_authn's 401/403, RBAC's 403, the body limit's 413, the rate limits' 429 (empty body), the
router's 503/504 were `text/plain`. Every such local reply to a REST request is rewritten here
into the shape the frontend already parses for backend errors:

    {"code": <google.rpc.Code>, "message": "<Envoy's text>",
     "details": [{"@type": "type.googleapis.com/google.rpc.RequestInfo", "request_id": ...}]}

with the HTTP status kept. gRPC and gRPC-Web callers are left alone: for them Envoy turns a
local reply into a Trailers-Only response whose `grpc-message` is the reply's body, so a JSON
body there would only garble the message. A request is REST when its content type is not
`application/grpc*` (checked on the request headers as they are when the reply is sent), or
when the transcoder rewrote it (then its content type is `application/grpc`, but it records
the client's path in `x-envoy-original-path`, which the route config drops from clients).
"""

from __future__ import annotations

from typing import Any

# HTTP status of a local reply -> the google.rpc.Code a REST client reads in `code`, the
# inverse of the transcoder's mapping of backend errors where one exists (google/rpc/code.proto)
_CODE_OF_STATUS: dict[int, tuple[int, str]] = {
    400: (3, "INVALID_ARGUMENT"),
    401: (16, "UNAUTHENTICATED"),
    403: (7, "PERMISSION_DENIED"),
    404: (5, "NOT_FOUND"),
    405: (12, "UNIMPLEMENTED"),
    408: (4, "DEADLINE_EXCEEDED"),
    409: (10, "ABORTED"),
    # The services answer a message over their receive limit with RESOURCE_EXHAUSTED too.
    413: (8, "RESOURCE_EXHAUSTED"),
    429: (8, "RESOURCE_EXHAUSTED"),
    431: (3, "INVALID_ARGUMENT"),
    499: (1, "CANCELLED"),
    500: (13, "INTERNAL"),
    501: (12, "UNIMPLEMENTED"),
    502: (14, "UNAVAILABLE"),
    503: (14, "UNAVAILABLE"),
    504: (4, "DEADLINE_EXCEEDED"),
}
UNKNOWN_CODE = 2
# Envoy's own text where it has none worth showing (the rate limit filters' 429 is empty or
# a bare token): %LOCAL_REPLY_BODY% then reads this instead.
_MESSAGE_OF_STATUS: dict[int, str] = {
    429: "too many requests: retry after the number of seconds in the Retry-After header",
}
REQUEST_INFO_TYPE = "type.googleapis.com/google.rpc.RequestInfo"


def code_of_status(status: int) -> int:
    """The google.rpc.Code number a REST error reply with this HTTP status carries."""
    return _CODE_OF_STATUS.get(status, (UNKNOWN_CODE, "UNKNOWN"))[0]


def _status_filter(op: str, value: int) -> dict[str, Any]:
    return {
        "status_code_filter": {
            "comparison": {
                "op": op,
                # A runtime key is mandatory; none is ever set, so the default applies.
                "value": {"default_value": value, "runtime_key": f"loyalnest.local_reply.{value}"},
            }
        }
    }


def _rest_request_filter() -> dict[str, Any]:
    """Matches requests that are not (or no longer, after transcoding) native gRPC."""
    return {
        "or_filter": {
            "filters": [
                {
                    "header_filter": {
                        "header": {
                            "name": "content-type",
                            "string_match": {"prefix": "application/grpc"},
                            "invert_match": True,
                            # A GET carries no content type: that is REST too.
                            "treat_missing_header_as_empty": True,
                        }
                    }
                },
                {
                    "header_filter": {
                        "header": {"name": "x-envoy-original-path", "present_match": True}
                    }
                },
            ]
        }
    }


def _status_json(code: int) -> dict[str, Any]:
    return {
        "json_format": {
            "code": code,
            "message": "%LOCAL_REPLY_BODY%",
            "details": [{"@type": REQUEST_INFO_TYPE, "request_id": "%REQ(X-REQUEST-ID)%"}],
        }
    }


def _mapper(status_match: dict[str, Any], code: int, body: str | None) -> dict[str, Any]:
    mapper: dict[str, Any] = {
        "filter": {"and_filter": {"filters": [_rest_request_filter(), status_match]}},
        "body_format_override": _status_json(code),
    }
    if body is not None:
        mapper["body"] = {"inline_string": body}
    return mapper


def local_reply_config() -> dict[str, Any]:
    """The connection manager's `local_reply_config`: one mapper per known error status, then
    one for any other error status (code UNKNOWN); no top-level `body_format`, so replies that
    match no mapper (gRPC callers, successes such as CORS preflights) keep Envoy's body."""
    mappers = [
        _mapper(_status_filter("EQ", status), code, _MESSAGE_OF_STATUS.get(status))
        for status, (code, _) in _CODE_OF_STATUS.items()
    ]
    mappers.append(_mapper(_status_filter("GE", 400), UNKNOWN_CODE, None))
    return {"mappers": mappers}
