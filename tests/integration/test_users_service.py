"""The Users service over a real gRPC channel, real PostgreSQL and a real Valkey."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import psycopg
import pytest
import redis.asyncio as redis
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status

from loyalnest.devstack.postgres import free_port
from loyalnest.gen.events.v1 import auth_pb2 as auth_events
from loyalnest.gen.events.v1 import envelope_pb2
from loyalnest.gen.events.v1 import roles_pb2 as roles_events
from loyalnest.gen.events.v1 import users_pb2 as user_events
from loyalnest.gen.users.v1 import users_pb2, users_pb2_grpc
from loyalnest.platform.events.envelope import ConsumedEvent, new_event
from loyalnest.platform.postgres import Database
from loyalnest.platform.server import RunningService, running
from loyalnest.services.users import consumers, events
from loyalnest.services.users.domain import owner_user_id
from loyalnest.services.users.service import DATABASE, SPEC, UsersSettings, email_vault
from loyalnest.services.users.store.cache import UserCache, cache_key
from loyalnest.services.users.store.postgres import UserStore
from tests.auth import JWKS_PATH, merchant_metadata, token
from tests.integration.conftest import (
    serve_for_test,
    service_settings_for_tests,
    serving,
    stub_for,
)

pytestmark = pytest.mark.integration

pb = users_pb2
SERVING = health_pb2.HealthCheckResponse.SERVING
USERS_RW = ("users:read", "users:write")
# Fresh keys per test run: nothing may depend on a particular key.
ENCRYPTION_KEY = base64.b64encode(os.urandom(32)).decode()
BLIND_INDEX_KEY = base64.b64encode(os.urandom(32)).decode()


# ---- servers ----------------------------------------------------------------------------


def users_settings(database_url: str, redis_url: str | None, **overrides: Any) -> UsersSettings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "users_encryption_key": ENCRYPTION_KEY,
        "users_blind_index_key": BLIND_INDEX_KEY,
    }
    return service_settings_for_tests(UsersSettings, database_url, **(values | overrides))


@pytest.fixture
async def users(database_url: str, redis_url: str) -> AsyncIterator[RunningService]:
    async with serving(SPEC, users_settings(database_url, redis_url)) as service:
        yield service


@pytest.fixture
async def stub(users: RunningService) -> AsyncIterator[users_pb2_grpc.UsersServiceStub]:
    async with stub_for(users, users_pb2_grpc.UsersServiceStub) as stub:
        yield stub


@pytest.fixture
async def store(
    users: RunningService, database_url: str, redis_url: str
) -> AsyncIterator[UserStore]:
    """A second store on the service's database, to drive the event consumers directly."""
    settings = users_settings(database_url, redis_url)
    database = Database(settings, DATABASE)
    await database.open()
    cache = UserCache.from_url(redis_url, ttl_seconds=60)
    try:
        yield UserStore(database, email_vault(settings), cache)
    finally:
        await cache.close()
        await database.close()


@pytest.fixture
async def db(users: RunningService, database_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, options="-c search_path=users"
    ) as conn:
        yield conn


# ---- helpers ----------------------------------------------------------------------------


def md(merchant: str, permissions: tuple[str, ...] = USERS_RW) -> tuple[tuple[str, str], ...]:
    return merchant_metadata(merchant, permissions)


async def create(
    stub: users_pb2_grpc.UsersServiceStub,
    merchant: str,
    email: str = "",
    *,
    kind: int = pb.USER_KIND_CUSTOMER,
    key: str | None = None,
) -> pb.User:
    response = await stub.CreateUser(
        pb.CreateUserRequest(
            user=pb.User(email=email, kind=kind), idempotency_key=key or uuid.uuid4().hex
        ),
        metadata=md(merchant),
    )
    return response.user


