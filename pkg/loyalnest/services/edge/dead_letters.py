"""Whose personal data a dead letter may hold: the customer a signed but unusable body names.

A dead letter is a body the edge could not parse (orjson, strictly): not JSON, truncated,
invalid UTF-8, integers beyond 64 bits. It is sealed under the key of the customer it names
(crypto-shredding, like webhook.received's `customer_data`: erasing the customer makes it
unreadable, backups included), so the customer is looked for leniently: the standard library's
JSON parser with invalid bytes replaced, else a search of the raw bytes where Shopify puts the
customer's id (an order's or privacy request's `"customer": {"id": ...}`, a customer body's
first `"id"`). A body that names no customer that way (garbage, cut before the customer) stays
sealed under the master key: it is dropped by the retention purge (14 days, inside the 30 days
Shopify gives a redaction) and by `shop/redact`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

# `"customer": {... "id": 123` before any nested object: the order's customer, not a line's.
_CUSTOMER_OBJECT_ID = re.compile(rb'"customer"\s*:\s*\{[^{}]*?"id"\s*:\s*"?(\d+)')
# A customer body's own id, its first key as Shopify sends it.
_FIRST_ID = re.compile(rb'^\s*\{\s*"id"\s*:\s*"?(\d+)')
CUSTOMER_TOPICS = frozenset({"customers/create", "customers/update"})


def customer_named(topic: str, body: bytes) -> str | None:
    """Shopify's id of the customer `body` is about, when it can be told; else None."""
    try:
        payload = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        payload = None
    if isinstance(payload, Mapping):
        return _from_payload(topic, payload)
    pattern = _FIRST_ID if topic in CUSTOMER_TOPICS else _CUSTOMER_OBJECT_ID
    found = pattern.search(body)
    return found.group(1).decode() if found else None


def _from_payload(topic: str, payload: Mapping[str, Any]) -> str | None:
    if topic in CUSTOMER_TOPICS:
        return _id(payload.get("id"))
    customer = payload.get("customer")
    return _id(customer.get("id")) if isinstance(customer, Mapping) else None


def _id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = str(value).strip()
    return text if text.isdigit() else None
