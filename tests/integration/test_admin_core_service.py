"""The AdminCore service against a real PostgreSQL: GDPR requests filed and read.

Health, reflection, HandleGDPRRequest / GetGDPRRequest / ListGDPRRequests / GetGDPRExport over
gRPC and as REST through a real Envoy (admin routes), and one merchant never seeing another's
requests. Carrying requests out across the mesh: test_gdpr_erasure.py. `ISOLATION` is its table
in the mesh-wide isolation test (test_tenant_isolation.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from loyalnest.gateway import Upstream
from loyalnest.gen.admin_core.v1 import admin_core_pb2 as pb
from loyalnest.gen.admin_core.v1 import admin_core_pb2_grpc
from loyalnest.gen.events.v1 import auth_pb2 as auth_events
from loyalnest.gen.events.v1 import core_pb2 as core_events
from loyalnest.platform import personal_data
from loyalnest.platform.events.envelope import ConsumedEvent, new_event
from loyalnest.platform.events.inbox import Handler
from loyalnest.platform.postgres import Database
from loyalnest.platform.server import RunningService
from loyalnest.services.admin_core import audit_log, consumers, events
from loyalnest.services.admin_core.audit_log import MeshAuditLog
from loyalnest.services.admin_core.service import (
    DATABASE,
    SERVICE_NAME,
    SPEC,
    AdminCoreSettings,
    vault,
)
from loyalnest.services.admin_core.store import GdprStore, MerchantDirectory
from tests.auth import merchant_headers, merchant_metadata, token
from tests.integration.conftest import serve_for_test, service_settings_for_tests, wait_for_health
from tests.integration.isolation import Case, Metadata, Table
from tests.integration.test_gateway_validate import Gateway, gateway_config, http, running_gateway

pytestmark = pytest.mark.integration

GDPR = "admin_core:gdpr"
Stub = admin_core_pb2_grpc.AdminCoreServiceStub
Served = tuple[RunningService, Stub]
HOLDERS = sorted(personal_data.HOLDERS)


@pytest.fixture
async def served(database_url: str) -> AsyncIterator[Served]:
    """The service, once SERVING (no service credential: requests are filed, not carried
    out), and a stub to it."""
    settings = service_settings_for_tests(AdminCoreSettings, database_url)
    async with serve_for_test(SPEC, settings, Stub) as running_service:
        yield running_service


@pytest.fixture
def stub(served: Served) -> Stub:
    return served[1]


async def file(
    stub: Stub,
    merchant: str,
    customer_id: str = "7390012230001",
    *,
    kind: int = pb.GDPR_REQUEST_TYPE_CUSTOMER_REDACT,
    key: str | None = None,
    permissions: tuple[str, ...] = (GDPR,),
) -> pb.GDPRRequest:
    response = await stub.HandleGDPRRequest(
        pb.HandleGDPRRequestRequest(
            type=kind, customer_id=customer_id, idempotency_key=key or uuid.uuid4().hex
        ),
        metadata=merchant_metadata(merchant, permissions),
    )
    request: pb.GDPRRequest = response.request
    return request


async def test_serves_health_and_reflection(served: Served) -> None:
    service, _ = served
    await wait_for_health(
        service.address, health_pb2.HealthCheckResponse.SERVING, service=SERVICE_NAME
    )
    async with grpc.aio.insecure_channel(service.address) as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        names = [
            entry.name
            async for response in reflection.ServerReflectionInfo(iter([request]))
            for entry in response.list_services_response.service
        ]
    assert SERVICE_NAME in names


async def test_files_a_request_with_a_step_per_holder(stub: Stub, merchant_id: str) -> None:
    filed = await file(stub, merchant_id, key="k-1")
    assert filed.status == pb.GDPR_REQUEST_STATUS_PENDING and filed.source == "admin"
    assert [step.service for step in filed.steps] == HOLDERS
    assert {step.status for step in filed.steps} == {pb.GDPR_REQUEST_STATUS_PENDING}
    assert filed.due_time.seconds - filed.create_time.seconds == 30 * 24 * 3600
    assert not filed.overdue
    # A retry with the same key is the first call's request; other fields are refused.
    assert (await file(stub, merchant_id, key="k-1")).request_id == filed.request_id
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await file(stub, merchant_id, "other", key="k-1")
    assert reused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    md = merchant_metadata(merchant_id, (GDPR,))
    got = await stub.GetGDPRRequest(
        pb.GetGDPRRequestRequest(request_id=filed.request_id), metadata=md
    )
    assert got.request.request_id == filed.request_id
    # Erasing a whole merchant by hand is a platform admin's: admin_core:gdpr is not enough.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await file(stub, merchant_id, "", kind=pb.GDPR_REQUEST_TYPE_SHOP_REDACT)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    shop = await file(
        stub,
        merchant_id,
        "",
        kind=pb.GDPR_REQUEST_TYPE_SHOP_REDACT,
        permissions=(GDPR, "admin_core:shop-redact"),
    )
    listed = await stub.ListGDPRRequests(pb.ListGDPRRequestsRequest(page_size=1), metadata=md)
    assert [r.request_id for r in listed.requests] == [shop.request_id]  # newest first
    rest = await stub.ListGDPRRequests(
        pb.ListGDPRRequestsRequest(page_size=1, page_token=listed.next_page_token), metadata=md
    )
    assert [r.request_id for r in rest.requests] == [filed.request_id]
    overdue = await stub.ListGDPRRequests(
        pb.ListGDPRRequestsRequest(overdue_only=True), metadata=md
    )
    assert not overdue.requests


async def test_exports_are_refused_until_ready(stub: Stub, merchant_id: str) -> None:
    md = merchant_metadata(merchant_id, (GDPR,))
    data = await file(stub, merchant_id, kind=pb.GDPR_REQUEST_TYPE_DATA_REQUEST)
    with pytest.raises(grpc.aio.AioRpcError) as pending:
        await stub.GetGDPRExport(pb.GetGDPRExportRequest(request_id=data.request_id), metadata=md)
    assert pending.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "EXPORT_NOT_READY" in str(pending.value.trailing_metadata())
    redact = await file(stub, merchant_id)
    with pytest.raises(grpc.aio.AioRpcError) as none:
        await stub.GetGDPRExport(pb.GetGDPRExportRequest(request_id=redact.request_id), metadata=md)
    assert none.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(
    ("kind", "customer_id", "email", "field"),
    [
        (pb.GDPR_REQUEST_TYPE_UNSPECIFIED, "1", "", "type"),
        (pb.GDPR_REQUEST_TYPE_CUSTOMER_REDACT, "", "", "customer_id"),
        (pb.GDPR_REQUEST_TYPE_DATA_REQUEST, " 1", "", "customer_id"),
        (pb.GDPR_REQUEST_TYPE_SHOP_REDACT, "1", "", "customer_id"),
        (pb.GDPR_REQUEST_TYPE_CUSTOMER_REDACT, "1", "not-an-email", "email"),
    ],
)
async def test_bad_requests_are_invalid_argument(
    stub: Stub, merchant_id: str, kind: int, customer_id: str, email: str, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await stub.HandleGDPRRequest(
            pb.HandleGDPRRequestRequest(
                type=kind, customer_id=customer_id, email=email, idempotency_key="k"
            ),
            metadata=merchant_metadata(merchant_id, (GDPR,)),
        )
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (invalid.value.details() or "")


async def test_needs_the_gdpr_permission(stub: Stub, merchant_id: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stub.ListGDPRRequests(
            pb.ListGDPRRequestsRequest(), metadata=merchant_metadata(merchant_id, ("core:read",))
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_merchant_never_sees_another_merchants_requests(stub: Stub) -> None:
    merchant_a, merchant_b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    filed = await file(stub, merchant_a, key="same-key")
    with pytest.raises(grpc.aio.AioRpcError) as hidden:
        await stub.GetGDPRRequest(
            pb.GetGDPRRequestRequest(request_id=filed.request_id),
            metadata=merchant_metadata(merchant_b, (GDPR,)),
        )
    assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
    # Idempotency keys are per merchant: B's call with A's key files B's own request.
    assert (await file(stub, merchant_b, key="same-key")).request_id != filed.request_id


# ---- merchants (GetMerchants), from Auth's and Core's events ------------------------------

MERCHANTS = "admin_core:merchants"


def consumed(merchant: str, payload: Message, at: datetime | None = None) -> ConsumedEvent:
    """An event as the consumer runner hands it to a handler (the broker path is the
    platform's, tested in test_events.py)."""
    event = new_event(merchant, payload, occurred_at=at)
    return ConsumedEvent(
        envelope=event.envelope,
        spec=event.spec,
        payload=payload,
        consumer=events.CONSUMER_GROUP,
        topic=event.spec.topic.name,
        partition=0,
        offset=0,
    )


@pytest.fixture
async def handlers(served: Served, database_url: str) -> AsyncIterator[dict[str, Handler]]:
    settings = service_settings_for_tests(AdminCoreSettings, database_url)
    database = Database(settings, DATABASE)
    await database.open()
    try:
        store = GdprStore(database, vault(settings), holders=HOLDERS, export_ttl=timedelta(days=1))
        yield consumers.handlers(store, MerchantDirectory(database), MeshAuditLog(database, None))
    finally:
        await database.close()


def settings_event(plan: str, version: int) -> core_events.ProgramSettingsUpdated:
    return core_events.ProgramSettingsUpdated(
        settings=core_events.ProgramSettings(
            version=version, plan=core_events.PlanLimits(plan=plan)
        )
    )


async def test_merchants_come_from_auth_and_core_events(
    stub: Stub, handlers: dict[str, Handler]
) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    created = consumed(a, auth_events.MerchantCreated(shop_domain="alpha-shop.myshopify.com"))
    assert await handlers["merchant.created"](created)
    assert not await handlers["merchant.created"](created)  # redelivered: once
    await handlers["merchant.created"](
        consumed(b, auth_events.MerchantCreated(shop_domain="beta-shop.myshopify.com"))
    )
    await handlers["program_settings.updated"](consumed(a, settings_event("plus", 2)))
    await handlers["program_settings.updated"](consumed(a, settings_event("free", 1)))  # late
    await handlers["merchant.uninstalled"](
        consumed(b, auth_events.MerchantUninstalled(shop_domain="beta-shop.myshopify.com"))
    )

    platform_admin = merchant_metadata_none((MERCHANTS,))
    listed = await stub.GetMerchants(pb.GetMerchantsRequest(), metadata=platform_admin)
    by_id = {m.merchant_id: m for m in listed.merchants}
    assert [m.merchant_id for m in listed.merchants] == [b, a]  # newest first
    assert (by_id[a].shop_domain, by_id[a].plan, by_id[a].status) == (
        "alpha-shop.myshopify.com",
        "plus",
        "installed",
    )
    assert by_id[b].status == "uninstalled" and by_id[b].uninstall_time.seconds > 0
    found = await stub.GetMerchants(pb.GetMerchantsRequest(query="ALPHA"), metadata=platform_admin)
    assert [m.merchant_id for m in found.merchants] == [a]
    none = await stub.GetMerchants(pb.GetMerchantsRequest(query="%"), metadata=platform_admin)
    assert not none.merchants  # LIKE's wildcards are text here
    page = await stub.GetMerchants(pb.GetMerchantsRequest(page_size=1), metadata=platform_admin)
    rest = await stub.GetMerchants(
        pb.GetMerchantsRequest(page_size=1, page_token=page.next_page_token),
        metadata=platform_admin,
    )
    assert [m.merchant_id for m in [*page.merchants, *rest.merchants]] == [b, a]

    await handlers["merchant.reinstalled"](
        consumed(b, auth_events.MerchantReinstalled(shop_domain="beta-shop.myshopify.com"))
    )
    # A merchant-level admin sees its own merchant only.
    own = await stub.GetMerchants(
        pb.GetMerchantsRequest(), metadata=merchant_metadata(b, (MERCHANTS,))
    )
    assert [(m.merchant_id, m.status) for m in own.merchants] == [(b, "installed")]
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stub.GetMerchants(pb.GetMerchantsRequest(), metadata=merchant_metadata(b, (GDPR,)))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


def merchant_metadata_none(permissions: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """A platform admin's token: bound to no merchant."""
    return (("authorization", f"Bearer {token(None, permissions)}"),)


@pytest.fixture
async def gateway(served: Served, tmp_path: Path) -> AsyncIterator[Gateway]:
    service, _ = served
    upstream = Upstream("admin_core", (SERVICE_NAME,), (("127.0.0.1", service.port),))
    async with running_gateway(gateway_config(upstream), tmp_path, {"admin_core": 1}) as gw:
        yield gw


async def test_admin_routes_through_the_gateway(gateway: Gateway, merchant_id: str) -> None:
    headers = merchant_headers(merchant_id, (GDPR,))
    created = await http(
        "POST",
        f"{gateway.url}/admin/v1/gdpr/requests",
        headers=headers,
        json_body={
            "type": "GDPR_REQUEST_TYPE_DATA_REQUEST",
            "customer_id": "7390012230001",
            "idempotency_key": "rest-1",
        },
    )
    assert created.status == 200, created.body
    request = created.json()["request"]
    assert request["status"] == "GDPR_REQUEST_STATUS_PENDING"
    url = f"{gateway.url}/admin/v1/gdpr/requests/{request['request_id']}"
    got = await http("GET", url, headers=headers)
    assert got.status == 200 and got.json()["request"] == request, got.body
    listed = await http("GET", f"{gateway.url}/admin/v1/gdpr/requests?page_size=5", headers=headers)
    assert [r["request_id"] for r in listed.json()["requests"]] == [request["request_id"]]
    not_ready = await http("GET", f"{url}/export", headers=headers)
    assert not_ready.status == 400, not_ready.body  # FAILED_PRECONDITION
    other = merchant_headers(f"other-{merchant_id}", (GDPR,))
    assert (await http("GET", url, headers=other)).status == 404
    assert (await http("GET", url)).status == 401
    forbidden = await http("GET", url, headers=merchant_headers(merchant_id, ("core:read",)))
    assert forbidden.status == 403, forbidden.body
    merchants = await http(
        "GET",
        f"{gateway.url}/admin/v1/merchants?query=x",
        headers=merchant_headers(merchant_id, ("admin_core:merchants",)),
    )
    assert merchants.status == 200 and merchants.json().get("merchants", []) == [], merchants.body


# ---- the mesh-wide isolation table (test_tenant_isolation.py) ---------------------------


async def _arrange(ch: grpc.aio.Channel, md: Metadata) -> dict[str, Any]:
    create = pb.HandleGDPRRequestRequest(
        type=pb.GDPR_REQUEST_TYPE_DATA_REQUEST,
        customer_id="b-customer-1",
        idempotency_key="key-b-gdpr",
    )
    request = (await Stub(ch).HandleGDPRRequest(create, metadata=md)).request
    return {"secrets": [request.request_id], "request": request, "create": create}


async def _snapshot(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    listed = await Stub(ch).ListGDPRRequests(pb.ListGDPRRequestsRequest(), metadata=md)
    return [(r.request_id, r.status, r.customer_id) for r in listed.requests]


async def _get_b_request(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    request_id = b["request"].request_id
    return await Stub(ch).GetGDPRRequest(
        pb.GetGDPRRequestRequest(request_id=request_id), metadata=md
    )


async def _get_b_export(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    request_id = b["request"].request_id
    return await Stub(ch).GetGDPRExport(pb.GetGDPRExportRequest(request_id=request_id), metadata=md)


async def _list(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    return await Stub(ch).ListGDPRRequests(pb.ListGDPRRequestsRequest(), metadata=md)


async def _list_merchants(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    return await Stub(ch).GetMerchants(pb.GetMerchantsRequest(), metadata=md)


async def _replay_b_request(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    # B's exact request, key included: A files a request of its own, never reaching B's.
    return await Stub(ch).HandleGDPRRequest(b["create"], metadata=md)


async def _seed_audit_logs(database_url: str, merchant_id: str) -> dict[str, Any]:
    """B's audit rows as audit_log.recorded events leave them (no RPC writes the log)."""
    log_id = str(uuid.uuid4())
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO admin_core.mesh_audit_logs (log_id, merchant_id, service, resource,"
            " action, actor, details, created_at)"
            " VALUES (%s, %s, 'roles', 'roles/b-secret-role', 'create', 'b-admin', '{}', now())",
            (log_id, merchant_id),
        )
    return {"secrets": [log_id, "b-secret-role"], "audit_merchant": merchant_id}


async def _audit_logs(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    return await Stub(ch).GetAuditLogs(pb.GetAuditLogsRequest(), metadata=md)


async def _audit_logs_of_b(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    where = pb.AuditLogFilter(merchant_id=b["audit_merchant"])
    return await Stub(ch).GetAuditLogs(pb.GetAuditLogsRequest(filter=where), metadata=md)


async def _audit_resource_of_b(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    # B's resource named exactly: the merchant scope still applies.
    where = pb.AuditLogFilter(resource="roles/b-secret-role")
    return await Stub(ch).GetAuditLogs(pb.GetAuditLogsRequest(filter=where), metadata=md)


async def _tail_of_b(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    where = pb.AuditLogFilter(merchant_id=b["audit_merchant"])
    call = Stub(ch).TailAuditLogs(pb.TailAuditLogsRequest(filter=where), metadata=md)
    try:
        return await asyncio.wait_for(call.read(), 10)
    finally:
        call.cancel()


ISOLATION = Table(
    arrange=_arrange,
    snapshot=_snapshot,
    seed=_seed_audit_logs,
    cases={
        "GetAuditLogs": [
            Case(_audit_logs, may_succeed=True),
            Case(_audit_resource_of_b, may_succeed=True),
            Case(_audit_logs_of_b),
        ],
        "TailAuditLogs": [Case(_tail_of_b)],
        "GetGDPRRequest": [Case(_get_b_request)],
        "GetGDPRExport": [Case(_get_b_export)],
        "ListGDPRRequests": [Case(_list, may_succeed=True)],
        "GetMerchants": [Case(_list_merchants, may_succeed=True)],
        # A's own request shows the customer id A sent: not a leak of B's data.
        "HandleGDPRRequest": [Case(_replay_b_request, may_succeed=True)],
    },
)


async def test_audit_rows_are_erased_only_by_a_shop_redaction_of_their_merchant(
    served: Served, database_url: str
) -> None:
    erased, kept = f"gone-{uuid.uuid4().hex[:8]}", f"kept-{uuid.uuid4().hex[:8]}"
    for merchant in (erased, kept):
        await _seed_audit_logs(database_url, merchant)
    async with await psycopg.AsyncConnection.connect(
        database_url, options="-c search_path=admin_core"
    ) as conn:
        async with conn.transaction():
            assert await audit_log.erase_merchant(conn, erased) == 1
            # The setting names one merchant: another's rows stay refused in the same transaction.
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                async with conn.transaction():
                    await conn.execute(
                        "DELETE FROM mesh_audit_logs WHERE merchant_id = %s", (kept,)
                    )
        # Nor is the table ever emptied at once.
        async with conn.transaction(force_rollback=True):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute("TRUNCATE mesh_audit_logs")
        cursor = await conn.execute(
            "SELECT merchant_id FROM mesh_audit_logs WHERE merchant_id IN (%s, %s)", (erased, kept)
        )
        assert await cursor.fetchall() == [(kept,)]