async def update(
    stub: users_pb2_grpc.UsersServiceStub, merchant: str, user: pb.User, *paths: str
) -> pb.User:
    response = await stub.UpdateUser(
        pb.UpdateUserRequest(
            user=user,
            update_mask=field_mask_pb2.FieldMask(paths=list(paths)),
            idempotency_key=uuid.uuid4().hex,
        ),
        metadata=md(merchant),
    )
    return response.user


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "INVALID_ARGUMENT must carry google.rpc.Status details"
    violations: dict[str, str] = {}
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            violations |= {v.field: v.description for v in bad_request.field_violations}
    return violations


async def rows(conn: psycopg.AsyncConnection, query: str, *params: Any) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(query, params)
    return await cursor.fetchall()


async def outbox_events(conn: psycopg.AsyncConnection) -> list[tuple[str, Message, int]]:
    """(event_type, payload, xmin of the writing transaction) of every outbox row, in order."""
    payloads = {
        "user.created": user_events.UserCreated,
        "user.updated": user_events.UserUpdated,
    }
    result = []
    for event_type, envelope, xmin in await rows(
        conn, "SELECT event_type, envelope, xmin::text::bigint FROM outbox ORDER BY id"
    ):
        payload = payloads[event_type]()
        assert envelope_pb2.Envelope.FromString(bytes(envelope)).payload.Unpack(payload)
        result.append((event_type, payload, xmin))
    return result


def consumed(
    merchant: str, payload: Message, *, occurred_at: datetime | None = None
) -> ConsumedEvent:
    """An event as the consumer runner hands it to a handler (the broker is tested elsewhere)."""
    event = new_event(merchant, payload, occurred_at=occurred_at)
    return ConsumedEvent(
        envelope=event.envelope,
        spec=event.spec,
        payload=payload,
        consumer=events.CONSUMER_GROUP,
        topic=event.spec.topic.name,
        partition=0,
        offset=0,
    )


# ---- CRUD -------------------------------------------------------------------------------


