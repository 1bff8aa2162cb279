"""AdminCore's GDPR rules without I/O: Shopify's 30-day deadline, request ids, and how the
identifiers services report about a customer combine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loyalnest.platform.personal_data import CustomerRef, json_safe
from loyalnest.services.admin_core.domain import (
    DEADLINE,
    GdprRequest,
    RequestType,
    Source,
    Status,
    customer_id_problem,
)

CREATED = datetime(2026, 11, 1, tzinfo=UTC)


def request(status: Status) -> GdprRequest:
    return GdprRequest(
        "r-1", "m-1", RequestType.CUSTOMER_REDACT, "1", Source.SHOPIFY, status, (), CREATED, None
    )


def test_a_request_is_overdue_when_open_past_thirty_days() -> None:
    assert timedelta(days=30) == DEADLINE
    pending = request(Status.PENDING)
    assert pending.due_at == CREATED + timedelta(days=30)
    assert not pending.overdue(CREATED + timedelta(days=30))
    assert pending.overdue(CREATED + timedelta(days=30, seconds=1))
    assert not request(Status.COMPLETED).overdue(CREATED + timedelta(days=90))


def test_customer_ids() -> None:
    assert customer_id_problem("7390012230001") is None
    assert customer_id_problem("") and customer_id_problem("   ")
    assert customer_id_problem(" 1") and customer_id_problem("1\n")
    assert customer_id_problem("1" * 65)


def test_identifiers_merge_without_duplicates_or_blanks() -> None:
    first = CustomerRef("1", user_ids=("u-2",), emails=("a@example.org",))
    merged = first.merged(CustomerRef("", user_ids=("u-1", "u-2", ""), core_customer_ids=("c",)))
    assert merged == CustomerRef(
        "1", user_ids=("u-1", "u-2"), emails=("a@example.org",), core_customer_ids=("c",)
    )
    assert merged.merged(merged) == merged
    assert CustomerRef.from_proto(merged.to_proto()) == merged


def test_exports_hold_only_json() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    assert json_safe({"at": at, "raw": b"\x01", "big": 2**60, "n": [1, None]}) == {
        "at": "2026-01-02T00:00:00+00:00",
        "raw": "01",
        "big": str(2**60),
        "n": [1, None],
    }
