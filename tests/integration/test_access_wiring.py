"""The calls that govern access, through real processes: PostgreSQL, Valkey, a Kafka-protocol
broker (tansu), Envoy, and the real Auth, Roles, edge and Points services.

- A staff member's token carries their role's permissions (Auth asks Roles), and loses them
  when the role changes: role.assigned / role.updated reach Auth over the broker, which
  revokes the live tokens; the next refresh carries the new permissions.
- The gateway never routes GetShopAccessToken (REST or native gRPC), whoever asks.
- Webhooks of an unknown or uninstalled merchant are acknowledged (200) and skipped, by the
  edge and by Points' consumer, counted; app/uninstalled marks the merchant uninstalled.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import psycopg
import pytest
from google.api import httpbody_pb2
from google.protobuf import field_mask_pb2
from prometheus_client import REGISTRY

from loyalnest.gateway import Upstream
from loyalnest.gateway.edge import EdgePolicy, JwtProvider
from loyalnest.gen.auth.v1 import auth_pb2, auth_pb2_grpc
from loyalnest.gen.edge.v1 import edge_pb2, edge_pb2_grpc
from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.gen.roles.v1 import roles_pb2, roles_pb2_grpc
from loyalnest.platform.auth.service_identity import service_credential
from loyalnest.platform.auth.tokens import SERVICE
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.server import RunningService
from loyalnest.services.auth.events import CONSUMER_GROUP as AUTH_CONSUMER_GROUP
from loyalnest.services.auth.service import SERVICE_NAME as AUTH_SERVICE
from loyalnest.services.auth.service import SPEC as AUTH
from loyalnest.services.edge.service import SERVICE_NAME as EDGE_SERVICE
from loyalnest.services.edge.service import SPEC as EDGE
from loyalnest.services.edge.service import EdgeSettings
from loyalnest.services.edge.signing import shopify_headers, webhook_path
from loyalnest.services.points.service import SPEC as POINTS
from loyalnest.services.roles.service import SPEC as ROLES
from tests.auth import ISSUER, JWKS_PATH, token
from tests.integration.broker import BrokerProcess
from tests.integration.conftest import (
    eventually,
    points_settings,
    service_settings_for_tests,
    serving,
)
from tests.integration.events_worker import FAST_EVENTS
from tests.integration.shopify_standin import ShopifyStandIn
from tests.integration.test_auth_service import auth_settings, bearer, install, status_of
from tests.integration.test_gateway_validate import gateway_config, http, running_gateway
from tests.integration.test_service_identity import MASTER_KEY, POINTS_CREDENTIAL

pytestmark = pytest.mark.integration

SECRET = "access-wiring-webhook-secret"


def events_on(broker: BrokerProcess) -> dict[str, Any]:
    return {
        **FAST_EVENTS,
        "events_enabled": True,
        "kafka_bootstrap_servers": broker.bootstrap_servers,
    }


def auth_with(database_url: str, redis_url: str, shopify: ShopifyStandIn, **overrides: Any) -> Any:
    return auth_settings(
        database_url,
        redis_url,
        shopify,
        auth_service_credential_key=base64.b64encode(MASTER_KEY).decode(),
        **overrides,
    )


def claims_of(access_token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    return decoded


# ---- staff permissions from roles ---------------------------------------------------------


@contextlib.asynccontextmanager
async def auth_and_roles(
    database_url: str, redis_url: str, shopify: ShopifyStandIn
) -> AsyncIterator[tuple[RunningService, RunningService]]:
    broker = BrokerProcess()
    await broker.start()
    try:
        roles_settings = service_settings_for_tests(
            ServiceSettings, database_url, redis_url=redis_url, **events_on(broker)
        )
        async with serving(ROLES, roles_settings) as roles:
            settings = auth_with(
                database_url,
                redis_url,
                shopify,
                # Auth's declared call to Roles (platform.calls), with its own tokens.
                call_targets={"roles": roles.address},
                **events_on(broker),
            )
            async with serving(AUTH, settings) as auth:
                yield auth, roles
    finally:
        broker.close()


async def auth_applied_every_role_event(database_url: str) -> bool:
    """Every role event Roles wrote to its outbox (there are some) is in Auth's inbox."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM"
            " auth.processed_events p WHERE p.consumer = %s AND p.event_id = o.event_id::text))"
            " FROM roles.outbox o WHERE o.event_type = ANY(%s)",
            (AUTH_CONSUMER_GROUP, ["role.assigned", "role.updated"]),
        )
        row = await cursor.fetchone()
    return row is not None and row[0] > 0 and row[1] == 0


