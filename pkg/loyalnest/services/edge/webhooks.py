"""Shopify webhook deliveries: what a delivery is, and whether Shopify signed it.

Signing (DESIGN §7): `X-Shopify-Hmac-SHA256` is the base64 HMAC-SHA256 of the raw body under
the app's client secret, verified by platform/signatures.py over the exact bytes received,
under any of the configured secrets, so a secret rotation loses no delivery.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from loyalnest.platform.errors import FieldViolation, InvalidArgument, Unauthenticated
from loyalnest.platform.signatures import MalformedSignature, hmac_sha256_base64, matches_any

# The topics the services consume, plus the three GDPR topics every public app must accept.
TOPICS = frozenset(
    {
        "orders/create",
        "orders/paid",
        "orders/updated",
        "orders/cancelled",
        "refunds/create",
        "customers/create",
        "customers/update",
        "app/uninstalled",
        # Shopify Billing: a paid plan's subscription changed status (Core applies it).
        "app_subscriptions/update",
        # The catalogue (Products).
        "products/create",
        "products/update",
        "products/delete",
        "customers/data_request",
        "customers/redact",
        "shop/redact",
    }
)
# fullmatch only: `$` also matches before a final newline.
SHOP_DOMAIN_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9\-_]*\.myshopify\.com")
# Shopify's ids are numeric or GUIDs; anything longer is not from Shopify.
MAX_ID_LENGTH = 128

HMAC_HEADER = "x-shopify-hmac-sha256"
SHOP_HEADER = "x-shopify-shop-domain"
TOPIC_HEADER = "x-shopify-topic"
EVENT_ID_HEADER = "x-shopify-event-id"
WEBHOOK_ID_HEADER = "x-shopify-webhook-id"
TRIGGERED_AT_HEADER = "x-shopify-triggered-at"
# What a dead letter keeps of the request's headers (not the signature: it proves nothing
# once stored, and the body is kept anyway).
KEPT_HEADERS = (
    SHOP_HEADER,
    TOPIC_HEADER,
    EVENT_ID_HEADER,
    WEBHOOK_ID_HEADER,
    TRIGGERED_AT_HEADER,
    "x-shopify-api-version",
    "content-type",
)


class BadSignature(Unauthenticated):
    def __init__(self, reason: str) -> None:
        super().__init__(f"webhook signature rejected: {reason}")


def signature(body: bytes, secret: str) -> str:
    """The X-Shopify-Hmac-SHA256 value Shopify sends for `body`."""
    return hmac_sha256_base64(secret.encode(), body)


def verify_signature(body: bytes, header: str | None, secrets: Iterable[str]) -> None:
    """Raises BadSignature unless `header` is the signature of `body` under one of `secrets`."""
    if not header:
        raise BadSignature(f"missing {HMAC_HEADER} header")
    try:
        matched = matches_any(body, header, (secret.encode() for secret in secrets))
    except MalformedSignature:
        raise BadSignature(f"{HMAC_HEADER} is not base64") from None
    if not matched:
        raise BadSignature("the body's HMAC does not match")


@dataclass(frozen=True)
class Delivery:
    """One verified-or-not webhook request, as the ingress sees it."""

    topic: str
    shop_domain: str
    event_id: str
    webhook_id: str
    triggered_at: datetime | None
    headers: Mapping[str, str]
    body: bytes

    @classmethod
    def parse(cls, resource: str, action: str, headers: Mapping[str, str], body: bytes) -> Delivery:
        """Validates the topic and Shopify's headers; INVALID_ARGUMENT names each problem."""
        topic = f"{resource}/{action}"
        violations: list[FieldViolation] = []
        if topic not in TOPICS:
            violations.append(
                FieldViolation("topic", f"{topic!r} is not one of {', '.join(sorted(TOPICS))}")
            )
        # Required and equal to the path: Shopify always sends it, and a delivery whose path
        # and header disagree was not routed by Shopify. Neither is signed, though: the body
        # must fit the topic as well (platform/shopify_payloads.py).
        header_topic = headers.get(TOPIC_HEADER, "").strip()
        if not header_topic:
            violations.append(FieldViolation(TOPIC_HEADER, "is required"))
        elif header_topic != topic:
            violations.append(
                FieldViolation(
                    TOPIC_HEADER, f"{header_topic!r} does not match the path's {topic!r}"
                )
            )
        shop = headers.get(SHOP_HEADER, "").strip().lower()
        if not shop:
            violations.append(FieldViolation(SHOP_HEADER, "is required"))
        elif not SHOP_DOMAIN_RE.fullmatch(shop):
            violations.append(FieldViolation(SHOP_HEADER, "must be a *.myshopify.com domain"))
        webhook_id = headers.get(WEBHOOK_ID_HEADER, "").strip()
        if not webhook_id or len(webhook_id) > MAX_ID_LENGTH:
            violations.append(FieldViolation(WEBHOOK_ID_HEADER, "is required"))
        # Event ids name the event across redeliveries; Shopify sends one with every webhook,
        # but a delivery without one is still deduplicated, by its webhook id.
        event_id = headers.get(EVENT_ID_HEADER, "").strip() or webhook_id
        if len(event_id) > MAX_ID_LENGTH:
            violations.append(FieldViolation(EVENT_ID_HEADER, "is too long"))
        triggered_at = _parse_time(headers.get(TRIGGERED_AT_HEADER))
        if headers.get(TRIGGERED_AT_HEADER) and triggered_at is None:
            violations.append(FieldViolation(TRIGGERED_AT_HEADER, "must be an ISO 8601 time"))
        if violations:
            raise InvalidArgument("invalid Shopify webhook", violations)
        return cls(
            topic=topic,
            shop_domain=shop,
            event_id=event_id,
            webhook_id=webhook_id,
            triggered_at=triggered_at,
            headers={name: headers[name] for name in KEPT_HEADERS if name in headers},
            body=body,
        )


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        stamp = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


class UnusableBody(ValueError):
    """A signed body the consumers could not use: kept as a dead letter."""


def parse_body(body: bytes) -> dict[str, Any]:
    try:
        # orjson: a third of json's CPU on an order. Stricter on what no Shopify body holds
        # (integers beyond 64 bits, NaN, invalid UTF-8): such a body is unusable here too.
        payload = orjson.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnusableBody(f"body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise UnusableBody(f"body is JSON {type(payload).__name__}, not an object")
    return payload
