"""Merchant A's token can neither read nor change merchant B's data, through any RPC.

Table-driven over every tenant-scoped RPC of every registered service: the RPCs are found by
starting each service in the registry and reading its methods from the descriptor pool, so a
new RPC (or a new service) without a case here fails `test_every_tenant_scoped_rpc_has_a_case`
instead of going untested. Public RPCs (login, webhooks: `(access) = {public: true}`) are not
tenant-scoped; an RPC that is neither public nor tenant-scoped is listed in
NOT_TENANT_SCOPED with the reason.

Per service: B creates data (`arrange`), then for each case A calls with a token that has
exactly the permission the RPC declares, so a refusal has to come from tenancy, not from a
missing permission. A call on B's data must fail with NOT_FOUND or PERMISSION_DENIED; a call
that may succeed (a list, a create in A's own namespace) must return none of B's ids.
Finally B's view of its data (`snapshot`) must be what it was before A's calls.
"""

from __future__ import annotations

import base64
import importlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf import descriptor_pool, field_mask_pb2
from google.protobuf.message import Message

from loyalnest.gen.core.v1 import core_pb2, core_pb2_grpc
from loyalnest.gen.edge.v1 import edge_pb2, edge_pb2_grpc
from loyalnest.gen.events.v1 import core_pb2 as core_events
from loyalnest.gen.platform.v1 import customer_pseudonyms_pb2 as pseudonyms_pb2
from loyalnest.gen.platform.v1 import customer_pseudonyms_pb2_grpc
from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.gen.roles.v1 import roles_pb2, roles_pb2_grpc
from loyalnest.gen.users.v1 import users_pb2, users_pb2_grpc
from loyalnest.gen.xds.envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from loyalnest.platform.auth.policy import access_policy
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.postgres import Database
from loyalnest.platform.server import RunningService
from loyalnest.services.points.orders import OrderEarning, OrderStatus
from loyalnest.services.points.service import DATABASE as POINTS_DATABASE
from loyalnest.services.points.store.postgres import PostgresLedgerStore
from loyalnest.services.registry import SERVICES, spec_for
from tests.auth import KEYSET_PATH, merchant_metadata, service_metadata
from tests.integration.conftest import service_settings_for_tests, serving
from tests.integration.isolation import DENIED, Attack, Case, Metadata, Table
from tests.integration.test_auth_service import (
    ISOLATION_ATTACKS,
    isolation_arrange,
    isolation_snapshot,
)

pytestmark = pytest.mark.integration

B_PERMISSIONS = ("admin:full",)


def _key() -> str:
    return uuid.uuid4().hex


# ---- points -----------------------------------------------------------------------------

_POINTS_CUSTOMERS = ("cust-b-get", "cust-b-earn", "cust-b-redeem", "cust-b-adjust")


async def _points_arrange(ch: grpc.aio.Channel, md: Metadata) -> dict[str, Any]:
    stub = points_pb2_grpc.PointsServiceStub(ch)
    secrets, requests = [], {}
    for customer in _POINTS_CUSTOMERS:
        request = points_pb2.EarnPointsRequest(
            customer_id=customer, points=100, idempotency_key=f"key-{customer}"
        )
        response = await stub.EarnPoints(request, metadata=md)
        secrets.append(response.transaction.transaction_id)
        requests[customer] = request
    create = points_pb2.CreateRewardRequest(
        reward=points_pb2.Reward(
            name="b's reward", kind=points_pb2.REWARD_KIND_FREE_SHIPPING, points_cost=10
        ),
        idempotency_key="key-b-reward",
    )
    reward = (await stub.CreateReward(create, metadata=md)).reward
    secrets.append(reward.reward_id)
    arranged = {"secrets": secrets, "earn": requests, "reward": reward, "create_reward": create}
    return arranged | await _points_arrange_integration(stub, md, secrets)


async def _points_arrange_integration(
    stub: points_pb2_grpc.PointsServiceStub, md: Metadata, secrets: list[str]
) -> dict[str, Any]:
    """B's merchant integration: its id and its signing secret are B's."""
    create = points_pb2.CreateIntegrationRequest(name="b's app", idempotency_key="key-b-app")
    created = await stub.CreateIntegration(create, metadata=md)
    secrets += [created.integration.integration_id, created.secret]
    return {"integration_id": created.integration.integration_id, "create_integration": create}


