"""Opaque page tokens and page-size capping for List RPCs."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

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