async def test_a_staff_token_carries_its_role_and_loses_it_when_the_role_changes(
    database_url: str, redis_url: str, shopify: ShopifyStandIn
) -> None:
    async with (
        auth_and_roles(database_url, redis_url, shopify) as (auth, roles),
        grpc.aio.insecure_channel(auth.address) as auth_channel,
        grpc.aio.insecure_channel(roles.address) as roles_channel,
    ):
        auth_stub = auth_pb2_grpc.AuthServiceStub(auth_channel)
        roles_stub = roles_pb2_grpc.RolesServiceStub(roles_channel)
        owner = (await install(auth_stub, shopify, "staffed.myshopify.com")).tokens
        as_owner = bearer(owner.access_token)

        async def role(name: str, permissions: list[str]) -> roles_pb2.Role:
            created = await roles_stub.CreateRole(
                roles_pb2.CreateRoleRequest(
                    role=roles_pb2.Role(name=name, permissions=permissions),
                    idempotency_key=uuid.uuid4().hex,
                ),
                metadata=as_owner,
            )
            return created.role

        # admin:analytics is a merchant's to name in a role, but not what its owner holds:
        # Auth leaves it out of the token.
        support = await role("Support", ["admin:analytics", "points:read", "roles:read"])
        viewer = await role("Viewer", ["points:read"])
        staff = str(uuid.uuid4())
        await roles_stub.AssignRole(
            roles_pb2.AssignRoleRequest(
                user_id=staff, role_id=support.role_id, idempotency_key=uuid.uuid4().hex
            ),
            metadata=as_owner,
        )

        issued = await auth_stub.IssueStaffSession(
            auth_pb2.IssueStaffSessionRequest(user_id=staff), metadata=as_owner
        )
        claims = claims_of(issued.tokens.access_token)
        assert (
            claims["sub"] == staff
            and claims["merchant_id"] == claims_of(owner.access_token)["merchant_id"]
        )
        assert claims["perms"] == ["points:read", "roles:read"]
        assert (issued.role_id, list(issued.permissions)) == (
            support.role_id,
            ["points:read", "roles:read"],
        )
        as_staff = bearer(issued.tokens.access_token)
        listed = await roles_stub.ListRoles(roles_pb2.ListRolesRequest(), metadata=as_staff)
        assert support.role_id in {r.role_id for r in listed.roles}

        # Opening a session never hands out more than the caller holds; no role: NOT_FOUND.
        weak = bearer(token(claims["merchant_id"], ["roles:write", "points:read"]))
        assert await status_of(
            auth_stub.IssueStaffSession(
                auth_pb2.IssueStaffSessionRequest(user_id=staff), metadata=weak
            )
        ) == (grpc.StatusCode.PERMISSION_DENIED)
        assert await status_of(
            auth_stub.IssueStaffSession(
                auth_pb2.IssueStaffSessionRequest(user_id=str(uuid.uuid4())), metadata=as_owner
            )
        ) == (grpc.StatusCode.NOT_FOUND)

        # Demoted: role.assigned reaches Auth, which revokes the live token at once.
        await roles_stub.AssignRole(
            roles_pb2.AssignRoleRequest(
                user_id=staff, role_id=viewer.role_id, idempotency_key=uuid.uuid4().hex
            ),
            metadata=as_owner,
        )

        async def staff_token_revoked(metadata: Any) -> bool:
            try:
                await roles_stub.ListRoles(roles_pb2.ListRolesRequest(), metadata=metadata)
            except grpc.aio.AioRpcError as error:
                return error.code() == grpc.StatusCode.UNAUTHENTICATED
            return False

        await eventually(lambda: staff_token_revoked(as_staff), 30, "the staff token revoked")
        # Revocations revoke every live token of the user or role, whatever event applies
        # them: one still in flight would revoke the token refreshed below as well (a CI run
        # saw the roles' creation revoke the first token and the demotion, three seconds
        # late, the refreshed one).
        await eventually(
            lambda: auth_applied_every_role_event(database_url), 30, "Auth caught up with Roles"
        )
        # The session lives on: the refresh carries the new role's permissions.
        refreshed = (
            await auth_stub.RefreshToken(
                auth_pb2.RefreshTokenRequest(refresh_token=issued.tokens.refresh_token)
            )
        ).tokens
        assert refreshed.session_id == issued.tokens.session_id
        assert claims_of(refreshed.access_token)["perms"] == ["points:read"]
        as_viewer = bearer(refreshed.access_token)
        assert await status_of(
            roles_stub.ListRoles(roles_pb2.ListRolesRequest(), metadata=as_viewer)
        ) == (grpc.StatusCode.PERMISSION_DENIED)

        # The role itself changes: role.updated revokes its holders' tokens the same way.
        await roles_stub.UpdateRole(
            roles_pb2.UpdateRoleRequest(
                role=roles_pb2.Role(role_id=viewer.role_id, permissions=["roles:read"]),
                update_mask=field_mask_pb2.FieldMask(paths=["permissions"]),
                idempotency_key=uuid.uuid4().hex,
            ),
            metadata=as_owner,
        )
        await eventually(lambda: staff_token_revoked(as_viewer), 30, "the viewer token revoked")
        await eventually(
            lambda: auth_applied_every_role_event(database_url), 30, "Auth caught up with Roles"
        )
        again = (
            await auth_stub.RefreshToken(
                auth_pb2.RefreshTokenRequest(refresh_token=refreshed.refresh_token)
            )
        ).tokens
        assert claims_of(again.access_token)["perms"] == ["roles:read"]
        await roles_stub.ListRoles(
            roles_pb2.ListRolesRequest(), metadata=bearer(again.access_token)
        )
        # The owner's session was never touched.
        await roles_stub.ListRoles(roles_pb2.ListRolesRequest(), metadata=as_owner)