async def _points_snapshot(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    stub = points_pb2_grpc.PointsServiceStub(ch)
    view = []
    for customer in _POINTS_CUSTOMERS:
        balance = await stub.GetPointsBalance(
            points_pb2.GetPointsBalanceRequest(customer_id=customer), metadata=md
        )
        transactions = await stub.ListTransactions(
            points_pb2.ListTransactionsRequest(customer_id=customer), metadata=md
        )
        view.append((balance, transactions))
    view.append(await stub.ListRewards(points_pb2.ListRewardsRequest(), metadata=md))
    view.append(await stub.ListIntegrations(points_pb2.ListIntegrationsRequest(), metadata=md))
    return view


def _points(method: str, request: Message) -> Attack:
    async def attack(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Message:
        response: Message = await getattr(points_pb2_grpc.PointsServiceStub(ch), method)(
            request, metadata=md
        )
        return response

    return attack


def _points_b(method: str, build: Callable[[dict[str, Any]], Message]) -> Attack:
    async def attack(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Message:
        stub = points_pb2_grpc.PointsServiceStub(ch)
        response: Message = await getattr(stub, method)(build(b), metadata=md)
        return response

    return attack


async def _points_stream_b(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Message:
    call = points_pb2_grpc.PointsServiceStub(ch).StreamPoints(
        points_pb2.StreamPointsRequest(customer_id="cust-b-get"), metadata=md
    )
    try:
        first: Message = await call.read()
    finally:
        call.cancel()
    return first


async def _points_preview_b_customer(
    ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]
) -> Message:
    response: points_pb2.PreviewEarningResponse = await points_pb2_grpc.PointsServiceStub(
        ch
    ).PreviewEarning(
        points_pb2.PreviewEarningRequest(
            customer_id="cust-b-get",
            lines=[points_pb2.PreviewLine(product_id="1", quantity=1, price="10")],
        ),
        metadata=md,
    )
    assert response.tier_id == "", response
    return response


async def _points_replay_b_earn(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Message:
    # B's exact request, idempotency key included: A must get a transaction of its own.
    response: Message = await points_pb2_grpc.PointsServiceStub(ch).EarnPoints(
        b["earn"]["cust-b-earn"], metadata=md
    )
    return response


async def _points_liability_of_a(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Message:
    stub = points_pb2_grpc.PointsServiceStub(ch)
    response = await stub.GetPointsLiability(points_pb2.GetPointsLiabilityRequest(), metadata=md)
    # A's only points are those A's replay of B's earn request credited in A's own ledger
    # (if that case ran first): B's points must not count towards A's figures.
    try:
        own = await stub.GetPointsBalance(
            points_pb2.GetPointsBalanceRequest(customer_id="cust-b-earn"), metadata=md
        )
        a_points = own.balance.balance
    except grpc.aio.AioRpcError as error:
        if error.code() is not grpc.StatusCode.NOT_FOUND:
            raise
        a_points = 0
    assert response.outstanding_points == a_points, response
    return response


async def _points_simulation_of_a(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Message:
    request = points_pb2.SimulateEarningRulesRequest(
        days=30,
        rules=[
            core_events.EarningRule(
                rule_id="r",
                enabled=True,
                type=core_events.EARNING_RULE_TYPE_PLACE_ORDER,
                points_per_currency_unit="1",
            )
        ],
    )
    stub = points_pb2_grpc.PointsServiceStub(ch)
    response = await stub.SimulateEarningRules(request, metadata=md)
    assert (response.orders, response.actual_points) == (0, 0), response
    return response


async def _points_seed(database_url: str, merchant_id: str) -> dict[str, Any]:
    """An order of B's, as the webhook consumer records it (no RPC creates one)."""
    database = Database(ServiceSettings(database_url=database_url), POINTS_DATABASE)
    await database.open()
    try:
        now = datetime.now(UTC)
        order_id = f"{uuid.uuid4().int % 10**12}"
        await PostgresLedgerStore(database).record_order(
            OrderEarning(
                merchant_id=merchant_id,
                order_id=order_id,
                customer_id="cust-b-order",
                points=10,
                eligible_amount=Decimal("10"),
                currency="EUR",
                status=OrderStatus.PENDING,
                approve_at=now,
                created_at=now,
                settings_version=0,
            )
        )
    finally:
        await database.close()
    return {"order_id": order_id, "secrets": ["cust-b-order"]}


POINTS = Table(
    arrange=_points_arrange,
    snapshot=_points_snapshot,
    seed=_points_seed,
    cases={
        "GetPointsBalance": [
            Case(
                _points(
                    "GetPointsBalance", points_pb2.GetPointsBalanceRequest(customer_id="cust-b-get")
                )
            )
        ],
        "ListTransactions": [
            Case(
                _points(
                    "ListTransactions", points_pb2.ListTransactionsRequest(customer_id="cust-b-get")
                )
            )
        ],
        "GetOrderEarning": [
            Case(
                _points_b(
                    "GetOrderEarning",
                    lambda b: points_pb2.GetOrderEarningRequest(order_id=b["order_id"]),
                )
            )
        ],
        "EarnPoints": [Case(_points_replay_b_earn, may_succeed=True)],
        # A's activity for a customer id of B's lands in A's own ledger under A's rules (none:
        # nothing earned); B's customer is untouched.
        "RecordActivity": [
            Case(
                _points(
                    "RecordActivity",
                    points_pb2.RecordActivityRequest(
                        customer_id="cust-b-get", activity="review", idempotency_key=_key()
                    ),
                ),
                may_succeed=True,
            )
        ],
        # A's create with B's very request makes A's own integration (another id, another
        # secret); B's integration cannot be rotated (its secret is B's) nor listed by A.
        "CreateIntegration": [
            Case(
                _points_b("CreateIntegration", lambda b: b["create_integration"]),
                may_succeed=True,
            )
        ],
        "RotateIntegrationSecret": [
            Case(
                _points_b(
                    "RotateIntegrationSecret",
                    lambda b: points_pb2.RotateIntegrationSecretRequest(
                        integration_id=b["integration_id"], idempotency_key=_key()
                    ),
                )
            )
        ],
        "ListIntegrations": [
            Case(
                _points("ListIntegrations", points_pb2.ListIntegrationsRequest()), may_succeed=True
            )
        ],
        # B's transaction id as a redemption id: nothing of B's is found or given back.
        "CancelRedemption": [
            Case(
                _points_b(
                    "CancelRedemption",
                    lambda b: points_pb2.CancelRedemptionRequest(redemption_id=b["secrets"][0]),
                )
            )
        ],
        # A's own ledger only: B's customers hold points, A's liability is empty.
        "GetPointsLiability": [Case(_points_liability_of_a, may_succeed=True)],
        # A's own summary table row (none: events are off here), never B's totals.
        "GetLiabilitySummary": [
            Case(
                _points("GetLiabilitySummary", points_pb2.GetLiabilitySummaryRequest()),
                may_succeed=True,
            )
        ],
        # A's own orders only (none): B's recorded order is not replayed.
        "SimulateEarningRules": [Case(_points_simulation_of_a, may_succeed=True)],
        # Under A's own program: nothing of B's is read.
        "PreviewEarning": [
            Case(
                _points(
                    "PreviewEarning",
                    points_pb2.PreviewEarningRequest(
                        lines=[points_pb2.PreviewLine(product_id="1", quantity=1, price="10")]
                    ),
                ),
                may_succeed=True,
            ),
            # Naming B's customer: A's tiers (none), never B's customer's tier.
            Case(_points_preview_b_customer, may_succeed=True),
        ],
        "RedeemPoints": [
            Case(
                _points(
                    "RedeemPoints",
                    points_pb2.RedeemPointsRequest(
                        customer_id="cust-b-redeem", points=50, idempotency_key="key-cust-b-redeem"
                    ),
                )
            )
        ],
        "AdjustPoints": [
            Case(
                _points(
                    "AdjustPoints",
                    points_pb2.AdjustPointsRequest(
                        customer_id="cust-b-adjust", points=-50, reason="x", idempotency_key=_key()
                    ),
                )
            )
        ],
        "StreamPoints": [Case(_points_stream_b)],
        # A's POS cannot spend B's customer's points (A has no such ledger): the item is
        # rejected, B's balance stays.
        "SyncOfflineTransactions": [
            Case(
                _points(
                    "SyncOfflineTransactions",
                    points_pb2.SyncOfflineTransactionsRequest(
                        device_id="pos-a",
                        transactions=[
                            points_pb2.OfflineTransaction(
                                client_transaction_id="key-cust-b-redeem",
                                customer_id="cust-b-redeem",
                                kind=points_pb2.OFFLINE_TRANSACTION_KIND_REDEEM,
                                points=50,
                                device_time={"seconds": 1},
                            )
                        ],
                    ),
                ),
                may_succeed=True,
            )
        ],
        # B's request, key included: A gets a reward of its own, with another id.
        "CreateReward": [Case(_points_b("CreateReward", lambda b: b["create_reward"]), True)],
        "ListRewards": [
            Case(_points("ListRewards", points_pb2.ListRewardsRequest()), may_succeed=True),
            # B's customer's eligibility: A's own rewards against A's (empty) ledger only.
            Case(
                _points("ListRewards", points_pb2.ListRewardsRequest(customer_id="cust-b-redeem")),
                may_succeed=True,
            ),
        ],
        "UpdateReward": [
            Case(
                _points_b(
                    "UpdateReward",
                    lambda b: points_pb2.UpdateRewardRequest(
                        reward=points_pb2.Reward(reward_id=b["reward"].reward_id, active=False),
                        update_mask=field_mask_pb2.FieldMask(paths=["active"]),
                    ),
                )
            )
        ],
        "RedeemReward": [
            Case(
                _points_b(
                    "RedeemReward",
                    lambda b: points_pb2.RedeemRewardRequest(
                        reward_id=b["reward"].reward_id,
                        customer_id="cust-b-redeem",
                        idempotency_key=_key(),
                    ),
                )
            )
        ],
    },
)


# ---- users ------------------------------------------------------------------------------

_B_EMAIL = "victim@merchant-b.example"
# A second user: the create case replays its request, so A's copy never answers for the first.
_B_EMAIL_2 = "victim.two@merchant-b.example"
# Shopify's id of B's customer: A may know it (ids are not secret), never their birthday.
_B_BIRTHDAY_CUSTOMER = "7390012239999"


async def _users_arrange(ch: grpc.aio.Channel, md: Metadata) -> dict[str, Any]:
    stub = users_pb2_grpc.UsersServiceStub(ch)
    first = (
        await stub.CreateUser(
            users_pb2.CreateUserRequest(
                user=users_pb2.User(email=_B_EMAIL, kind=users_pb2.USER_KIND_STAFF),
                idempotency_key=_key(),
            ),
            metadata=md,
        )
    ).user
    create = users_pb2.CreateUserRequest(
        user=users_pb2.User(email=_B_EMAIL_2, kind=users_pb2.USER_KIND_CUSTOMER),
        idempotency_key="key-b-user",
    )
    second = (await stub.CreateUser(create, metadata=md)).user
    # Cached under user:{id} now: the cache must not serve it across tenants either.
    await stub.GetUser(users_pb2.GetUserRequest(user_id=first.user_id), metadata=md)
    page = await stub.ListUsers(users_pb2.ListUsersRequest(page_size=1), metadata=md)
    birthday = users_pb2.SetCustomerBirthdayRequest(
        customer_id=_B_BIRTHDAY_CUSTOMER,
        birthday=users_pb2.Birthday(month=12, day=6, year=1990),
        consent=True,
        idempotency_key="key-b-birthday",
    )
    await stub.SetCustomerBirthday(birthday, metadata=md)
    return {
        "secrets": [first.user_id, second.user_id],
        "user": first,
        "create": create,
        "page_token": page.next_page_token,
        "birthday": birthday,
    }


async def _users_snapshot(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    stub = users_pb2_grpc.UsersServiceStub(ch)
    return [
        await stub.GetUser(users_pb2.GetUserRequest(user_id=b["user"].user_id), metadata=md),
        await stub.LookupUser(users_pb2.LookupUserRequest(email=_B_EMAIL), metadata=md),
        await stub.ListUsers(users_pb2.ListUsersRequest(), metadata=md),
        await stub.GetCustomerBirthday(
            users_pb2.GetCustomerBirthdayRequest(customer_id=_B_BIRTHDAY_CUSTOMER), metadata=md
        ),
    ]


def _users(method: str, build: Callable[[dict[str, Any]], Message]) -> Attack:
    async def attack(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Message:
        response: Message = await getattr(users_pb2_grpc.UsersServiceStub(ch), method)(
            build(b), metadata=md
        )
        return response

    return attack


USERS = Table(
    arrange=_users_arrange,
    snapshot=_users_snapshot,
    cases={
        "GetUser": [
            Case(_users("GetUser", lambda b: users_pb2.GetUserRequest(user_id=b["user"].user_id)))
        ],
        "LookupUser": [
            Case(_users("LookupUser", lambda b: users_pb2.LookupUserRequest(email=_B_EMAIL)))
        ],
        "UpdateUser": [
            Case(
                _users(
                    "UpdateUser",
                    lambda b: users_pb2.UpdateUserRequest(
                        user=users_pb2.User(
                            user_id=b["user"].user_id,
                            email="mine@a.example",
                            kind=users_pb2.USER_KIND_CUSTOMER,
                        ),
                        update_mask=field_mask_pb2.FieldMask(paths=["email", "kind"]),
                        idempotency_key=_key(),
                    ),
                )
            )
        ],
        "ListUsers": [
            Case(_users("ListUsers", lambda b: users_pb2.ListUsersRequest()), may_succeed=True),
            Case(
                _users(
                    "ListUsers", lambda b: users_pb2.ListUsersRequest(page_token=b["page_token"])
                ),
                also_denied=frozenset({grpc.StatusCode.INVALID_ARGUMENT}),
            ),
        ],
        # B's request, key and email included: A gets a user of its own, not B's, and is not
        # told that B has this email (ALREADY_EXISTS would say so).
        "CreateUser": [Case(_users("CreateUser", lambda b: b["create"]), may_succeed=True)],
        "GetCustomerBirthday": [
            Case(
                _users(
                    "GetCustomerBirthday",
                    lambda b: users_pb2.GetCustomerBirthdayRequest(
                        customer_id=_B_BIRTHDAY_CUSTOMER
                    ),
                )
            )
        ],
        # B's request, key included: A keeps a birthday of its own; B's is unchanged
        # (the snapshot), and withdrawing in A's name deletes nothing of B's.
        "SetCustomerBirthday": [
            Case(_users("SetCustomerBirthday", lambda b: b["birthday"]), may_succeed=True),
            Case(
                _users(
                    "SetCustomerBirthday",
                    lambda b: users_pb2.SetCustomerBirthdayRequest(
                        customer_id=_B_BIRTHDAY_CUSTOMER, consent=False, idempotency_key=_key()
                    ),
                ),
                may_succeed=True,
            ),
        ],
        # Internal: a merchant's token is refused whatever it holds (the service-token side,
        # one merchant's listing never showing another's: test_users_birthdays.py).
        "ListBirthdays": [
            Case(
                _users(
                    "ListBirthdays",
                    lambda b: users_pb2.ListBirthdaysRequest(year=2026, month=12, day=6),
                )
            )
        ],
    },
)


# ---- roles ------------------------------------------------------------------------------


async def _roles_arrange(ch: grpc.aio.Channel, md: Metadata) -> dict[str, Any]:
    stub = roles_pb2_grpc.RolesServiceStub(ch)
    create = roles_pb2.CreateRoleRequest(
        role=roles_pb2.Role(name="B admin", permissions=["points:*", "users:*"]),
        idempotency_key="key-b-role",
    )
    role = (await stub.CreateRole(create, metadata=md)).role
    other = (
        await stub.CreateRole(
            roles_pb2.CreateRoleRequest(
                role=roles_pb2.Role(name="B viewer", permissions=["points:read"]),
                idempotency_key=_key(),
            ),
            metadata=md,
        )
    ).role
    # Two users with B's roles: one for the reads, one that A assigns a role of its own to.
    user_id, user_id_2 = str(uuid.uuid4()), str(uuid.uuid4())
    for user in (user_id, user_id_2):
        await stub.AssignRole(
            roles_pb2.AssignRoleRequest(user_id=user, role_id=role.role_id, idempotency_key=_key()),
            metadata=md,
        )
    page = await stub.ListRoles(roles_pb2.ListRolesRequest(page_size=1), metadata=md)
    return {
        "secrets": [role.role_id, other.role_id],
        "role": role,
        "user_id": user_id,
        "user_id_2": user_id_2,
        "create": create,
        "page_token": page.next_page_token,
    }


async def _roles_snapshot(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    stub = roles_pb2_grpc.RolesServiceStub(ch)
    return [
        await stub.GetRole(roles_pb2.GetRoleRequest(role_id=b["role"].role_id), metadata=md),
        await stub.GetUserRole(roles_pb2.GetUserRoleRequest(user_id=b["user_id"]), metadata=md),
        await stub.GetUserRole(roles_pb2.GetUserRoleRequest(user_id=b["user_id_2"]), metadata=md),
        await stub.ListRoles(roles_pb2.ListRolesRequest(), metadata=md),
    ]


def _roles(method: str, build: Callable[[dict[str, Any]], Message]) -> Attack:
    async def attack(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Message:
        response: Message = await getattr(roles_pb2_grpc.RolesServiceStub(ch), method)(
            build(b), metadata=md
        )
        return response

    return attack


async def _assign_own_role_to_b_user(
    ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]
) -> Message:
    # A's own role on B's user id: at most an assignment in A's namespace; B's stays.
    stub = roles_pb2_grpc.RolesServiceStub(ch)
    mine = await stub.CreateRole(
        roles_pb2.CreateRoleRequest(
            role=roles_pb2.Role(name="A role", permissions=["points:read"]), idempotency_key=_key()
        ),
        metadata=md,
    )
    response: Message = await stub.AssignRole(
        roles_pb2.AssignRoleRequest(
            user_id=b["user_id_2"], role_id=mine.role.role_id, idempotency_key=_key()
        ),
        metadata=md,
    )
    return response


ROLES = Table(
    arrange=_roles_arrange,
    snapshot=_roles_snapshot,
    cases={
        "GetRole": [
            Case(_roles("GetRole", lambda b: roles_pb2.GetRoleRequest(role_id=b["role"].role_id)))
        ],
        "GetUserRole": [
            Case(
                _roles("GetUserRole", lambda b: roles_pb2.GetUserRoleRequest(user_id=b["user_id"]))
            )
        ],
        "UpdateRole": [
            Case(
                _roles(
                    "UpdateRole",
                    lambda b: roles_pb2.UpdateRoleRequest(
                        role=roles_pb2.Role(role_id=b["role"].role_id, permissions=["points:read"]),
                        update_mask=field_mask_pb2.FieldMask(paths=["permissions"]),
                        idempotency_key=_key(),
                    ),
                )
            )
        ],
        "AssignRole": [
            Case(
                _roles(
                    "AssignRole",
                    lambda b: roles_pb2.AssignRoleRequest(
                        user_id=str(uuid.uuid4()), role_id=b["role"].role_id, idempotency_key=_key()
                    ),
                )
            ),
            Case(_assign_own_role_to_b_user, may_succeed=True),
        ],
        "ListRoles": [
            Case(_roles("ListRoles", lambda b: roles_pb2.ListRolesRequest()), may_succeed=True),
            Case(
                _roles(
                    "ListRoles", lambda b: roles_pb2.ListRolesRequest(page_token=b["page_token"])
                ),
                also_denied=frozenset({grpc.StatusCode.INVALID_ARGUMENT}),
            ),
        ],
        "CreateRole": [Case(_roles("CreateRole", lambda b: b["create"]), may_succeed=True)],
    },
)


# ---- core -------------------------------------------------------------------------------

# B's program names this collection: A's reads must never show it.
_B_COLLECTION = "gid://shopify/Collection/b-secret"


async def _core_arrange(ch: grpc.aio.Channel, md: Metadata) -> dict[str, Any]:
    stub = core_pb2_grpc.CoreServiceStub(ch)
    await stub.UpdateProgramSettings(
        core_pb2.UpdateProgramSettingsRequest(
            settings=core_events.ProgramSettings(
                multipliers=[
                    core_events.EarningMultiplier(
                        collection_id=_B_COLLECTION, product_ids=["b-product"], multiplier="2"
                    )
                ]
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["multipliers"]),
            idempotency_key="key-b-settings",
        ),
        metadata=md,
    )
    await stub.ChangePlan(
        core_pb2.ChangePlanRequest(plan="plus", idempotency_key="key-b-plan"), metadata=md
    )
    create = core_pb2.CreateCustomerRequest(
        customer=core_pb2.Customer(shopify_customer_id="b-shopify-1", email="b@merchant-b.example"),
        idempotency_key="key-b-customer",
    )
    customer = (await stub.CreateCustomer(create, metadata=md)).customer
    batch = core_pb2.ImportCustomersRequest(
        batch_id="b-batch", customers=[core_pb2.Customer(shopify_customer_id="b-shopify-2")]
    )
    imported = await stub.ImportCustomers(batch, metadata=md)
    return {
        "secrets": [
            _B_COLLECTION,
            customer.customer_id,
            imported.import_id,
            imported.results[0].customer_id,
        ],
        "customer": customer,
        "create": create,
        "batch": batch,
    }


async def _core_snapshot(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    stub = core_pb2_grpc.CoreServiceStub(ch)
    return [
        await stub.GetProgramSettings(core_pb2.GetProgramSettingsRequest(), metadata=md),
        await stub.GetPlan(core_pb2.GetPlanRequest(), metadata=md),
        await stub.GetUsage(core_pb2.GetUsageRequest(), metadata=md),
        await stub.GetCustomer(
            core_pb2.GetCustomerRequest(customer_id=b["customer"].customer_id), metadata=md
        ),
    ]


def _core(method: str, build: Callable[[dict[str, Any]], Message]) -> Attack:
    async def attack(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Message:
        response: Message = await getattr(core_pb2_grpc.CoreServiceStub(ch), method)(
            build(b), metadata=md
        )
        return response

    return attack


CORE = Table(
    arrange=_core_arrange,
    snapshot=_core_snapshot,
    cases={
        # Per-merchant singletons: A reads and changes only its own.
        "GetProgramSettings": [
            Case(
                _core("GetProgramSettings", lambda b: core_pb2.GetProgramSettingsRequest()),
                may_succeed=True,
            )
        ],
        "UpdateProgramSettings": [
            Case(
                _core(
                    "UpdateProgramSettings",
                    lambda b: core_pb2.UpdateProgramSettingsRequest(
                        settings=core_events.ProgramSettings(program_enabled=False),
                        update_mask=field_mask_pb2.FieldMask(paths=["program_enabled"]),
                        idempotency_key="key-b-settings",  # B's key: A's own namespace
                    ),
                ),
                may_succeed=True,
            )
        ],
        "GetPlan": [Case(_core("GetPlan", lambda b: core_pb2.GetPlanRequest()), may_succeed=True)],
        "ChangePlan": [
            Case(
                _core(
                    "ChangePlan",
                    lambda b: core_pb2.ChangePlanRequest(plan="free", idempotency_key="key-b-plan"),
                ),
                may_succeed=True,
            )
        ],
        "GetUsage": [
            Case(_core("GetUsage", lambda b: core_pb2.GetUsageRequest()), may_succeed=True)
        ],
        "GetCustomer": [
            Case(
                _core(
                    "GetCustomer",
                    lambda b: core_pb2.GetCustomerRequest(customer_id=b["customer"].customer_id),
                )
            )
        ],
        # B's requests, keys and shopify ids included: A gets customers of its own, and is not
        # told that B has them (ALREADY_EXISTS would say so).
        "CreateCustomer": [Case(_core("CreateCustomer", lambda b: b["create"]), may_succeed=True)],
        "ImportCustomers": [Case(_core("ImportCustomers", lambda b: b["batch"]), may_succeed=True)],
    },
)


# B's bucket of this endpoint: A's view of its limits must never list it.
_B_ENDPOINT = "/loyalnest.secret.v1.BOnly/Endpoint"


def _merchant_of(md: Metadata) -> str:
    token = dict(md)["authorization"].removeprefix("Bearer ")
    return str(jwt.decode(token, options={"verify_signature": False})["merchant_id"])


async def _edge_arrange(ch: grpc.aio.Channel, md: Metadata) -> dict[str, Any]:
    # What Envoy asks before routing one of B's calls: creates B's bucket for the endpoint.
    request = rls_pb2.RateLimitRequest(domain="loyalnest")
    descriptor = request.descriptors.add()
    descriptor.entries.add(key="merchant_id", value=_merchant_of(md))
    descriptor.entries.add(key="endpoint", value=_B_ENDPOINT)
    await rls_pb2_grpc.RateLimitServiceStub(ch).ShouldRateLimit(request)
    return {"secrets": [_B_ENDPOINT]}


async def _edge_snapshot(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    stub = edge_pb2_grpc.EdgeServiceStub(ch)
    limits = await stub.GetRateLimits(edge_pb2.GetRateLimitsRequest(), metadata=md)
    # Which buckets B has and its plan, not their fill: tokens refill with time, so `remaining`
    # between two snapshots depends on how long A's calls took, not on what A did.
    return (limits.plan, limits.burst, sorted(bucket.endpoint for bucket in limits.buckets))


async def _edge_get_rate_limits(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Message:
    stub = edge_pb2_grpc.EdgeServiceStub(ch)
    response: Message = await stub.GetRateLimits(edge_pb2.GetRateLimitsRequest(), metadata=md)
    return response


EDGE = Table(
    arrange=_edge_arrange,
    snapshot=_edge_snapshot,
    # A's own limits: allowed, never showing B's buckets.
    cases={"GetRateLimits": [Case(_edge_get_rate_limits, may_succeed=True)]},
)


# ---- the edge's customer pseudonyms (internal: services call it) ---------------------------

_B_SHOPIFY_CUSTOMER = "7390012299001"


def _merchant_of(md: Metadata) -> str:
    token = dict(md)["authorization"].removeprefix("Bearer ")
    merchant: str = jwt.decode(token, options={"verify_signature": False})["merchant_id"]
    return merchant


def _pseudonymize(merchant_id: str, customer: str) -> pseudonyms_pb2.PseudonymizeRequest:
    return pseudonyms_pb2.PseudonymizeRequest(
        customers=[pseudonyms_pb2.MerchantCustomer(merchant_id=merchant_id, value=customer)]
    )


def _resolve(merchant_id: str, pseudonym: str) -> pseudonyms_pb2.ResolveRequest:
    return pseudonyms_pb2.ResolveRequest(
        pseudonyms=[pseudonyms_pb2.MerchantCustomer(merchant_id=merchant_id, value=pseudonym)]
    )


def _begin_erasure(merchant_id: str, customer: str) -> pseudonyms_pb2.BeginErasureRequest:
    return pseudonyms_pb2.BeginErasureRequest(
        customer=pseudonyms_pb2.MerchantCustomer(merchant_id=merchant_id, value=customer),
        erasure_key=bytes(32),
    )


def _pseudonyms_stub(ch: grpc.aio.Channel) -> Any:
    stub = customer_pseudonyms_pb2_grpc.CustomerPseudonymServiceStub
    return stub(ch)  # type: ignore[no-untyped-call]


async def _pseudonyms_arrange(ch: grpc.aio.Channel, md: Metadata) -> dict[str, Any]:
    merchant = _merchant_of(md)
    answer = await _pseudonyms_stub(ch).Pseudonymize(
        _pseudonymize(merchant, _B_SHOPIFY_CUSTOMER), metadata=md
    )
    (pseudonym,) = answer.pseudonyms
    return {
        "secrets": [pseudonym, _B_SHOPIFY_CUSTOMER],
        "merchant": merchant,
        "pseudonym": pseudonym,
    }


async def _pseudonyms_snapshot(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    stub = _pseudonyms_stub(ch)
    resolved = await stub.Resolve(_resolve(b["merchant"], b["pseudonym"]), metadata=md)
    again = await stub.Pseudonymize(_pseudonymize(b["merchant"], _B_SHOPIFY_CUSTOMER), metadata=md)
    return (list(resolved.customers), list(again.pseudonyms))


def _pseudonyms_attack(method: str, build: Callable[[str, dict[str, Any]], Message]) -> Attack:
    """`build(A's merchant, what B arranged)` -> the request A sends."""

    async def attack(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Message:
        response: Message = await getattr(_pseudonyms_stub(ch), method)(
            build(_merchant_of(md), b), metadata=md
        )
        return response

    return attack


PSEUDONYMS = Table(
    arrange=_pseudonyms_arrange,
    snapshot=_pseudonyms_snapshot,
    cases={
        "Pseudonymize": [
            # B's customer under B's merchant: A's token acts for A only.
            Case(
                _pseudonyms_attack(
                    "Pseudonymize", lambda a, b: _pseudonymize(b["merchant"], _B_SHOPIFY_CUSTOMER)
                )
            ),
            # The same Shopify id under A's own merchant: a pseudonym of A's, never B's.
            Case(
                _pseudonyms_attack(
                    "Pseudonymize", lambda a, b: _pseudonymize(a, _B_SHOPIFY_CUSTOMER)
                ),
                may_succeed=True,
            ),
        ],
        "Resolve": [
            Case(
                _pseudonyms_attack("Resolve", lambda a, b: _resolve(b["merchant"], b["pseudonym"]))
            ),
            # B's pseudonym under A's merchant: unknown there, never B's customer.
            Case(
                _pseudonyms_attack("Resolve", lambda a, b: _resolve(a, b["pseudonym"])),
                may_succeed=True,
            ),
        ],
        "BeginErasure": [
            # B's customer would resolve to an anonymous id from then on.
            Case(
                _pseudonyms_attack(
                    "BeginErasure",
                    lambda a, b: _begin_erasure(b["merchant"], _B_SHOPIFY_CUSTOMER),
                )
            ),
            # The same Shopify id under A's own merchant: A's customer, never B's.
            Case(
                _pseudonyms_attack(
                    "BeginErasure", lambda a, b: _begin_erasure(a, _B_SHOPIFY_CUSTOMER)
                ),
                may_succeed=True,
            ),
        ],
    },
    # Services call it, never a merchant's staff: AdminCore calls all three (its relay and
    # consumers, and erasures).
    internal_caller="admin_core",
)


# ---- the table --------------------------------------------------------------------------

# Fully qualified gRPC service -> its table. A registered service missing here fails.
AUTH = Table(
    arrange=isolation_arrange,
    snapshot=isolation_snapshot,
    cases={method: [Case(a) for a in attacks] for method, attacks in ISOLATION_ATTACKS.items()},
)

TABLES: dict[str, Table] = {
    "loyalnest.auth.v1.AuthService": AUTH,
    "loyalnest.core.v1.CoreService": CORE,
    "loyalnest.edge.v1.EdgeService": EDGE,
    "loyalnest.platform.v1.CustomerPseudonymService": PSEUDONYMS,
    "loyalnest.points.v1.PointsService": POINTS,
    "loyalnest.users.v1.UsersService": USERS,
    "loyalnest.roles.v1.RolesService": ROLES,
}
# Services whose table lives with their own tests (`ISOLATION` in the module, as `loyalnest
# new-service` scaffolds it): fully qualified gRPC service -> test module.
TABLES_ELSEWHERE: dict[str, str] = {
    # "loyalnest.<name>.v1.<Name>Service": "tests.integration.test_<name>_service",
    "loyalnest.event_tracking.v1.EventTrackingService": (
        "tests.integration.test_event_tracking_service"
    ),
    "loyalnest.gamification.v1.GamificationService": "tests.integration.test_gamification_service",
    "loyalnest.campaign.v1.CampaignService": "tests.integration.test_campaign_service",
    "loyalnest.products.v1.ProductsService": "tests.integration.test_products_service",
    "loyalnest.admin_core.v1.AdminCoreService": "tests.integration.test_admin_core_service",
    "loyalnest.rfm.v1.RfmService": "tests.integration.test_rfm_service",
    "loyalnest.referrals.v1.ReferralsService": "tests.integration.test_referrals_service",
}
for _service, _module in TABLES_ELSEWHERE.items():
    TABLES[_service] = importlib.import_module(_module).ISOLATION
# "/pkg.Service/Method" -> why it touches no merchant's data (reviewed like code).
NOT_TENANT_SCOPED: dict[str, str] = {}


def service_settings(name: str, database_url: str, cache_url: str) -> Any:
    """Settings for any registered service: common test values, plus what some services need.

    pydantic-settings ignores values a service does not declare, so every service gets all.
    """
    values: dict[str, Any] = {
        "redis_url": cache_url,
        "users_encryption_key": base64.b64encode(os.urandom(32)).decode(),
        "users_blind_index_key": base64.b64encode(os.urandom(32)).decode(),
        "core_encryption_key": base64.b64encode(os.urandom(32)).decode(),
        "core_blind_index_key": base64.b64encode(os.urandom(32)).decode(),
        # Both plans free: B's change of plan applies at once, with no shop to bill (paid plans
        # and their webhooks' tenancy: test_billing_and_uninstall.py).
        "core_plans": {"free": {"customers_limit": 100}, "plus": {}},
        "auth_signing_keys_path": KEYSET_PATH,
        "auth_encryption_key": base64.b64encode(os.urandom(32)).decode(),
        "auth_blind_index_key": base64.b64encode(os.urandom(32)).decode(),
        "shopify_api_secret": "isolation-test-secret",
    }
    return service_settings_for_tests(spec_for(name).settings_type, database_url, **values)


@pytest.fixture(params=sorted(SERVICES))
async def service(
    request: pytest.FixtureRequest,
    database_url: str,
    redis_url: str,
) -> AsyncIterator[RunningService]:
    name = request.param
    async with serving(spec_for(name), service_settings(name, database_url, redis_url)) as svc:
        yield svc


def caller_metadata(
    table: Table, service: str, merchant_id: str, permissions: tuple[str, ...]
) -> Metadata:
    """A merchant's token for the table's RPCs: a user's, or for an internal gRPC service
    the calling service's, acting for the merchant."""
    if table.internal_caller is None:
        return merchant_metadata(merchant_id, permissions)
    return service_metadata(table.internal_caller, merchant_id, permissions, service)


def tenant_scoped_methods(svc: RunningService) -> dict[str, list[str]]:
    """gRPC service -> its methods that need a token, from the descriptor pool."""
    pool = descriptor_pool.Default()
    found: dict[str, list[str]] = {}
    for registration in svc.components.registrations:
        descriptor = pool.FindServiceByName(registration.service_name)
        found[descriptor.full_name] = [
            method.name
            for method in descriptor.methods
            if not access_policy(f"/{descriptor.full_name}/{method.name}").public
            and f"/{descriptor.full_name}/{method.name}" not in NOT_TENANT_SCOPED
        ]
    return found


async def test_every_tenant_scoped_rpc_has_a_case(service: RunningService) -> None:
    missing = [
        f"/{name}/{method}"
        for name, methods in tenant_scoped_methods(service).items()
        for method in methods
        if name not in TABLES or method not in TABLES[name].cases
    ]
    assert not missing, f"tenant-scoped RPCs without an isolation case: {missing}"


async def test_merchant_a_cannot_read_or_change_merchant_b_data(
    service: RunningService, database_url: str
) -> None:
    merchant_a, merchant_b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    failures: list[str] = []
    async with grpc.aio.insecure_channel(service.address) as channel:
        for name, methods in tenant_scoped_methods(service).items():
            if not methods:  # e.g. Envoy's rate-limit check: infrastructure, no tenant data
                continue
            table = TABLES.get(name)
            if table is None:
                pytest.fail(f"{name} has no isolation table (see TABLES)")
            b_md = caller_metadata(table, service.name, merchant_b, B_PERMISSIONS)
            b = await table.arrange(channel, b_md)
            if table.seed is not None:
                seeded = await table.seed(database_url, merchant_b)
                b = b | seeded | {"secrets": [*b["secrets"], *seeded["secrets"]]}
            before = await table.snapshot(channel, b_md, b)
            for method in methods:
                full = f"/{name}/{method}"
                # Exactly the declared permission: a refusal must come from tenancy.
                permission = access_policy(full).permission
                a_md = caller_metadata(
                    table, service.name, merchant_a, (permission,) if permission else ()
                )
                for index, case in enumerate(table.cases.get(method, [])):
                    label = f"{full}[{index}]"
                    try:
                        response = await case.attack(channel, a_md, b)
                    except grpc.aio.AioRpcError as error:
                        if error.code() not in DENIED | case.also_denied:
                            failures.append(f"{label}: {error.code().name} {error.details()}")
                        continue
                    if not case.may_succeed:
                        failures.append(f"{label}: succeeded on B's data: {response}")
                        continue
                    leaked = [s for s in b["secrets"] if s in str(response)]
                    if leaked:
                        failures.append(f"{label}: response shows B's {leaked}: {response}")
            after = await table.snapshot(channel, b_md, b)
            if after != before:
                failures.append(f"{name}: B's data changed:\n{before}\n->\n{after}")
    assert not failures, "\n".join(failures)
