"""Audit logs across the mesh (issue 18): every audited service's rows reach AdminCore.

Real processes: PostgreSQL, Valkey, a Kafka-protocol broker (tansu), Envoy, and the real Users,
Roles, Core, Points and AdminCore services with events on. Changes made through each service's
RPCs become audit rows (the database trigger), are shipped through the outbox
(platform/audit/shipper.py) and consumed by AdminCore; the test reads them as a merchant's
admin does: GET /admin/v1/logs through Envoy, newest first, per-resource order kept, filters
and paging, and the live tail (NDJSON) emitting a row made after it opened. Also: rows are
immutable, and a merchant-bound admin never sees another merchant's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import client as httpclient
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import grpc
import psycopg
import pytest
from google.protobuf import field_mask_pb2

from loyalnest.gateway import Upstream
from loyalnest.gen.admin_core.v1 import admin_core_pb2
from loyalnest.gen.core.v1 import core_pb2, core_pb2_grpc
from loyalnest.gen.events.v1 import core_pb2 as core_events
from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.gen.roles.v1 import roles_pb2, roles_pb2_grpc
from loyalnest.gen.users.v1 import users_pb2, users_pb2_grpc
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.errors import FailedPrecondition, InvalidArgument
from loyalnest.platform.postgres import Database
from loyalnest.services.admin_core.audit_log import Filter, MeshAuditLog, stream_client, stream_key
from loyalnest.services.admin_core.service import DATABASE as ADMIN_DATABASE
from loyalnest.services.admin_core.service import SERVICE_NAME as ADMIN_CORE_SERVICE
from loyalnest.services.admin_core.service import SPEC as ADMIN_CORE
from loyalnest.services.admin_core.service import AdminCoreSettings
from loyalnest.services.core.service import SPEC as CORE
from loyalnest.services.points.service import SPEC as POINTS
from loyalnest.services.roles.service import SPEC as ROLES
from loyalnest.services.users.service import SPEC as USERS
from loyalnest.services.users.service import UsersSettings
from tests.auth import ISSUER, merchant_headers, merchant_metadata, token
from tests.integration.broker import BrokerProcess
from tests.integration.conftest import (
    eventually,
    points_settings,
    service_settings_for_tests,
    serving,
)
from tests.integration.test_access_wiring import events_on
from tests.integration.test_core_service import core_settings
from tests.integration.test_gateway_validate import Gateway, gateway_config, http, running_gateway

pytestmark = pytest.mark.integration

AUDIT = "admin_core:audit"
WRITE = ("users:write", "roles:write", "core:write", "rewards:write")


@dataclass(frozen=True)
class Mesh:
    gateway: Gateway
    users: users_pb2_grpc.UsersServiceStub
    roles: roles_pb2_grpc.RolesServiceStub
    core: core_pb2_grpc.CoreServiceStub
    points: points_pb2_grpc.PointsServiceStub


@pytest.fixture
async def mesh(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Mesh]:
    broker = BrokerProcess()
    await broker.start()
    events = events_on(broker)
    try:
        async with (
            serving(
                USERS,
                service_settings_for_tests(
                    UsersSettings, database_url, redis_url=redis_url, **events
                ),
            ) as users,
            serving(
                ROLES,
                service_settings_for_tests(
                    ServiceSettings, database_url, redis_url=redis_url, **events
                ),
            ) as roles,
            serving(CORE, core_settings(database_url, redis_url, **events)) as core,
            serving(POINTS, points_settings(database_url, redis_url=redis_url, **events)) as points,
            serving(
                ADMIN_CORE,
                service_settings_for_tests(
                    AdminCoreSettings, database_url, redis_url=redis_url, **events
                ),
            ) as admin,
        ):
            upstream = Upstream("admin_core", (ADMIN_CORE_SERVICE,), (("127.0.0.1", admin.port),))
            async with (
                running_gateway(gateway_config(upstream), tmp_path, {"admin_core": 1}) as gw,
                grpc.aio.insecure_channel(users.address) as users_channel,
                grpc.aio.insecure_channel(roles.address) as roles_channel,
                grpc.aio.insecure_channel(core.address) as core_channel,
                grpc.aio.insecure_channel(points.address) as points_channel,
            ):
                yield Mesh(
                    gw,
                    users_pb2_grpc.UsersServiceStub(users_channel),
                    roles_pb2_grpc.RolesServiceStub(roles_channel),
                    core_pb2_grpc.CoreServiceStub(core_channel),
                    points_pb2_grpc.PointsServiceStub(points_channel),
                )
    finally:
        broker.close()


async def logs(mesh: Mesh, headers: dict[str, str], **query: Any) -> dict[str, Any]:
    url = f"{mesh.gateway.url}/admin/v1/logs"
    if query:
        url += "?" + urlencode(query)
    response = await http("GET", url, headers=headers)
    assert response.status == 200, response.body
    body: dict[str, Any] = response.json()
    return body


async def make_changes(mesh: Mesh, merchant_id: str, subject: str = "test-user") -> dict[str, str]:
    """One change through each service (two of one reward), made by `subject`; the resources
    they touch."""
    caller = ISSUER.mint(subject=subject, merchant_id=merchant_id, permissions=WRITE)
    md = (("authorization", f"Bearer {caller}"),)
    user = await mesh.users.CreateUser(
        users_pb2.CreateUserRequest(
            user=users_pb2.User(email="audit@example.com", kind=users_pb2.USER_KIND_STAFF),
            idempotency_key=uuid.uuid4().hex,
        ),
        metadata=md,
    )
    role = await mesh.roles.CreateRole(
        roles_pb2.CreateRoleRequest(
            role=roles_pb2.Role(name="auditors", permissions=["admin_core:audit"]),
            idempotency_key=uuid.uuid4().hex,
        ),
        metadata=md,
    )
    await mesh.core.UpdateProgramSettings(
        core_pb2.UpdateProgramSettingsRequest(
            settings=core_events.ProgramSettings(program_enabled=False),
            update_mask=field_mask_pb2.FieldMask(paths=["program_enabled"]),
            idempotency_key=uuid.uuid4().hex,
        ),
        metadata=md,
    )
    reward = await mesh.points.CreateReward(
        points_pb2.CreateRewardRequest(
            reward=points_pb2.Reward(
                name="5 off",
                kind=points_pb2.REWARD_KIND_FIXED_AMOUNT,
                value="5.00",
                points_cost=100,
            ),
            idempotency_key=uuid.uuid4().hex,
        ),
        metadata=md,
    )
    for cost in (200, 300):
        await mesh.points.UpdateReward(
            points_pb2.UpdateRewardRequest(
                reward=points_pb2.Reward(reward_id=reward.reward.reward_id, points_cost=cost),
                update_mask=field_mask_pb2.FieldMask(paths=["points_cost"]),
            ),
            metadata=md,
        )
    return {
        "users": f"users/{user.user.user_id}",
        "roles": f"roles/{role.role.role_id}",
        "core": f"program_settings/{merchant_id}",
        "points": f"rewards/{reward.reward.reward_id}",
    }


async def test_audit_rows_of_every_service_reach_admin_core_in_order(
    mesh: Mesh, merchant_id: str, database_url: str
) -> None:
    subject = f"staff-{uuid.uuid4().hex[:8]}"
    resources = await make_changes(mesh, merchant_id, subject)
    headers = merchant_headers(merchant_id, (AUDIT,))

    async def arrived() -> list[dict[str, Any]] | None:
        found = (await logs(mesh, headers, page_size=100)).get("logs", [])
        services = {entry["service"] for entry in found}
        # The reward: a create and two updates.
        complete = (
            services >= set(resources)
            and sum(entry["resource"] == resources["points"] for entry in found) == 3
        )
        return found if complete else None

    found = await eventually(arrived, 60, "audit rows from users, roles, core and points")
    for service, resource in resources.items():
        assert any(e["service"] == service and e["resource"] == resource for e in found), (
            service,
            resource,
            found,
        )
    # Newest first, one resource's changes in the order they were made.
    reward_rows = [e for e in found if e["resource"] == resources["points"]]
    assert [e["action"] for e in reward_rows] == ["update", "update", "create"]
    assert [e["details"]["new"]["points_cost"] for e in reward_rows] == [300, 200, 100]
    # Secret columns are named as changed, never shown.
    user_row = next(e for e in found if e["resource"] == resources["users"])
    assert "email_ciphertext" in user_row["details"]["changed"]
    assert "email_ciphertext" not in user_row["details"]["new"]
    assert "audit@example.com" not in json.dumps(found)
    assert {e["merchant_id"] for e in found} == {merchant_id}
    # The caller's token subject names who made an audited RPC's change, in every service
    # (automatic: no call site names it), on rows of the token's merchant.
    for service, resource in resources.items():
        rows = [e for e in found if e["resource"] == resource]
        assert rows and all(e["actor"] == subject for e in rows), (service, rows)

    # Filters and keyset paging.
    only_points = await logs(mesh, headers, **{"filter.service": "points", "page_size": 2})
    assert [e["resource"] for e in only_points["logs"]] == [resources["points"]] * 2
    rest = await logs(
        mesh,
        headers,
        **{
            "filter.service": "points",
            "page_size": 2,
            "page_token": only_points["next_page_token"],
        },
    )
    assert [e["action"] for e in rest["logs"]] == ["create"] and not rest.get("next_page_token")
    by_prefix = await logs(
        mesh, headers, **{"filter.resource": "rewards/", "filter.action": "create"}
    )
    assert [e["resource"] for e in by_prefix["logs"]] == [resources["points"]]
    later = await logs(mesh, headers, start_time="2999-01-01T00:00:00Z")
    assert later.get("logs", []) == []
    bad = await http(
        "GET", f"{mesh.gateway.url}/admin/v1/logs?filter.action=erase", headers=headers
    )
    assert bad.status == 400 and "filter.action" in bad.body.decode(), bad.body

    # Immutable: the table refuses changes, even to its owner.
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for statement in (
            "UPDATE admin_core.mesh_audit_logs SET actor = 'x' WHERE merchant_id = %s",
            "DELETE FROM admin_core.mesh_audit_logs WHERE merchant_id = %s",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute(statement, (merchant_id,))


async def test_live_tail_emits_a_new_row_through_envoy(mesh: Mesh, merchant_id: str) -> None:
    headers = merchant_headers(merchant_id, (AUDIT,))
    lines: list[dict[str, Any]] = []
    got = threading.Event()
    host, port = mesh.gateway.address.split(":")
    connection = httpclient.HTTPConnection(host, int(port), timeout=60)

    def read() -> None:
        connection.request("GET", "/admin/v1/logs/tail?filter.service=roles", headers=headers)
        response = connection.getresponse()
        assert response.status == 200, response.read()
        while not got.is_set():
            line = response.readline()
            if not line:
                return
            if line.strip():
                lines.append(json.loads(line))
                got.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    await asyncio.sleep(1.0)  # the tail is open before the change (it starts from now)
    role = await mesh.roles.CreateRole(
        roles_pb2.CreateRoleRequest(
            role=roles_pb2.Role(name="tailed", permissions=["points:read"]),
            idempotency_key=uuid.uuid4().hex,
        ),
        metadata=merchant_metadata(merchant_id, WRITE),
    )
    assert await asyncio.to_thread(got.wait, 60), "no row on the tail"
    assert lines[0]["log"]["resource"] == f"roles/{role.role.role_id}"
    assert lines[0]["log"]["action"] == "create"
    with contextlib.suppress(OSError):
        connection.close()
    await asyncio.to_thread(reader.join, 5)


class Tail:
    """An NDJSON tail through Envoy, read in a thread (the services run on this loop)."""

    def __init__(self, mesh: Mesh, headers: dict[str, str], query: str) -> None:
        host, port = mesh.gateway.address.split(":")
        self.connection = httpclient.HTTPConnection(host, int(port), timeout=60)
        self.lines: list[dict[str, Any]] = []
        self.status = 0
        self._query, self._headers = query, headers
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        self.connection.request("GET", f"/admin/v1/logs/tail?{self._query}", headers=self._headers)
        # Closing the tail cuts the chunked body short: that ends the reading, nothing else.
        with contextlib.suppress(OSError, ValueError, AttributeError, httpclient.HTTPException):
            response = self.connection.getresponse()
            self.status = response.status
            while line := response.readline():
                if line.strip():
                    self.lines.append(json.loads(line))

    async def until(self, count: int) -> list[dict[str, Any]]:
        async def enough() -> bool:
            return len(self.lines) >= count

        await eventually(enough, 60, f"{count} lines on the tail")
        return self.lines

    async def close(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.sock and self.connection.sock.shutdown(2)  # type: ignore[func-returns-value]
            self.connection.close()
        await asyncio.to_thread(self._reader.join, 5)


async def _role(mesh: Mesh, merchant_id: str, name: str) -> str:
    created = await mesh.roles.CreateRole(
        roles_pb2.CreateRoleRequest(
            role=roles_pb2.Role(name=name, permissions=["points:read"]),
            idempotency_key=uuid.uuid4().hex,
        ),
        metadata=merchant_metadata(merchant_id, WRITE),
    )
    return f"roles/{created.role.role_id}"


async def test_live_tail_resumes_after_a_position_none_lost_or_repeated(
    mesh: Mesh, merchant_id: str
) -> None:
    headers = merchant_headers(merchant_id, (AUDIT,))
    first = Tail(mesh, headers, "filter.service=roles")
    await asyncio.sleep(1.0)  # open before the change (a tail starts from now)
    a = await _role(mesh, merchant_id, "resume-a")
    (line,) = await first.until(1)
    await first.close()
    assert first.status == 200 and line["log"]["resource"] == a and line["position"]

    # While nobody tails: two more rows reach the log.
    missed = {
        await _role(mesh, merchant_id, "resume-b"),
        await _role(mesh, merchant_id, "resume-c"),
    }

    async def recorded() -> bool:
        found = await logs(mesh, headers, **{"filter.service": "roles"})
        return missed <= {e["resource"] for e in found.get("logs", [])}

    await eventually(recorded, 60, "the rows made while no tail was open")
    resumed = Tail(mesh, headers, f"filter.service=roles&after={line['position']}")
    replayed = await resumed.until(2)
    assert {e["log"]["resource"] for e in replayed} == missed  # replayed, A not again
    d = await _role(mesh, merchant_id, "resume-d")  # then live
    lines = await resumed.until(3)
    await asyncio.sleep(0.5)  # nothing more comes
    await resumed.close()
    assert [e["log"]["resource"] for e in lines][2:] == [d]
    positions = [tuple(map(int, e["position"].split("-"))) for e in [line, *lines]]
    assert positions == sorted(set(positions))  # increasing: none repeated

    # A bad position: 400 with the field named, as JSON, before any line.
    for bad in ("yesterday", "1-2-3", "99999999999999-0"):
        refused = await http(
            "GET", f"{mesh.gateway.url}/admin/v1/logs/tail?after={bad}", headers=headers
        )
        assert refused.status == 400, (bad, refused.body)
        assert refused.json()["code"] == 3 and "after" in refused.body.decode()


async def test_a_merchant_admin_sees_its_own_merchant_only(mesh: Mesh, merchant_id: str) -> None:
    other = f"other-{merchant_id}"
    await make_changes(mesh, other)
    platform = {"authorization": f"Bearer {token(None, (AUDIT,))}"}

    async def arrived() -> bool:
        found = await logs(mesh, platform, **{"filter.merchant_id": other})
        return bool(found.get("logs"))

    await eventually(arrived, 60, "the other merchant's rows")
    mine = await logs(mesh, merchant_headers(merchant_id, (AUDIT,)))
    assert all(e["merchant_id"] == merchant_id for e in mine.get("logs", []))
    denied = await http(
        "GET",
        f"{mesh.gateway.url}/admin/v1/logs?filter.merchant_id={other}",
        headers=merchant_headers(merchant_id, (AUDIT,)),
    )
    assert denied.status == 403, denied.body
    no_permission = await http(
        "GET", f"{mesh.gateway.url}/admin/v1/logs", headers=merchant_headers(merchant_id, ())
    )
    assert no_permission.status == 403


async def test_a_position_the_live_buffer_no_longer_holds_is_refused_not_skipped(
    database_url: str, redis_url: str, merchant_id: str
) -> None:
    """On a real Valkey: resuming replays exactly what follows the position; a position whose
    followers were trimmed, or from a stream that expired and began again, is
    FAILED_PRECONDITION (the client re-reads GetAuditLogs) rather than a silent gap."""
    client = stream_client(redis_url)
    log = MeshAuditLog(Database(ServiceSettings(database_url=database_url), ADMIN_DATABASE), client)
    key, where = stream_key(merchant_id), Filter(merchant_id)

    async def add(log_id: str) -> str:
        entry = admin_core_pb2.AuditLog(log_id=log_id, merchant_id=merchant_id)
        added: bytes = await client.xadd(key, {"log": entry.SerializeToString()})
        return added.decode()

    async def resume(after: str, count: int) -> list[tuple[str, str]]:
        tail = log.tail(merchant_id, where, after=after)
        try:
            return [(p, e.log_id) for p, e in [await anext(tail) for _ in range(count)]]
        finally:
            await tail.aclose()

    try:
        ids = [await add(f"row-{i}") for i in range(4)]
        assert await resume(ids[0], 2) == [(ids[1], "row-1"), (ids[2], "row-2")]
        assert await resume("0-0", 1) == [(ids[0], "row-0")]
        await client.xtrim(key, maxlen=2, approximate=False)  # row-0 and row-1 trimmed
        for lost in (ids[0], "0-0"):
            with pytest.raises(FailedPrecondition):
                await resume(lost, 1)  # row-1 is gone: resuming would skip it
        assert await resume(ids[2], 1) == [(ids[3], "row-3")]  # nothing after it was lost
        # A day without rows: the key expired; rows began a new stream.
        await client.delete(key)
        newer = await add("row-4")
        with pytest.raises(FailedPrecondition):
            await resume(ids[3], 1)
        assert await resume("0-0", 1) == [(newer, "row-4")]
        with pytest.raises(InvalidArgument):
            await resume("not-a-position", 1)
    finally:
        await client.delete(key)
        await client.aclose()