# ---- webhooks of unknown and uninstalled merchants; the shop token behind the gateway ------


@dataclass
class Mesh:
    gateway_url: str
    gateway_address: str
    auth: auth_pb2_grpc.AuthServiceStub
    points: points_pb2_grpc.PointsServiceStub
    unchecked_edge: str  # an edge without Auth (as before this change): Points must check

    async def deliver(self, shop: str, topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A signed delivery through the gateway (REST, as Shopify sends it): 200 or fail."""
        body = json.dumps(payload).encode()
        headers = shopify_headers(body, topic=topic, shop_domain=shop, secret=SECRET)
        response = await http(
            "POST", self.gateway_url + webhook_path(topic), body=body, headers=headers
        )
        assert response.status == 200, (response.status, response.body)
        answer: dict[str, Any] = response.json()
        return answer

    async def deliver_unchecked(self, shop: str, topic: str, payload: dict[str, Any]) -> int:
        """The same, straight to the edge that does not ask Auth (what the transcoder does)."""
        body = json.dumps(payload).encode()
        headers = shopify_headers(body, topic=topic, shop_domain=shop, secret=SECRET)
        resource, action = topic.split("/")
        async with grpc.aio.insecure_channel(self.unchecked_edge) as channel:
            response = await edge_pb2_grpc.EdgeServiceStub(channel).ReceiveWebhook(
                edge_pb2.ReceiveWebhookRequest(
                    resource=resource,
                    action=action,
                    body=httpbody_pb2.HttpBody(content_type="application/json", data=body),
                ),
                metadata=tuple(headers.items()),
            )
        return int(response.outcome)


def edge_settings_asking(
    auth: RunningService,
    database_url: str,
    redis_url: str,
    *,
    secret: str,
    cache_seconds: float,
    events: dict[str, Any],
) -> tuple[EdgeSettings, EdgeSettings]:
    """An edge that asks `auth` whether a webhook's merchant is installed (its credential and
    declared call), and the same edge without a credential, which asks no one."""
    checked = service_settings_for_tests(
        EdgeSettings,
        database_url,
        redis_url=redis_url,
        shopify_api_secret=secret,
        service_credential=service_credential(MASTER_KEY, "edge"),
        webhook_merchant_cache_seconds=cache_seconds,
        call_targets={"auth": auth.address},
        **events,
    )
    return checked, checked.model_copy(update={"service_credential": None})


@contextlib.asynccontextmanager
async def mesh(
    database_url: str, redis_url: str, shopify: ShopifyStandIn, workdir: Path
) -> AsyncIterator[Mesh]:
    broker = BrokerProcess()
    await broker.start()
    events = events_on(broker)
    try:
        async with serving(AUTH, auth_with(database_url, redis_url, shopify, **events)) as auth:
            # The edge's and Points' declared call to Auth (platform.calls).
            identity = {"call_targets": {"auth": auth.address}}
            edge_settings, unchecked_settings = edge_settings_asking(
                auth, database_url, redis_url, secret=SECRET, cache_seconds=0.5, events=events
            )
            points = points_settings(
                database_url,
                redis_url=redis_url,
                service_credential=POINTS_CREDENTIAL,
                points_merchant_cache_seconds=0.5,
                points_program_cache_seconds=0,
                **identity,
                **events,
            )
            async with (
                serving(EDGE, edge_settings) as edge,
                serving(EDGE, unchecked_settings) as unchecked,
                serving(POINTS, points) as points_service,
            ):
                upstreams = (
                    Upstream("edge", (EDGE_SERVICE,), (("127.0.0.1", edge.port),)),
                    Upstream("auth", (AUTH_SERVICE,), (("127.0.0.1", auth.port),)),
                )
                config = gateway_config(
                    upstreams[0],
                    upstreams=upstreams,
                    policy=EdgePolicy(
                        jwt=JwtProvider(JWKS_PATH, ServiceSettings().jwt_issuer),
                        admin_allowed_cidrs=("127.0.0.1/32",),
                    ),
                )
                async with (
                    running_gateway(config, workdir, {"edge": 1, "auth": 1}) as gateway,
                    grpc.aio.insecure_channel(auth.address) as auth_channel,
                    grpc.aio.insecure_channel(points_service.address) as points_channel,
                ):
                    yield Mesh(
                        gateway.url,
                        gateway.address,
                        auth_pb2_grpc.AuthServiceStub(auth_channel),
                        points_pb2_grpc.PointsServiceStub(points_channel),
                        unchecked.address,
                    )
    finally:
        broker.close()


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def order(order_id: int) -> dict[str, Any]:
    return {
        "id": order_id,
        "currency": "EUR",
        "customer": {"id": 7001},
        "line_items": [
            {"id": 1, "product_id": 1, "quantity": 1, "price": "40.00", "discount_allocations": []}
        ],
    }


async def test_webhooks_of_unknown_and_uninstalled_merchants_are_acknowledged_and_skipped(
    database_url: str, redis_url: str, shopify: ShopifyStandIn, tmp_path: Path
) -> None:
    skipped = "loyalnest_merchant_work_skipped_total"
    async with mesh(database_url, redis_url, shopify, tmp_path) as m:
        shop = "installed.myshopify.com"
        merchant = (await install(m.auth, shopify, shop)).merchant.merchant_id
        as_merchant = bearer(token(merchant, ["points:read"]))

        async def earning(order_id: int) -> points_pb2.OrderEarning | None:
            try:
                response = await m.points.GetOrderEarning(
                    points_pb2.GetOrderEarningRequest(order_id=str(order_id)),
                    metadata=as_merchant,
                )
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                return None
            return response.order

        # Installed: accepted, and Points records what the order earns.
        accepted = await m.deliver(shop, "orders/create", order(5001))
        assert accepted["outcome"] == "WEBHOOK_OUTCOME_ACCEPTED"
        await eventually(lambda: earning(5001), 30, "the installed merchant's order")

        # Never installed: 200, skipped at the edge, counted; nothing published.
        unknown = "stranger.myshopify.com"
        before = counter(skipped, component="edge", what="orders/create", reason="unknown")
        answer = await m.deliver(unknown, "orders/create", order(5002))
        assert answer["outcome"] == "WEBHOOK_OUTCOME_SKIPPED"
        assert counter(skipped, component="edge", what="orders/create", reason="unknown") == (
            before + 1
        )

        # Uninstalled: app/uninstalled goes through the edge to Auth (webhook.received).
        uninstall = await m.deliver(
            shop, "app/uninstalled", {"id": 690933842, "myshopify_domain": shop}
        )
        assert uninstall["outcome"] == "WEBHOOK_OUTCOME_ACCEPTED"
        admin = bearer(token(None, ["auth:validate"]))

        async def uninstalled() -> bool:
            request = auth_pb2.ValidateMerchantRequest(merchant_id=merchant)
            try:
                await m.auth.ValidateMerchant(request, metadata=admin)
            except grpc.aio.AioRpcError as error:
                return error.code() == grpc.StatusCode.FAILED_PRECONDITION
            return False

        await eventually(uninstalled, 30, "Auth to mark the merchant uninstalled")
        await asyncio.sleep(0.6)  # the edge's cache period: the uninstall takes effect
        before = counter(skipped, component="edge", what="orders/create", reason="uninstalled")
        answer = await m.deliver(shop, "orders/create", order(5003))
        assert answer["outcome"] == "WEBHOOK_OUTCOME_SKIPPED"
        assert counter(skipped, component="edge", what="orders/create", reason="uninstalled") == (
            before + 1
        )
        # GDPR topics are still taken (shop/redact comes 48 h after an uninstall).
        redact = await m.deliver(shop, "shop/redact", {"shop_id": 690933842, "shop_domain": shop})
        assert redact["outcome"] == "WEBHOOK_OUTCOME_ACCEPTED"

        # An edge that does not check (an older one, or one published before the uninstall):
        # Points' consumer skips the order itself, acks it, counts it.
        points_before = counter(
            skipped, component="points", what="webhook.received", reason="uninstalled"
        )
        late = await m.deliver_unchecked(shop, "orders/create", order(5004))
        assert late == edge_pb2.WEBHOOK_OUTCOME_ACCEPTED

        async def points_skipped() -> bool:
            now = counter(
                skipped, component="points", what="webhook.received", reason="uninstalled"
            )
            return now >= points_before + 1

        await eventually(points_skipped, 30, "Points to skip the uninstalled merchant's order")
        assert await earning(5003) is None and await earning(5004) is None
        assert await earning(5001) is not None

        # ---- GetShopAccessToken is never reachable through the gateway -------------------
        other = (await install(m.auth, shopify, "other.myshopify.com")).merchant.merchant_id
        service_token = ISSUER.mint(
            subject="service:points",
            merchant_id=other,
            permissions=["auth:shop-token"],
            token_type=SERVICE,
            audience=["loyalnest/auth"],
        )
        request = auth_pb2.GetShopAccessTokenRequest()
        # Directly, inside the mesh, Points' service token gets it...
        direct = await m.auth.GetShopAccessToken(request, metadata=bearer(service_token))
        assert direct.shop == "other.myshopify.com" and direct.access_token in (
            shopify.issued_tokens
        )
        # ...a user's token is refused even with the permission...
        user = bearer(token(other, ["auth:shop-token"]))
        assert await status_of(m.auth.GetShopAccessToken(request, metadata=user)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        # ...and through the gateway nobody gets it: native gRPC and HTTP alike (RBAC).
        async with grpc.aio.insecure_channel(m.gateway_address) as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            for metadata in (bearer(service_token), user):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.GetShopAccessToken(request, metadata=metadata)
                assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
                assert "RBAC" in (caught.value.details() or "")
        # It has no REST binding: no JSON request resolves to it (the transcoder refuses the
        # gRPC path as JSON before anything is routed).
        path = "/loyalnest.auth.v1.AuthService/GetShopAccessToken"
        as_json = await http(
            "POST",
            m.gateway_url + path,
            json_body={},
            headers={"authorization": f"Bearer {service_token}"},
        )
        assert as_json.status in (403, 404), as_json
        assert direct.access_token.encode() not in as_json.body
