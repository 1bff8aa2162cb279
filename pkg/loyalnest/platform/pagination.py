"""Opaque page tokens and page-size capping for List RPCs.

A token is its query's scope and a position, signed (HMAC-SHA256 under
LOYALNEST_PAGE_TOKEN_KEY, `set_signing_key`): a client can neither forge a position nor move
a token to another scope, and whatever it sends instead is INVALID_ARGUMENT, never an error
of the database (a negative or huge offset once reached PostgreSQL and came back INTERNAL).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from loyalnest.platform.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# Positions are offsets or sequence numbers, PostgreSQL bigints.
MAX_POSITION = 2**63 - 1
_MAC_BYTES = 16
# Without LOYALNEST_PAGE_TOKEN_KEY (development): tokens are still validated strictly, but
# anyone reading this could sign one for a scope of their own (never another's: the scope is
# the caller's query, merchant included).
_DEVELOPMENT_KEY = b"loyalnest-development-page-tokens"
_signing_key = _DEVELOPMENT_KEY


def set_signing_key(key: bytes | None) -> None:
    """The process' page-token key (every replica of a service needs the same one)."""
    global _signing_key
    _signing_key = key or _DEVELOPMENT_KEY


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode())


def _mac(payload: bytes) -> bytes:
    return hmac.new(_signing_key, payload, hashlib.sha256).digest()[:_MAC_BYTES]


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument.for_field("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_page_token(scope: str, position: int) -> str:
    """A token that resumes after `position`, valid only for the same query `scope`."""
    if not 0 <= position <= MAX_POSITION:
        raise ValueError(f"page position {position} out of range")
    payload = json.dumps({"s": scope, "p": position}, separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_mac(payload))}"


def decode_page_token(token: str, scope: str) -> int | None:
    if not token:
        return None
    try:
        encoded_payload, _, encoded_mac = token.partition(".")
        payload = _unb64(encoded_payload)
        if not hmac.compare_digest(_unb64(encoded_mac), _mac(payload)):
            raise ValueError("not signed by this service")
        data = json.loads(payload)
        position = data["p"]
        if data["s"] != scope:
            raise ValueError("token belongs to another query")
        # bool is an int to Python; neither it nor a float is a position.
        if type(position) is not int or not 0 <= position <= MAX_POSITION:
            raise ValueError("position out of range")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidArgument.for_field(
            "page_token", "is not a page token returned for this query"
        ) from exc
    return position


T = TypeVar("T")


async def keyset_page(
    *,
    page_size_requested: int,
    page_token: str,
    scope: str,
    fetch: Callable[[int, int | None], Awaitable[Sequence[T]]],
    position: Callable[[T], int],
) -> tuple[list[T], str]:
    """One page of a keyset-paginated listing and the token for the next one.

    `fetch(limit, after)` returns up to `limit` rows past position `after` (None: from the
    start) in listing order; `scope` binds tokens to the query (e.g. merchant and customer),
    so a token from another merchant's listing is rejected rather than obeyed.
    """
    limit = page_size(page_size_requested)
    after = decode_page_token(page_token, scope)
    # One extra row tells whether another page exists without a second query.
    rows = await fetch(limit + 1, after)
    page = list(rows[:limit])
    more = len(rows) > limit
    return page, encode_page_token(scope, position(page[-1])) if more else ""
