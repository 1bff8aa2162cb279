"""Rules of the Event Tracking service, without I/O.

What an analytics event may carry (names, limits, the allow-list of properties per event
type), how whom it is about becomes a pseudonym, and what a queued task is.

No personal data leaves for PostHog: the distinct id PostHog gets is an HMAC of the merchant
and the id under the service's pseudonym key (the same person is one PostHog person per
merchant, never linkable across merchants or back to the id without the key), and an event
keeps only the properties allowed for its name; a text value that looks like an e-mail
address or a phone number is dropped even where its key is allowed.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from loyalnest.platform.errors import FieldViolation, NotFound

MAX_EVENTS_PER_BATCH = 100
MAX_PROPERTIES = 50
MAX_PROPERTIES_JSON_BYTES = 16 * 1024
MAX_PROPERTY_KEY_LENGTH = 64
MAX_TEXT_VALUE_LENGTH = 1000
MAX_DISTINCT_ID_LENGTH = 128
# A client's clock may run ahead a little; an event far in the future is a bug.
MAX_CLOCK_SKEW = timedelta(hours=1)
EVENT_NAME_RE = re.compile(r"^[a-z$][a-z0-9_.:$-]{0,63}$")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# Seven or more digits with the usual phone punctuation: a phone number, not an amount.
_PHONE_RE = re.compile(r"^\+?[\d\s().-]{7,}$")
_NAMESPACE = uuid.UUID("6f1d2e4a-6a53-4c55-9d4e-2c1b5e0f9a31")

# Properties any event may carry: what helps analysis and identifies no one.
COMMON_PROPERTIES = frozenset(
    {"source", "page_type", "widget", "locale", "currency", "plan", "$lib", "$lib_version"}
)
# Event name -> the properties it may carry besides the common ones. An event name not here
# keeps the common ones only: a merchant's integration cannot send anything else by naming
# its event differently.
ALLOWED_PROPERTIES: Mapping[str, frozenset[str]] = {
    # From domain events (consumers.py).
    "points_earned": frozenset({"points", "balance_after", "lifetime_earned_after", "reason_kind"}),
    "referral_created": frozenset({"channel"}),
    "user_created": frozenset({"kind"}),
    "role_assigned": frozenset({"role_id"}),
    "rfm_updated": frozenset({"segment", "previous_segment"}),
    "notification_failed": frozenset({"provider", "template_id"}),
    # From the storefront widget and the admin.
    "widget_opened": frozenset({"trigger"}),
    "reward_viewed": frozenset({"reward_id", "points_cost"}),
    "reward_redeem_clicked": frozenset({"reward_id", "points_cost"}),
    "referral_link_copied": frozenset({"channel"}),
    "settings_saved": frozenset({"section"}),
    "$pageview": frozenset({"page_type"}),
}


class Source(enum.StrEnum):
    CLIENT = "client"  # POST /v1/api/events
    DOMAIN = "domain"  # a domain event from Kafka
    TASK = "task"  # CreateTask


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"


class Queued(enum.Enum):
    """What queueing an event did (TaskStore.queue_in)."""

    NEW = "new"
    DUPLICATE = "duplicate"
    # Its person was erased (GDPR): dropped, nothing is shipped about them any more.
    ERASED = "erased"


@dataclass(frozen=True)
class Counts:
    """A batch's outcomes, in Queued's order."""

    new: int
    duplicates: int
    erased: int


@dataclass(frozen=True)
class NewTask:
    """An event ready to queue: already pseudonymous and allow-listed."""

    task_id: str  # also its uuid at PostHog
    merchant_id: str
    event_type: str
    source: Source
    subject: str  # the pseudonymous distinct id
    properties: dict[str, Any]
    occurred_at: datetime


@dataclass(frozen=True)
class Task:
    task_id: str
    merchant_id: str
    event_type: str
    source: str
    subject: str
    status: TaskStatus
    properties: dict[str, Any]
    occurred_at: datetime
    attempts: int
    last_error: str | None
    created_at: datetime
    completed_at: datetime | None


class TaskNotFound(NotFound):
    def __init__(self, task_id: str) -> None:
        super().__init__("task", task_id)


@dataclass(frozen=True)
class Pseudonyms:
    """Distinct ids as PostHog sees them: HMAC-SHA256 of the merchant and the id under `key`
    (fixed for the life of the data: a new key makes every person new at PostHog)."""

    key: bytes

    def of(self, merchant_id: str, distinct_id: str) -> str:
        message = f"{merchant_id}\0{distinct_id}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()[:32]

    def merchant(self, merchant_id: str) -> str:
        """The distinct id of events about the merchant itself (no customer)."""
        return self.of(merchant_id, "")


def client_task_id(merchant_id: str, client_uuid: str) -> str:
    """The task (and PostHog uuid) of a client event: derived, so a resend finds it again, and
    merchant-bound, so one merchant's uuid never dedupes another's event at PostHog."""
    return str(uuid.uuid5(_NAMESPACE, f"{merchant_id}\0{client_uuid.lower()}"))


def event_name_problem(name: str) -> str | None:
    if not name:
        return "is required"
    if not EVENT_NAME_RE.match(name):
        return "must be 1-64 of a-z, 0-9, _ . : - $, starting with a letter or $"
    return None


def distinct_id_problem(distinct_id: str, *, required: bool = True) -> str | None:
    if not distinct_id.strip():
        return "is required" if required else None
    if len(distinct_id) > MAX_DISTINCT_ID_LENGTH or not distinct_id.isprintable():
        return f"must be at most {MAX_DISTINCT_ID_LENGTH} printable characters"
    return None


def timestamp_problem(occurred_at: datetime, now: datetime) -> str | None:
    if occurred_at > now + MAX_CLOCK_SKEW:
        return "must not be more than an hour ahead"
    return None


@dataclass
class Properties:
    """An event's properties after the allow-list, and how many were dropped."""

    kept: dict[str, Any] = field(default_factory=dict)
    dropped: int = 0


