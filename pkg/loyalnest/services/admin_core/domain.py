"""Rules of the AdminCore service, without I/O: GDPR requests and their per-service steps.

A request is about one customer (data request, customer redaction) or a whole merchant
(shop redaction). It is carried out by every service holding customer data
(loyalnest.platform.personal_data.HOLDERS), one step each: pending until that service has
answered, then completed; the request completes when all its steps have. Shopify gives 30
days (`DEADLINE`): an open request past it is overdue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from loyalnest.platform.errors import FailedPrecondition, NotFound

DEADLINE = timedelta(days=30)
# Shopify's ids are decimal digits; ours allow what an admin may paste, within reason.
MAX_CUSTOMER_ID_LENGTH = 64


class RequestType(StrEnum):
    DATA_REQUEST = "data_request"
    CUSTOMER_REDACT = "customer_redact"
    SHOP_REDACT = "shop_redact"

    @property
    def about_a_customer(self) -> bool:
        return self is not RequestType.SHOP_REDACT


# Shopify's webhook topics -> the request each files.
TOPICS: dict[str, RequestType] = {
    "customers/data_request": RequestType.DATA_REQUEST,
    "customers/redact": RequestType.CUSTOMER_REDACT,
    "shop/redact": RequestType.SHOP_REDACT,
}


class Status(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"


class Source(StrEnum):
    SHOPIFY = "shopify"
    ADMIN = "admin"


@dataclass(frozen=True)
class Step:
    service: str
    status: Status
    records: int
    attempts: int
    last_error: str
    completed_at: datetime | None


@dataclass(frozen=True)
class GdprRequest:
    request_id: str
    merchant_id: str
    type: RequestType
    # Shopify's customer id while the request is open; None for a shop redaction and once a
    # redaction completed.
    customer_id: str | None
    source: Source
    status: Status
    steps: tuple[Step, ...]
    created_at: datetime
    completed_at: datetime | None

    @property
    def due_at(self) -> datetime:
        return self.created_at + DEADLINE

    def overdue(self, now: datetime) -> bool:
        return self.status is Status.PENDING and now > self.due_at


@dataclass(frozen=True)
class Merchant:
    merchant_id: str
    shop_domain: str
    plan: str
    status: str
    created_at: datetime
    uninstalled_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class NewRequest:
    type: RequestType
    customer_id: str | None
    source: Source
    # What the request brought beyond the id (an admin's email of the customer).
    emails: tuple[str, ...] = ()


@dataclass(frozen=True)
class Export:
    request_id: str
    customer_id: str
    package: dict[str, object]
    created_at: datetime
    expires_at: datetime


class GdprRequestNotFound(NotFound):
    def __init__(self, request_id: str) -> None:
        super().__init__("gdpr_request", request_id)


class ExportNotReady(FailedPrecondition):
    def __init__(self, request_id: str) -> None:
        super().__init__(
            f"the export of request {request_id} is being assembled; ask again later",
            violation_type="EXPORT_NOT_READY",
            subject=f"gdpr_request/{request_id}",
        )


class ExportExpired(FailedPrecondition):
    def __init__(self, request_id: str) -> None:
        super().__init__(
            f"the export of request {request_id} expired and was deleted; file a new data request",
            violation_type="EXPORT_EXPIRED",
            subject=f"gdpr_request/{request_id}",
        )


class NotADataRequest(FailedPrecondition):
    def __init__(self, request_id: str) -> None:
        super().__init__(
            f"request {request_id} is no data request: it has no export",
            violation_type="NO_EXPORT",
            subject=f"gdpr_request/{request_id}",
        )


def customer_id_problem(customer_id: str) -> str | None:
    if not customer_id.strip():
        return "is required for a customer's request"
    if len(customer_id) > MAX_CUSTOMER_ID_LENGTH or not customer_id.isprintable():
        return f"must be at most {MAX_CUSTOMER_ID_LENGTH} printable characters"
    if customer_id != customer_id.strip():
        return "must not start or end with spaces"
    return None
