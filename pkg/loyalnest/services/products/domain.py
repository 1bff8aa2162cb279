"""Rules of the Products service, without I/O.

What an item is, and what a valid one looks like.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from loyalnest.platform.errors import NotFound

MAX_NAME_LENGTH = 200
# Printable, no leading/trailing space: names are shown in lists and audit logs.
NAME_RE = re.compile(r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$")


@dataclass(frozen=True)
class Item:
    item_id: str
    merchant_id: str
    name: str
    created_at: datetime


class ItemNotFound(NotFound):
    def __init__(self, item_id: str) -> None:
        super().__init__("item", item_id)


def name_problem(name: str) -> str | None:
    """Why `name` cannot name an item, or None when it can."""
    if not name.strip():
        return "is required"
    if len(name) > MAX_NAME_LENGTH or not NAME_RE.match(name):
        return (
            f"must be at most {MAX_NAME_LENGTH} printable characters,"
            " without leading or trailing spaces"
        )
    return None