async def test_create_get_update_lookup_and_list(stub, merchant_id):
    ann = await create(stub, merchant_id, "  Ann@Example.COM ", kind=pb.USER_KIND_STAFF)
    assert uuid.UUID(ann.user_id)
    assert (ann.email, ann.kind, ann.role_id) == ("ann@example.com", pb.USER_KIND_STAFF, "")
    assert ann.create_time.seconds > 0

    got = await stub.GetUser(pb.GetUserRequest(user_id=ann.user_id), metadata=md(merchant_id))
    assert got.user == ann

    changed = await update(
        stub,
        merchant_id,
        pb.User(user_id=ann.user_id, email="ann.new@example.com", kind=pb.USER_KIND_CUSTOMER),
        "email",
    )
    # Only the masked field changes.
    assert (changed.email, changed.kind) == ("ann.new@example.com", pb.USER_KIND_STAFF)
    assert changed.update_time.ToDatetime() >= ann.update_time.ToDatetime()

    found = await stub.LookupUser(
        pb.LookupUserRequest(email="ANN.NEW@example.com"), metadata=md(merchant_id)
    )
    assert found.user.user_id == ann.user_id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.LookupUser(
            pb.LookupUserRequest(email="ann@example.com"), metadata=md(merchant_id)
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    others = [await create(stub, merchant_id, f"u{i}@example.com") for i in range(3)]
    seen, page_token = [], ""
    while True:
        page = await stub.ListUsers(
            pb.ListUsersRequest(page_size=3, page_token=page_token), metadata=md(merchant_id)
        )
        seen += [u.user_id for u in page.users]
        page_token = page.next_page_token
        if not page_token:
            break
    assert seen == [ann.user_id, *(u.user_id for u in others)]


async def test_email_can_be_removed_and_users_may_have_none(stub, merchant_id):
    user = await create(stub, merchant_id, "bob@example.com")
    cleared = await update(stub, merchant_id, pb.User(user_id=user.user_id, email=""), "email")
    assert cleared.email == ""
    # The address is free again.
    await create(stub, merchant_id, "bob@example.com")
    await create(stub, merchant_id)
    await create(stub, merchant_id)


async def test_duplicate_email_is_already_exists_and_changes_nothing(stub, db, merchant_id):
    await create(stub, merchant_id, "carol@example.com")
    before = await rows(db, "SELECT count(*) FROM outbox")
    for attempt in (
        create(stub, merchant_id, "CAROL@example.com"),
        update(
            stub,
            merchant_id,
            pb.User(
                user_id=(await create(stub, merchant_id, "dan@example.com")).user_id,
                email="carol@example.com",
            ),
            "email",
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await attempt
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert "carol" not in (caught.value.details() or "")  # no PII in errors
    # Only dan's creation reached the outbox; the failed calls rolled back entirely.
    assert (await rows(db, "SELECT count(*) FROM outbox"))[0][0] == before[0][0] + 1


async def test_create_is_idempotent(stub, merchant_id):
    first = await create(stub, merchant_id, "erin@example.com", key="signup-1")
    again = await create(stub, merchant_id, "erin@example.com", key="signup-1")
    assert again.user_id == first.user_id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(stub, merchant_id, "other@example.com", key="signup-1")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "idempotency_key" in field_violations(caught.value)


async def test_unknown_user_is_not_found(stub, merchant_id):
    ghost = str(uuid.uuid4())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetUser(pb.GetUserRequest(user_id=ghost), metadata=md(merchant_id))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await update(stub, merchant_id, pb.User(user_id=ghost, kind=pb.USER_KIND_STAFF), "kind")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("method", "request_message", "fields"),
    [
        pytest.param(
            "CreateUser",
            pb.CreateUserRequest(user=pb.User(email="not-an-email")),
            {"user.email", "user.kind", "idempotency_key"},
            id="create-everything-wrong",
        ),
        pytest.param(
            "CreateUser",
            pb.CreateUserRequest(idempotency_key="k"),
            {"user"},
            id="create-no-user",
        ),
        pytest.param(
            "CreateUser",
            pb.CreateUserRequest(
                user=pb.User(email="a" * 250 + "@x.io", kind=pb.USER_KIND_STAFF),
                idempotency_key="k",
            ),
            {"user.email"},
            id="create-email-too-long",
        ),
        pytest.param(
            "UpdateUser",
            pb.UpdateUserRequest(user=pb.User(user_id="42"), idempotency_key="k"),
            {"user.user_id", "update_mask"},
            id="update-bad-id-no-mask",
        ),
        pytest.param(
            "UpdateUser",
            pb.UpdateUserRequest(
                user=pb.User(user_id=str(uuid.uuid4()), email="x@@y"),
                update_mask=field_mask_pb2.FieldMask(paths=["email", "kind", "role_id"]),
                idempotency_key="k",
            ),
            {"update_mask", "user.email", "user.kind"},
            id="update-unchangeable-and-invalid",
        ),
        pytest.param("GetUser", pb.GetUserRequest(user_id="x; DROP TABLE users"), {"user_id"}),
        pytest.param("GetUser", pb.GetUserRequest(), {"user_id"}, id="get-missing-id"),
        pytest.param("LookupUser", pb.LookupUserRequest(email="nobody"), {"email"}),
        pytest.param("ListUsers", pb.ListUsersRequest(page_size=-1), {"page_size"}),
        pytest.param("ListUsers", pb.ListUsersRequest(page_token="garbage"), {"page_token"}),
    ],
)
async def test_invalid_requests_list_field_violations(
    stub, merchant_id, method, request_message, fields
):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(stub, method)(request_message, metadata=md(merchant_id))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == fields


async def test_each_rpc_needs_its_permission(stub, merchant_id):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateUser(
            pb.CreateUserRequest(user=pb.User(kind=pb.USER_KIND_CUSTOMER), idempotency_key="k"),
            metadata=md(merchant_id, ("users:read",)),
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListUsers(pb.ListUsersRequest(), metadata=md(merchant_id, ("points:read",)))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListUsers(pb.ListUsersRequest())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


# ---- data protection --------------------------------------------------------------------


async def test_no_plaintext_email_anywhere_in_the_schema(stub, db, store, redis_url, merchant_id):
    email = f"plain.{uuid.uuid4().hex[:8]}@secret-domain.example"
    user = await create(stub, merchant_id, email, key="k-plain")
    await update(stub, merchant_id, pb.User(user_id=user.user_id, kind=pb.USER_KIND_STAFF), "kind")
    await store.apply_role_assignment(
        merchant_id,
        user.user_id,
        str(uuid.uuid4()),
        assigned_at=datetime.now(UTC),
        event=consumed(merchant_id, roles_events.RoleAssigned()),
    )
    await stub.GetUser(pb.GetUserRequest(user_id=user.user_id), metadata=md(merchant_id))
    # Every table of the schema, every column, as text (bytea as hex) and raw bytes.
    tables = [
        name
        for (name,) in await rows(
            db, "SELECT tablename FROM pg_tables WHERE schemaname = 'users' ORDER BY 1"
        )
    ]
    assert {"users", "audit_logs", "outbox", "idempotency_keys", "user_roles"} <= set(tables)
    needles = {
        email,
        email.split("@")[0],
        "secret-domain",
        email.encode().hex(),
        email.split("@")[0].encode().hex(),
    }
    for table in tables:
        for (text,) in await rows(db, f"SELECT t::text FROM users.{table} t"):
            leaked = [needle for needle in needles if needle in text.lower()]
            assert not leaked, f"plaintext email in users.{table}: {text[:200]}"
    # The stored value is a ciphertext that decrypts only for this user (bound as AAD).
    ((ciphertext, index),) = await rows(
        db, "SELECT email_ciphertext, email_index FROM users WHERE user_id = %s", user.user_id
    )
    assert len(bytes(index)) == 32
    vault = email_vault(users_settings("postgresql://unused", None))
    assert vault.open(merchant_id, user.user_id, bytes(ciphertext)) == email
    with pytest.raises(ValueError, match="does not match"):
        vault.open(merchant_id, str(uuid.uuid4()), bytes(ciphertext))
    with pytest.raises(ValueError, match="does not match"):
        vault.open("other-merchant", user.user_id, bytes(ciphertext))
    # The cache holds the row as stored: encrypted.
    client = redis.Redis.from_url(redis_url)
    try:
        cached = await client.get(cache_key(user.user_id))
        assert cached is not None and email.encode() not in cached.lower()
    finally:
        await client.aclose()


async def test_an_audit_row_for_every_create_update_and_delete(stub, db, merchant_id):
    user = await create(stub, merchant_id, "frank@example.com")
    await update(stub, merchant_id, pb.User(user_id=user.user_id, email="f@example.com"), "email")
    await update(stub, merchant_id, pb.User(user_id=user.user_id, kind=pb.USER_KIND_STAFF), "kind")
    # No RPC deletes users yet; the trigger audits whatever deletes a row.
    async with db.transaction():
        await db.execute("SELECT set_config('loyalnest.actor', 'dba:manual-fix', true)")
        await db.execute("DELETE FROM users WHERE user_id = %s", (user.user_id,))
    audit = await rows(
        db,
        "SELECT action, actor, user_id, entity_type, details FROM audit_logs"
        " WHERE entity_id = %s ORDER BY created_at, log_id",
        user.user_id,
    )
    # created_at is the transaction's start: per-row order is by action here.
    by_action = {
        action: (actor, user_id, entity, details)
        for action, actor, user_id, entity, details in audit
    }
    assert sorted(a for a, *_ in audit) == ["create", "delete", "update", "update"]
    actor, audited_user, entity, details = by_action["create"]
    assert (actor, audited_user, entity) == ("test-user", user.user_id, "users")
    assert details["old"] is None and details["new"]["kind"] == "customer"
    assert by_action["delete"][0] == "dba:manual-fix"
    assert by_action["delete"][3]["new"] is None
    updates = [details for action, _, _, _, details in audit if action == "update"]
    assert {tuple(d["changed"]) for d in updates} == {
        ("email_ciphertext", "email_index", "updated_at"),
        ("kind", "updated_at"),
    }
    for _, _, _, _, details in audit:
        for side in ("old", "new"):
            assert not {"email_ciphertext", "email_index"} & set(details[side] or {})


# ---- cache ------------------------------------------------------------------------------


async def test_get_reads_through_the_cache_and_update_invalidates_it(
    stub, db, redis_url, merchant_id
):
    user = await create(stub, merchant_id, "gina@example.com")
    client = redis.Redis.from_url(redis_url)
    try:
        assert await client.get(cache_key(user.user_id)) is None
        await stub.GetUser(pb.GetUserRequest(user_id=user.user_id), metadata=md(merchant_id))
        assert await client.get(cache_key(user.user_id)) is not None
        # Changed behind the service's back: a read served from the cache does not see it.
        await db.execute("UPDATE users SET kind = 'staff' WHERE user_id = %s", (user.user_id,))
        cached = await stub.GetUser(
            pb.GetUserRequest(user_id=user.user_id), metadata=md(merchant_id)
        )
        assert cached.user.kind == pb.USER_KIND_CUSTOMER

        await update(
            stub, merchant_id, pb.User(user_id=user.user_id, email="g@example.com"), "email"
        )
        assert await client.get(cache_key(user.user_id)) is None
        fresh = await stub.GetUser(
            pb.GetUserRequest(user_id=user.user_id), metadata=md(merchant_id)
        )
        assert (fresh.user.email, fresh.user.kind) == ("g@example.com", pb.USER_KIND_STAFF)
    finally:
        await client.aclose()


async def test_a_cached_user_is_never_served_to_another_merchant(stub, merchant_id):
    user = await create(stub, merchant_id, "hal@example.com")
    await stub.GetUser(pb.GetUserRequest(user_id=user.user_id), metadata=md(merchant_id))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetUser(pb.GetUserRequest(user_id=user.user_id), metadata=md("intruder"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_reads_go_on_when_redis_is_away(database_url, merchant_id):
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    async with serve_for_test(
        SPEC, users_settings(database_url, unreachable), users_pb2_grpc.UsersServiceStub
    ) as (_, stub):
        user = await create(stub, merchant_id, "ivy@example.com")
        got = await stub.GetUser(pb.GetUserRequest(user_id=user.user_id), metadata=md(merchant_id))
        assert got.user.email == "ivy@example.com"


# ---- events -----------------------------------------------------------------------------


async def test_events_are_written_in_the_same_transaction_as_the_change(stub, db, merchant_id):
    user = await create(stub, merchant_id, "jo@example.com", kind=pb.USER_KIND_STAFF)
    ((created_xmin,),) = await rows(
        db, "SELECT xmin::text::bigint FROM users WHERE user_id = %s", user.user_id
    )
    await update(stub, merchant_id, pb.User(user_id=user.user_id, email="jo2@example.com"), "email")
    # A no-op update announces nothing.
    await update(stub, merchant_id, pb.User(user_id=user.user_id, kind=pb.USER_KIND_STAFF), "kind")
    ((updated_xmin,),) = await rows(
        db, "SELECT xmin::text::bigint FROM users WHERE user_id = %s", user.user_id
    )
    (created_type, created, xmin1), (updated_type, updated, xmin2) = await outbox_events(db)
    assert created_type == "user.created"
    assert isinstance(created, user_events.UserCreated)
    assert (created.user_id, created.kind) == (user.user_id, user_events.USER_KIND_STAFF)
    assert updated_type == "user.updated"
    assert isinstance(updated, user_events.UserUpdated)
    assert (updated.user_id, list(updated.update_mask.paths)) == (user.user_id, ["email"])
    # xmin is the id of the transaction that wrote a row: one transaction wrote both.
    assert (xmin1, xmin2) == (created_xmin, updated_xmin)
    ((audit_xmins,),) = await rows(
        db,
        "SELECT array_agg(xmin::text::bigint) FROM audit_logs WHERE entity_id = %s",
        user.user_id,
    )
    assert set(audit_xmins) == {created_xmin, updated_xmin}


async def test_merchant_created_makes_one_owner_account(store, db, merchant_id):
    handler = consumers.handlers(store)["merchant.created"]
    installed = consumed(merchant_id, auth_events.MerchantCreated(shop_domain="x.myshopify.com"))
    assert await handler(installed) is True
    assert await handler(installed) is False  # redelivery: recorded in processed_events
    # A replay under a new event id (e.g. after processed_events was purged) finds the owner.
    assert await handler(consumed(merchant_id, auth_events.MerchantCreated())) is True
    owners = await rows(
        db, "SELECT user_id::text, kind FROM users WHERE merchant_id = %s", merchant_id
    )
    assert owners == [(owner_user_id(merchant_id), "staff")]
    ((event_type, payload, _),) = await outbox_events(db)
    assert event_type == "user.created" and payload.user_id == owner_user_id(merchant_id)
    ((actor,),) = await rows(db, "SELECT actor FROM audit_logs WHERE action = 'create'")
    assert actor == f"event:merchant.created:{installed.event_id}"


async def test_role_assigned_is_projected_newest_first(stub, store, db, merchant_id):
    handler = consumers.handlers(store)["role.assigned"]
    user = await create(stub, merchant_id, "kim@example.com")
    await stub.GetUser(pb.GetUserRequest(user_id=user.user_id), metadata=md(merchant_id))  # cache
    admin, viewer = str(uuid.uuid4()), str(uuid.uuid4())
    now = datetime.now(UTC)
    assert await handler(
        consumed(
            merchant_id,
            roles_events.RoleAssigned(role_id=admin, user_id=user.user_id),
            occurred_at=now,
        )
    )
    # An older assignment arriving late loses.
    assert await handler(
        consumed(
            merchant_id,
            roles_events.RoleAssigned(role_id=viewer, user_id=user.user_id),
            occurred_at=now - timedelta(seconds=5),
        )
    )
    got = await stub.GetUser(pb.GetUserRequest(user_id=user.user_id), metadata=md(merchant_id))
    assert got.user.role_id == admin  # the cache entry was dropped
    # An assignment for a user not created yet is kept for when it is.
    early = str(uuid.uuid4())
    assert await handler(
        consumed(merchant_id, roles_events.RoleAssigned(role_id=admin, user_id=early))
    )
    assert await rows(db, "SELECT role_id::text FROM user_roles WHERE user_id = %s", early) == [
        (admin,)
    ]
    updates = [p for t, p, _ in await outbox_events(db) if t == "user.updated"]
    assert [(u.user_id, list(u.update_mask.paths), u.role_id) for u in updates] == [
        (user.user_id, ["role_id"], admin)
    ]


async def test_without_keys_the_service_refuses_to_start_outside_a_developer_machine(
    database_url, tmp_path
):
    # The public JWKS alone, as production mounts it: no local signing keyset beside it.
    jwks = tmp_path / "jwks.json"
    jwks.write_bytes(JWKS_PATH.read_bytes())
    settings = users_settings(database_url, None, users_encryption_key=None, jwt_jwks_path=jwks)
    with pytest.raises(ValueError, match="LOYALNEST_USERS_ENCRYPTION_KEY"):
        async with running(SPEC, settings):
            pass


async def test_without_keys_a_developer_machine_uses_the_development_keys(
    database_url, merchant_id
):
    # tests/auth.py keeps a keyset marked local beside the JWKS, like `loyalnest up`.
    settings = users_settings(
        database_url, None, users_encryption_key=None, users_blind_index_key=None
    )
    async with serve_for_test(SPEC, settings, users_pb2_grpc.UsersServiceStub) as (_, stub):
        user = await create(stub, merchant_id, "dev@example.com")
        assert user.email == "dev@example.com"


async def test_a_token_without_merchant_is_refused(stub):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListUsers(
            pb.ListUsersRequest(),
            metadata=(("authorization", f"Bearer {token(None, USERS_RW)}"),),
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
