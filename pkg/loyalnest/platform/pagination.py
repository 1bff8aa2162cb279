"""Opaque page tokens and page-size capping for List RPCs."""

from __future__ import annotations

import base64
import binascii
import json

from loyalnest.platform.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument.for_field("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_page_token(scope: str, position: int) -> str:
    """A token that resumes after `position`, valid only for the same query `scope`."""
    raw = json.dumps({"s": scope, "p": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, scope: str) -> int | None:
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position = data["p"]
        if data["s"] != scope or not isinstance(position, int):
            raise ValueError("token belongs to another query")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidArgument.for_field(
            "page_token", "is not a page token returned for this query"
        ) from exc
    return position
