"""The Roles service over a real gRPC channel against a real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message

from loyalnest.gen.events.v1 import auth_pb2 as auth_events
from loyalnest.gen.events.v1 import envelope_pb2
from loyalnest.gen.events.v1 import roles_pb2 as role_events
from loyalnest.gen.roles.v1 import roles_pb2, roles_pb2_grpc
from loyalnest.platform.auth.permissions import is_mesh_global
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.events.envelope import ConsumedEvent, new_event
from loyalnest.platform.postgres import Database
from loyalnest.platform.server import RunningService
from loyalnest.services.roles import consumers, events
from loyalnest.services.roles import domain as roles_domain
from loyalnest.services.roles.domain import DEFAULT_ROLES, default_role_id
from loyalnest.services.roles.service import DATABASE, SPEC
from loyalnest.services.roles.store import RoleStore
from tests.auth import merchant_metadata
from tests.integration.conftest import (
    service_settings_for_tests,
    serving,
    stub_for,
)
from tests.integration.test_users_service import field_violations

pytestmark = pytest.mark.integration

ROLES_MIGRATIONS = Path(roles_domain.__file__).parent / "migrations"

pb = roles_pb2
ROLES_RW = ("roles:read", "roles:write")


@pytest.fixture
async def roles(database_url: str) -> AsyncIterator[RunningService]:
    settings = service_settings_for_tests(ServiceSettings, database_url)
    async with serving(SPEC, settings) as service:
        yield service


@pytest.fixture
async def stub(roles: RunningService) -> AsyncIterator[roles_pb2_grpc.RolesServiceStub]:
    async with stub_for(roles, roles_pb2_grpc.RolesServiceStub) as stub:
        yield stub


@pytest.fixture
async def db(roles: RunningService, database_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, options="-c search_path=roles"
    ) as conn:
        yield conn


def md(merchant: str, permissions: tuple[str, ...] = ROLES_RW) -> tuple[tuple[str, str], ...]:
    return merchant_metadata(merchant, permissions)


async def create(
    stub: roles_pb2_grpc.RolesServiceStub,
    merchant: str,
    name: str,
    permissions: list[str],
    *,
    key: str | None = None,
) -> pb.Role:
    response = await stub.CreateRole(
        pb.CreateRoleRequest(
            role=pb.Role(name=name, permissions=permissions),
            idempotency_key=key or uuid.uuid4().hex,
        ),
        metadata=md(merchant),
    )
    return response.role


async def update(
    stub: roles_pb2_grpc.RolesServiceStub, merchant: str, role: pb.Role, *paths: str
) -> pb.Role:
    response = await stub.UpdateRole(
        pb.UpdateRoleRequest(
            role=role,
            update_mask=field_mask_pb2.FieldMask(paths=list(paths)),
            idempotency_key=uuid.uuid4().hex,
        ),
        metadata=md(merchant),
    )
    return response.role


async def assign(
    stub: roles_pb2_grpc.RolesServiceStub, merchant: str, user_id: str, role_id: str
) -> pb.RoleAssignment:
    response = await stub.AssignRole(
        pb.AssignRoleRequest(user_id=user_id, role_id=role_id, idempotency_key=uuid.uuid4().hex),
        metadata=md(merchant),
    )
    return response.assignment


async def rows(conn: psycopg.AsyncConnection, query: str, *params: Any) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(query, params)
    return await cursor.fetchall()


async def outbox_events(conn: psycopg.AsyncConnection) -> list[tuple[str, Message, int]]:
    payloads = {"role.updated": role_events.RoleUpdated, "role.assigned": role_events.RoleAssigned}
    result = []
    for event_type, envelope, xmin in await rows(
        conn, "SELECT event_type, envelope, xmin::text::bigint FROM outbox ORDER BY id"
    ):
        payload = payloads[event_type]()
        assert envelope_pb2.Envelope.FromString(bytes(envelope)).payload.Unpack(payload)
        result.append((event_type, payload, xmin))
    return result


def consumed(merchant: str, payload: Message) -> ConsumedEvent:
    """An event as the consumer runner hands it to a handler (the broker is tested elsewhere)."""
    event = new_event(merchant, payload)
    return ConsumedEvent(
        envelope=event.envelope,
        spec=event.spec,
        payload=payload,
        consumer=events.CONSUMER_GROUP,
        topic=event.spec.topic.name,
        partition=0,
        offset=0,
    )


async def test_create_get_update_list(stub, merchant_id):
    analyst = await create(
        stub, merchant_id, "Analyst", ["points:read", "admin:analytics", "points:read"]
    )
    assert uuid.UUID(analyst.role_id)
    # Sorted, duplicates dropped: one spelling per permission set.
    assert list(analyst.permissions) == ["admin:analytics", "points:read"]

    got = await stub.GetRole(pb.GetRoleRequest(role_id=analyst.role_id), metadata=md(merchant_id))
    assert got.role == analyst

    changed = await update(
        stub,
        merchant_id,
        pb.Role(role_id=analyst.role_id, name="Senior analyst", permissions=["points:*"]),
        "permissions",
        "description",
    )
    assert (changed.name, changed.description) == ("Analyst", "")
    assert list(changed.permissions) == ["points:*"]

    names = [f"role-{i}" for i in range(4)]
    for name in names:
        await create(stub, merchant_id, name, ["users:*"])
    seen, page_token = [], ""
    while True:
        page = await stub.ListRoles(
            pb.ListRolesRequest(page_size=2, page_token=page_token), metadata=md(merchant_id)
        )
        seen += [r.name for r in page.roles]
        page_token = page.next_page_token
        if not page_token:
            break
    assert seen == ["Analyst", *names]


async def test_names_are_unique_per_merchant_ignoring_case(stub, merchant_id):
    await create(stub, merchant_id, "Support", ["users:read"])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(stub, merchant_id, "support", ["users:read"])
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    other = await create(stub, merchant_id, "Marketing", ["admin:analytics"])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await update(stub, merchant_id, pb.Role(role_id=other.role_id, name="SUPPORT"), "name")
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    # Another merchant may use the name.
    await create(stub, f"{merchant_id}-2", "Support", ["users:read"])


async def test_create_is_idempotent(stub, merchant_id):
    first = await create(stub, merchant_id, "Ops", ["points:write"], key="k-ops")
    again = await create(stub, merchant_id, "Ops", ["points:write"], key="k-ops")
    assert again.role_id == first.role_id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(stub, merchant_id, "Ops 2", ["points:write"], key="k-ops")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_assign_role_and_read_it_back(stub, merchant_id):
    viewer = await create(stub, merchant_id, "Viewer", ["points:read"])
    admin = await create(stub, merchant_id, "Admin", ["points:*", "users:*"])
    user_id = str(uuid.uuid4())
    first = await assign(stub, merchant_id, user_id, viewer.role_id)
    assert (first.user_id, first.role_id) == (user_id, viewer.role_id)
    await assign(stub, merchant_id, user_id, admin.role_id)
    got = await stub.GetUserRole(pb.GetUserRoleRequest(user_id=user_id), metadata=md(merchant_id))
    assert (got.assignment.role_id, got.role.name) == (admin.role_id, "Admin")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetUserRole(
            pb.GetUserRoleRequest(user_id=str(uuid.uuid4())), metadata=md(merchant_id)
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await assign(stub, merchant_id, user_id, str(uuid.uuid4()))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("method", "request_message", "fields"),
    [
        pytest.param(
            "CreateRole",
            pb.CreateRoleRequest(
                role=pb.Role(name=" ", permissions=["Points:Read", "admin", "a:b:c", "x:"])
            ),
            {"role.name", "role.permissions", "idempotency_key"},
            id="create-everything-wrong",
        ),
        pytest.param(
            "CreateRole",
            pb.CreateRoleRequest(role=pb.Role(name="n"), idempotency_key="k"),
            {"role.permissions"},
            id="create-no-permissions",
        ),
        pytest.param(
            "CreateRole",
            pb.CreateRoleRequest(
                role=pb.Role(name="x" * 65, description="d" * 501, permissions=["a:b"]),
                idempotency_key="k",
            ),
            {"role.name", "role.description"},
            id="create-too-long",
        ),
        pytest.param(
            "CreateRole",
            pb.CreateRoleRequest(
                role=pb.Role(name="many", permissions=[f"p{i}:read" for i in range(101)]),
                idempotency_key="k",
            ),
            {"role.permissions"},
            id="create-too-many-permissions",
        ),
        pytest.param(
            "UpdateRole",
            pb.UpdateRoleRequest(
                role=pb.Role(role_id="nope", permissions=["admin full"]),
                update_mask=field_mask_pb2.FieldMask(paths=["permissions", "role_id"]),
                idempotency_key="k",
            ),
            {"role.role_id", "update_mask", "role.permissions"},
            id="update-bad",
        ),
        pytest.param(
            "UpdateRole",
            pb.UpdateRoleRequest(role=pb.Role(role_id=str(uuid.uuid4())), idempotency_key="k"),
            {"update_mask"},
            id="update-no-mask",
        ),
        # Mesh-global permissions (loyalnest.platform.auth.permissions) in a merchant's role.
        *(
            pytest.param(
                "CreateRole",
                pb.CreateRoleRequest(
                    role=pb.Role(name="escalate", permissions=["points:read", permission]),
                    idempotency_key="k",
                ),
                {"role.permissions"},
                id=f"create-global-{permission}",
            )
            for permission in ("admin:full", "admin:*", "auth:*", "auth:validate", "auth:revoke")
        ),
        pytest.param(
            "UpdateRole",
            pb.UpdateRoleRequest(
                role=pb.Role(role_id=str(uuid.uuid4()), permissions=["auth:impersonate"]),
                update_mask=field_mask_pb2.FieldMask(paths=["permissions"]),
                idempotency_key="k",
            ),
            {"role.permissions"},
            id="update-global",
        ),
        pytest.param("GetRole", pb.GetRoleRequest(role_id="1"), {"role_id"}),
        pytest.param(
            "AssignRole",
            pb.AssignRoleRequest(user_id="u", role_id=""),
            {"user_id", "role_id", "idempotency_key"},
        ),
        pytest.param("GetUserRole", pb.GetUserRoleRequest(), {"user_id"}),
        pytest.param("ListRoles", pb.ListRolesRequest(page_token="x"), {"page_token"}),
    ],
)
async def test_invalid_requests_list_field_violations(
    stub, merchant_id, method, request_message, fields
):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(stub, method)(request_message, metadata=md(merchant_id))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == fields


async def test_changes_need_roles_write(stub, merchant_id):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateRole(
            pb.CreateRoleRequest(role=pb.Role(name="x", permissions=["a:b"]), idempotency_key="k"),
            metadata=md(merchant_id, ("roles:read",)),
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_an_audit_row_for_every_role_and_assignment_change(stub, db, merchant_id):
    role = await create(stub, merchant_id, "Cashier", ["points:write"])
    await update(
        stub, merchant_id, pb.Role(role_id=role.role_id, description="till"), "description"
    )
    other = await create(stub, merchant_id, "Manager", ["points:*"])
    user_id = str(uuid.uuid4())
    await assign(stub, merchant_id, user_id, role.role_id)
    await assign(stub, merchant_id, user_id, other.role_id)
    # No RPC deletes roles or assignments yet; the trigger audits whatever deletes a row.
    await db.execute("DELETE FROM role_assignments WHERE user_id = %s", (user_id,))
    await db.execute("DELETE FROM roles WHERE role_id = %s", (role.role_id,))
    audit = await rows(
        db,
        "SELECT entity_type, entity_id, action, actor, user_id, details FROM audit_logs"
        " WHERE merchant_id = %s",
        merchant_id,
    )
    actions = sorted((entity, entity_id, action) for entity, entity_id, action, *_ in audit)
    assert actions == sorted(
        [
            ("roles", role.role_id, "create"),
            ("roles", role.role_id, "update"),
            ("roles", other.role_id, "create"),
            ("role_assignments", user_id, "create"),
            ("role_assignments", user_id, "update"),
            ("role_assignments", user_id, "delete"),
            ("roles", role.role_id, "delete"),
        ]
    )
    by_key = {(e, i, a): (actor, user, details) for e, i, a, actor, user, details in audit}
    actor, user, details = by_key[("role_assignments", user_id, "update")]
    assert (actor, user) == ("test-user", user_id)
    assert (details["old"]["role_id"], details["new"]["role_id"]) == (role.role_id, other.role_id)
    assert by_key[("roles", role.role_id, "delete")][0] is None  # psql: no actor set
    assert by_key[("roles", role.role_id, "update")][2]["changed"] == ["description", "updated_at"]


async def test_events_are_written_in_the_same_transaction_as_the_change(stub, db, merchant_id):
    role = await create(stub, merchant_id, "Loyalty", ["points:read"])
    await update(stub, merchant_id, pb.Role(role_id=role.role_id, name="Loyalty team"), "name")
    await update(
        stub,
        merchant_id,
        pb.Role(role_id=role.role_id, permissions=["points:write"]),
        "permissions",
    )
    user_id = str(uuid.uuid4())
    await assign(stub, merchant_id, user_id, role.role_id)
    await assign(stub, merchant_id, user_id, role.role_id)  # the same role again: no event
    events = await outbox_events(db)
    assert [
        (t, list(getattr(p, "permissions", [])) or getattr(p, "user_id", "")) for t, p, _ in events
    ] == [
        ("role.updated", ["points:read"]),
        # The rename changed no one's access: nothing to announce.
        ("role.updated", ["points:write"]),
        ("role.assigned", user_id),
    ]
    ((role_xmins,),) = await rows(
        db, "SELECT array_agg(xmin::text::bigint) FROM audit_logs WHERE entity_type = 'roles'"
    )
    ((assignment_xmin,),) = await rows(
        db, "SELECT xmin::text::bigint FROM role_assignments WHERE user_id = %s", user_id
    )
    # xmin is the writing transaction: each event committed with its audited change.
    assert {x for _, _, x in events[:2]} <= set(role_xmins)
    assert events[2][2] == assignment_xmin


async def test_an_assignment_cannot_name_another_merchants_role_even_in_sql(db, stub, merchant_id):
    theirs = await create(stub, f"{merchant_id}-other", "Theirs", ["points:*"])
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        await db.execute(
            "INSERT INTO role_assignments (merchant_id, user_id, role_id) VALUES (%s, %s, %s)",
            (merchant_id, str(uuid.uuid4()), theirs.role_id),
        )


async def test_merchant_created_makes_the_default_roles_once(
    roles, stub, db, database_url, merchant_id
):
    database = Database(ServiceSettings(database_url=database_url), DATABASE)
    await database.open()
    try:
        handler = consumers.handlers(RoleStore(database))["merchant.created"]
        installed = consumed(
            merchant_id, auth_events.MerchantCreated(shop_domain="s.myshopify.com")
        )
        assert await handler(installed) is True
        assert await handler(installed) is False  # redelivery
        assert await handler(consumed(merchant_id, auth_events.MerchantCreated())) is True  # replay
        # A merchant that already named a role like a default keeps it.
        other = f"{merchant_id}-2"
        mine = await create(stub, other, "owner", ["points:read"])
        assert await handler(consumed(other, auth_events.MerchantCreated())) is True
    finally:
        await database.close()
    listed = await stub.ListRoles(pb.ListRolesRequest(), metadata=md(merchant_id))
    # The default roles are what a merchant's role may be: nothing mesh-global.
    assert not [p for r in listed.roles for p in r.permissions if is_mesh_global(p)]
    assert {(r.role_id, r.name, tuple(r.permissions)) for r in listed.roles} == {
        (default_role_id(merchant_id, name), name, permissions)
        for name, permissions in DEFAULT_ROLES.items()
    }
    other_roles = await stub.ListRoles(pb.ListRolesRequest(), metadata=md(other))
    assert {r.name for r in other_roles.roles} == {"owner", "Staff"}
    assert mine.role_id in {r.role_id for r in other_roles.roles}
    announced = [p.role_id for t, p, _ in await outbox_events(db) if t == "role.updated"]
    assert sorted(announced) == sorted(
        [default_role_id(merchant_id, n) for n in DEFAULT_ROLES]
        + [mine.role_id, default_role_id(other, "Staff")]
    )


async def test_the_migration_takes_global_permissions_out_of_older_roles(db, merchant_id):
    """roles_0002 and roles_0003 (run again here: they are idempotent) on roles written before
    the check."""
    old = {
        "Owner": ["admin:full"],
        "Mixed": ["admin:analytics", "auth:validate", "points:read"],
        "Clean": ["points:read"],
    }
    for name, permissions in old.items():
        await db.execute(
            "INSERT INTO roles (role_id, merchant_id, name, permissions) VALUES (%s, %s, %s, %s)",
            (str(uuid.uuid4()), merchant_id, name, json.dumps(permissions)),
        )
    # roles_0003 then gives Owners of the former default set what the default Owner holds now.
    for migration in (
        ROLES_MIGRATIONS / "roles_0002_merchant_scoped_permissions.sql",
        ROLES_MIGRATIONS / "roles_0003_owner_event_tracking.sql",
    ):
        await db.execute(migration.read_text())
    found = dict(
        await rows(db, "SELECT name, permissions FROM roles WHERE merchant_id = %s", merchant_id)
    )
    assert found == {
        "Owner": list(DEFAULT_ROLES["Owner"]),
        "Mixed": ["admin:analytics", "points:read"],
        "Clean": ["points:read"],
    }
