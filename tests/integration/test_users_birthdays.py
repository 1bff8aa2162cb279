"""Customers' birthdays in Users: set with consent through Envoy (REST), kept sealed, listed
by day for services only (ListBirthdays, internal), exported and erased with the customer.
Real Users, PostgreSQL and Envoy."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import json_format

from loyalnest.gen.platform.v1 import personal_data_pb2, personal_data_pb2_grpc
from loyalnest.gen.users.v1 import users_pb2 as pb
from loyalnest.gen.users.v1 import users_pb2_grpc
from loyalnest.platform.server import RunningService
from loyalnest.services.users.service import SERVICE_NAME, SPEC
from tests.auth import merchant_headers, merchant_metadata
from tests.integration.conftest import serving
from tests.integration.test_gateway_validate import Gateway, behind_gateway, http
from tests.integration.test_personal_data_access import as_service
from tests.integration.test_users_service import users_settings

pytestmark = pytest.mark.integration

RW = ("users:read", "users:write")


@pytest.fixture
async def users(database_url: str) -> AsyncIterator[RunningService]:
    async with serving(SPEC, users_settings(database_url, None)) as service:
        yield service


@pytest.fixture
async def gateway(users: RunningService, tmp_path: Path) -> AsyncIterator[Gateway]:
    async with behind_gateway("users", SERVICE_NAME, users, tmp_path) as gateway:
        yield gateway


async def _set(gateway: Gateway, merchant_id: str, body: dict[str, object]) -> tuple[int, dict]:
    response = await http(
        "POST",
        f"{gateway.url}/v1/api/users/birthdays",
        headers=merchant_headers(merchant_id, RW),
        json_body={"idempotency_key": uuid.uuid4().hex, **body},
    )
    return response.status, response.json()


async def test_a_birthday_is_kept_only_with_consent_and_sealed(
    gateway: Gateway, users: RunningService, merchant_id: str, database_url: str
) -> None:
    headers = merchant_headers(merchant_id, RW)
    status, body = await _set(
        gateway,
        merchant_id,
        {"customer_id": "7390012230001", "birthday": {"month": 12, "day": 6, "year": 1990},
         "consent": True},
    )  # fmt: skip
    assert status == 200, body
    kept = body["birthday"]
    assert kept["customer_id"] == "7390012230001"
    assert kept["birthday"] == {"month": 12, "day": 6, "year": 1990}
    assert kept["consent_time"]
    got = await http("GET", f"{gateway.url}/v1/api/users/birthdays/7390012230001", headers=headers)
    assert got.status == 200 and got.json()["birthday"] == kept, got.body

    # Without consent nothing is kept; impossible dates are named field by field.
    for bad, fields in [
        ({"customer_id": "c-2", "birthday": {"month": 5, "day": 1}}, {"consent"}),
        ({"customer_id": "c-2", "consent": True}, {"birthday"}),
        ({"customer_id": "c-2", "birthday": {"month": 2, "day": 29, "year": 1991},
          "consent": True}, {"birthday.day"}),
        ({"customer_id": "c-2", "birthday": {"month": 13, "day": 1}, "consent": True},
         {"birthday.month"}),
        ({"customer_id": "c-2", "birthday": {"month": 1, "day": 1, "year": 1850},
          "consent": True}, {"birthday.year"}),
        ({"customer_id": "", "birthday": {"month": 1, "day": 1}, "consent": True},
         {"customer_id"}),
    ]:  # fmt: skip
        status, body = await _set(gateway, merchant_id, bad)
        assert status == 400, body
        (detail,) = body["details"]
        assert {v["field"] for v in detail["field_violations"]} == fields, body
    missing = await http("GET", f"{gateway.url}/v1/api/users/birthdays/c-2", headers=headers)
    assert missing.status == 404, missing.body

    # 29 February without a year is a birthday; a retry replays, the key reused differs.
    leap = {"customer_id": "c-3", "birthday": {"month": 2, "day": 29}, "consent": True,
            "idempotency_key": "leap-1"}  # fmt: skip
    first = await http(
        "POST", f"{gateway.url}/v1/api/users/birthdays", headers=headers, json_body=leap
    )
    again = await http(
        "POST", f"{gateway.url}/v1/api/users/birthdays", headers=headers, json_body=leap
    )
    assert first.status == again.status == 200 and first.json() == again.json(), first.body
    assert first.json()["birthday"]["birthday"] == {"month": 2, "day": 29, "year": 0}
    other = await http(
        "POST",
        f"{gateway.url}/v1/api/users/birthdays",
        headers=headers,
        json_body={**leap, "birthday": {"month": 3, "day": 1}},
    )
    assert other.status == 400, other.body

    # Another merchant sees none of it.
    foreign = await http(
        "GET",
        f"{gateway.url}/v1/api/users/birthdays/7390012230001",
        headers=merchant_headers(f"other-{merchant_id}", RW),
    )
    assert foreign.status == 404, foreign.body

    # At rest: no date and no day in clear, and the audit rows name neither the customer.
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, options="-c search_path=users"
    ) as conn:
        rows = await (
            await conn.execute(
                "SELECT birthday_ciphertext, day_index FROM customer_birthdays"
                " WHERE merchant_id = %s",
                (merchant_id,),
            )
        ).fetchall()
        assert len(rows) == 2
        for sealed, index in rows:
            for clear in (b"1990", b"12-06", b"02-29", b"--"):
                assert clear not in bytes(sealed) and clear not in bytes(index)
        audit = await (
            await conn.execute(
                "SELECT details::text FROM audit_logs WHERE entity_type = 'customer_birthdays'"
            )
        ).fetchall()
        assert audit and not any("7390012230001" in text or "1990" in text for (text,) in audit)

    # Consent withdrawn: the birthday goes.
    status, body = await _set(
        gateway, merchant_id, {"customer_id": "7390012230001", "consent": False}
    )
    assert status == 200 and "birthday" not in body, body
    gone = await http("GET", f"{gateway.url}/v1/api/users/birthdays/7390012230001", headers=headers)
    assert gone.status == 404, gone.body


async def _set_grpc(
    stub: users_pb2_grpc.UsersServiceStub, merchant_id: str, customer: str, month: int, day: int
) -> None:
    await stub.SetCustomerBirthday(
        pb.SetCustomerBirthdayRequest(
            customer_id=customer,
            birthday=pb.Birthday(month=month, day=day),
            consent=True,
            idempotency_key=uuid.uuid4().hex,
        ),
        metadata=merchant_metadata(merchant_id, RW),
    )


async def test_birthdays_by_day_for_services_only(
    users: RunningService, gateway: Gateway, merchant_id: str
) -> None:
    async with grpc.aio.insecure_channel(users.address) as channel:
        stub = users_pb2_grpc.UsersServiceStub(channel)
        for customer, (month, day) in {
            "a": (12, 6), "b": (2, 29), "c": (2, 28), "d": (12, 7), "e": (12, 6), "f": (12, 6),
        }.items():  # fmt: skip
            await _set_grpc(stub, merchant_id, customer, month, day)
        await _set_grpc(stub, f"other-{merchant_id}", "z", 12, 6)
        points = as_service(merchant_id, ("users:birthdays",), audience="users")

        async def celebrating(year: int, month: int, day: int, size: int = 2) -> list[str]:
            found: list[str] = []
            token = ""
            while True:
                page = await stub.ListBirthdays(
                    pb.ListBirthdaysRequest(
                        year=year, month=month, day=day, page_size=size, page_token=token
                    ),
                    metadata=points,
                )
                found += page.customer_ids
                token = page.next_page_token
                if not token:
                    return found

        assert await celebrating(2026, 12, 6) == ["a", "e", "f"]  # paged two by two
        assert await celebrating(2026, 2, 28) == ["b", "c"]  # no 29 February in 2026
        assert await celebrating(2028, 2, 28) == ["c"]
        assert await celebrating(2028, 2, 29) == ["b"]
        assert await celebrating(2026, 1, 1) == []

        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await stub.ListBirthdays(
                pb.ListBirthdaysRequest(year=2026, month=2, day=30), metadata=points
            )
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # A merchant's own token, whatever it holds, and a service token without the grant.
        for metadata in (
            merchant_metadata(merchant_id, ("users:*", "users:birthdays")),
            as_service(merchant_id, ("users:read",), audience="users"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ListBirthdays(
                    pb.ListBirthdaysRequest(year=2026, month=12, day=6), metadata=metadata
                )
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # No REST route reaches it through the gateway.
    routed = await http(
        "POST",
        f"{gateway.url}/loyalnest.users.v1.UsersService/ListBirthdays",
        headers={**merchant_headers(merchant_id, ("users:birthdays",)),
                 "content-type": "application/json"},
        json_body={"year": 2026, "month": 12, "day": 6},
    )  # fmt: skip
    assert routed.status in (403, 404), routed.body


async def test_the_birthday_is_exported_and_erased_with_the_customer(
    users: RunningService, merchant_id: str
) -> None:
    """Through the platform's personal-data contract, as AdminCore calls it."""
    async with grpc.aio.insecure_channel(users.address) as channel:
        stub = users_pb2_grpc.UsersServiceStub(channel)
        await _set_grpc(stub, merchant_id, "7390012230001", 12, 6)
        await _set_grpc(stub, merchant_id, "7390012230002", 1, 2)
        contract = personal_data_pb2_grpc.PersonalDataServiceStub(channel)
        admin = as_service(merchant_id)

        async def export(customer: str) -> dict[str, Any]:
            response = await contract.ExportCustomer(
                personal_data_pb2.ExportCustomerRequest(
                    customer=personal_data_pb2.CustomerRef(shopify_customer_id=customer)
                ),
                metadata=admin,
            )
            return json_format.MessageToDict(response.data)

        async def erase(customer: str) -> int:
            response = await contract.EraseCustomer(
                personal_data_pb2.EraseCustomerRequest(
                    customer=personal_data_pb2.CustomerRef(shopify_customer_id=customer)
                ),
                metadata=admin,
            )
            return int(response.records)

        assert (await export("7390012230001"))["birthday"]["birthday"] == "--12-06"
        assert await erase("7390012230001") == 1
        assert await erase("7390012230001") == 0
        assert await export("7390012230001") == {}
        # The other customer's stays until the merchant is erased.
        assert await export("7390012230002")
        await contract.EraseMerchant(personal_data_pb2.EraseMerchantRequest(), metadata=admin)
        assert await export("7390012230002") == {}