def property_violations(field_name: str, properties: Mapping[str, Any]) -> list[FieldViolation]:
    """What makes `properties` unacceptable whatever the event (sizes and value types)."""
    problems: list[FieldViolation] = []
    if len(properties) > MAX_PROPERTIES:
        problems.append(FieldViolation(field_name, f"must have at most {MAX_PROPERTIES} entries"))
    size = len(json.dumps(properties, separators=(",", ":")).encode())
    if size > MAX_PROPERTIES_JSON_BYTES:
        problems.append(
            FieldViolation(field_name, f"must be at most {MAX_PROPERTIES_JSON_BYTES} bytes as JSON")
        )
    for key, value in properties.items():
        where = f"{field_name}.{key}"
        if len(key) > MAX_PROPERTY_KEY_LENGTH or not key.isprintable():
            problems.append(
                FieldViolation(
                    where, f"key must be at most {MAX_PROPERTY_KEY_LENGTH} printable characters"
                )
            )
        elif isinstance(value, dict | list):
            problems.append(FieldViolation(where, "must be text, a number, a boolean or null"))
        elif isinstance(value, str) and len(value) > MAX_TEXT_VALUE_LENGTH:
            problems.append(
                FieldViolation(where, f"must be at most {MAX_TEXT_VALUE_LENGTH} characters")
            )
    return problems


def _looks_personal(value: Any) -> bool:
    return isinstance(value, str) and bool(
        _EMAIL_RE.search(value) or _PHONE_RE.match(value.strip())
    )


def _plain_number(value: Any) -> Any:
    # JSON (and protobuf's Struct) numbers are doubles: 120.0 points are 120.
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def allowed(event_type: str, properties: Mapping[str, Any]) -> Properties:
    """The properties `event_type` may carry to PostHog; the rest are counted as dropped."""
    allowed_keys = COMMON_PROPERTIES | ALLOWED_PROPERTIES.get(event_type, frozenset())
    result = Properties()
    for key, value in properties.items():
        if key in allowed_keys and not _looks_personal(value):
            result.kept[key] = _plain_number(value)
        else:
            result.dropped += 1
    return result


def reason_kind(reason: str) -> str:
    """The kind of a ledger reason without its ids ("order:1001" -> "order")."""
    kind = reason.split(":", 1)[0].strip().lower()
    return kind if EVENT_NAME_RE.match(kind) else "other"
