"""Service-to-service calls through real servers: a service declares whom it calls (`Calls`),
connects at build time (`Downstream`), and its calls carry the caller's token or its own
service token, keep the callee's deadlines, retry only what is safe to repeat; servers end
old connections so clients find new pods."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.options.v1.access_pb2 import AccessPolicy
from loyalnest.gen.points.v1 import points_pb2 as pb
from loyalnest.gen.points.v1 import points_pb2_grpc
from loyalnest.platform.auth.context import acting_for, current_principal
from loyalnest.platform.auth.policy import declare_access
from loyalnest.platform.auth.service_identity import service_credential
from loyalnest.platform.calls import Calls, Downstream
from loyalnest.platform.client import open_channel
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.server import (
    Registration,
    RunningService,
    ServiceComponents,
    ServiceSpec,
    running,
)
from tests.auth import merchant_metadata
from tests.integration.shopify_standin import ShopifyStandIn
from tests.integration.test_auth_service import install
from tests.integration.test_service_identity import MASTER_KEY, code_of, serving_auth

# Generic handlers have no proto to declare access in: any valid token (fail closed otherwise).
for _service in (
    "test.Relay",
    "test.Peer",
):
    declare_access(_service, AccessPolicy(authenticated=True))

pytestmark = pytest.mark.integration

PointsStub = points_pb2_grpc.PointsServiceStub
SLOW_SECONDS = 3.0


def _settings(**overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "grpc_port": 0,
        "metrics_enabled": False,
        "shutdown_grace_seconds": 0,
    }
    return ServiceSettings(**(values | overrides))


@dataclass
class Caller:
    """A service that declares its calls and relays one RPC to Points on its caller's behalf;
    `downstream` is what its build connected (tests call through it as a consumer would)."""

    name: str
    calls: Calls
    downstream: Downstream | None = None
    address: str = ""  # where its own RPC answers, once running

    def spec(self) -> ServiceSpec[ServiceSettings]:
        async def relay(request: bytes, context: Context) -> bytes:
            assert self.downstream is not None
            response = await self.downstream.stub(PointsStub).GetPointsBalance(
                pb.GetPointsBalanceRequest(customer_id=request.decode())
            )
            return bytes(response.SerializeToString())

        def register(servicer: object, server: grpc.aio.Server) -> None:
            handler = grpc.unary_unary_rpc_method_handler(relay)
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler("test.Relay", {"Balance": handler}),)
            )

        async def build(settings: ServiceSettings) -> ServiceComponents:
            self.downstream = self.calls.connect(settings, caller=self.name)
            return ServiceComponents(
                registrations=[Registration("test.Relay", register, None)],
                cleanup=[self.downstream.close],
            )

        return ServiceSpec(
            name=self.name, settings_type=ServiceSettings, build=build, calls=self.calls
        )


# ---- the caller's token, with the real Points service -------------------------------------


@pytest.fixture
async def relay(points_service: RunningService) -> AsyncIterator[grpc.aio.Channel]:
    caller = Caller("relay", Calls(points=PointsStub))
    settings = _settings(call_targets={"points": points_service.address})
    async with running(caller.spec(), settings) as service:
        async with grpc.aio.insecure_channel(service.address) as channel:
            yield channel


async def test_the_callers_token_and_merchant_travel_downstream(relay, points_stub, merchant_id):
    await points_stub.EarnPoints(
        pb.EarnPointsRequest(customer_id="c-1", points=42, idempotency_key="k"),
        metadata=merchant_metadata(merchant_id),
    )
    call = relay.unary_unary("/test.Relay/Balance")
    raw = await call(b"c-1", metadata=merchant_metadata(merchant_id))
    assert pb.GetPointsBalanceResponse.FromString(raw).balance.balance == 42
    # Another merchant's token, relayed, still cannot see this merchant's customer; the
    # callee's NOT_FOUND reaches the client as is (DownstreamError), not as INTERNAL.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(b"c-1", metadata=merchant_metadata(f"{merchant_id}-other"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_declared_callee_without_a_target_stops_the_start() -> None:
    caller = Caller("relay", Calls(points=PointsStub))
    with pytest.raises(ValueError, match="LOYALNEST_CALL_TARGETS"):
        async with running(caller.spec(), _settings()):
            pass


# ---- service tokens, deadlines, retries: Auth, a probe callee, a declared caller ----------


@dataclass
class PointsProbe(points_pb2_grpc.PointsServiceServicer):
    """Stands in for Points: answers with what its auth context holds, is slow or fails on
    purpose, and counts the attempts it sees."""

    attempts: dict[str, int] = field(default_factory=dict)

    def _count(self, method: str) -> int:
        self.attempts[method] = self.attempts.get(method, 0) + 1
        return self.attempts[method]

    async def GetPointsBalance(  # noqa: N802 (gRPC method name)
        self, request: Any, context: Any
    ) -> pb.GetPointsBalanceResponse:
        p = current_principal()
        who = f"{p.subject}|{p.merchant_id or ''}|{p.service or ''}"
        return pb.GetPointsBalanceResponse(balance=pb.PointsBalance(customer_id=who))

    async def ListTransactions(  # noqa: N802 (gRPC method name)
        self, request: Any, context: Any
    ) -> pb.ListTransactionsResponse:
        self._count("ListTransactions")
        await asyncio.sleep(SLOW_SECONDS)
        return pb.ListTransactionsResponse()

    async def GetOrderEarning(  # noqa: N802 (gRPC method name)
        self, request: Any, context: Any
    ) -> pb.GetOrderEarningResponse:
        # NO_SIDE_EFFECTS: the first attempt fails as a draining pod would, the retry answers.
        if self._count("GetOrderEarning") == 1:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "draining")
        return pb.GetOrderEarningResponse()

    async def UpdateReward(  # noqa: N802 (gRPC method name)
        self, request: Any, context: Any
    ) -> pb.UpdateRewardResponse:
        # No idempotency key: a retry could apply the change twice, so none may happen.
        self._count("UpdateReward")
        await context.abort(grpc.StatusCode.UNAVAILABLE, "draining")
        return pb.UpdateRewardResponse()


def _probe_spec(probe: PointsProbe) -> ServiceSpec[ServiceSettings]:
    async def build(settings: ServiceSettings) -> ServiceComponents:
        full_name = pb.DESCRIPTOR.services_by_name["PointsService"].full_name
        return ServiceComponents(
            registrations=[
                Registration(full_name, points_pb2_grpc.add_PointsServiceServicer_to_server, probe)
            ]
        )

    # Named points: Core's service tokens are meant for it (audience loyalnest/points).
    return ServiceSpec(name="points", settings_type=ServiceSettings, build=build)


@pytest.fixture
async def auth_service(
    database_url: str, redis_url: str, shopify: ShopifyStandIn
) -> AsyncIterator[RunningService]:
    async with serving_auth(database_url, redis_url, shopify) as service:
        yield service


@pytest.fixture
async def merchant_ids(auth_service: RunningService, shopify: ShopifyStandIn) -> list[str]:
    """Two installed merchants (service tokens are issued for existing merchants only)."""
    async with grpc.aio.insecure_channel(auth_service.address) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        shops = ("shop-a.myshopify.com", "shop-b.myshopify.com")
        return [(await install(stub, shopify, shop)).merchant.merchant_id for shop in shops]


@pytest.fixture
async def core_calling_points(
    auth_service: RunningService,
) -> AsyncIterator[tuple[Caller, PointsProbe]]:
    auth = auth_service
    probe = PointsProbe()
    async with running(_probe_spec(probe), _settings()) as callee:
        # Core is granted points:read and may get service tokens for the Points audience.
        caller = Caller("core", Calls(auth=auth_pb2_grpc.AuthServiceStub, points=PointsStub))
        settings = _settings(
            call_targets={"auth": auth.address, "points": callee.address},
            service_credential=service_credential(MASTER_KEY, "core"),
            call_timeout_seconds=0.5,
        )
        async with running(caller.spec(), settings) as service:
            assert caller.downstream is not None
            caller.address = service.address
            yield caller, probe


async def test_calls_carry_the_callers_token_or_the_services_own(
    core_calling_points, merchant_ids
) -> None:
    caller, _ = core_calling_points
    merchant_a = merchant_ids[0]
    downstream = caller.downstream
    assert downstream is not None
    # Inside an RPC: the user's token and merchant, plus the relaying service's identity.
    async with grpc.aio.insecure_channel(caller.address) as channel:
        raw = await channel.unary_unary("/test.Relay/Balance")(
            b"c-1", metadata=merchant_metadata(merchant_a)
        )
    answer = pb.GetPointsBalanceResponse.FromString(raw).balance.customer_id
    assert answer == f"test-user|{merchant_a}|core"
    # No caller (a consumer, a job): the service's own token, bound to the merchant it acts for.
    points = downstream.stub(PointsStub)
    with acting_for(merchant_a):
        response = await points.GetPointsBalance(pb.GetPointsBalanceRequest(customer_id="c-1"))
    assert response.balance.customer_id == f"service:core|{merchant_a}|core"


async def test_the_deadline_is_honoured(core_calling_points, merchant_ids) -> None:
    caller, probe = core_calling_points
    assert caller.downstream is not None
    points = caller.downstream.stub(PointsStub)
    started = time.monotonic()
    with acting_for(merchant_ids[0]):
        code = await code_of(points.ListTransactions(pb.ListTransactionsRequest(customer_id="c")))
    elapsed = time.monotonic() - started
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    # call_timeout_seconds (0.5 s) plus the first service-token fetch, far from the 3 s sleep.
    assert elapsed < SLOW_SECONDS / 2, elapsed
    assert probe.attempts["ListTransactions"] == 1  # a deadline is not retried


async def test_only_rpcs_safe_to_repeat_are_retried(core_calling_points, merchant_ids) -> None:
    caller, probe = core_calling_points
    assert caller.downstream is not None
    points = caller.downstream.stub(PointsStub)
    merchant_a = merchant_ids[0]
    with acting_for(merchant_a):
        await points.GetOrderEarning(pb.GetOrderEarningRequest(order_id="o-1"))
    assert probe.attempts["GetOrderEarning"] == 2
    # UpdateReward needs rewards:write, which Core is not granted: the user's token it is.
    update = points.UpdateReward(
        pb.UpdateRewardRequest(reward=pb.Reward(reward_id="r-1")),
        metadata=merchant_metadata(merchant_a, ("rewards:write",)),
    )
    assert await code_of(update) == grpc.StatusCode.UNAVAILABLE
    assert probe.attempts["UpdateReward"] == 1


# ---- connection age: clients re-resolve and reconnect -------------------------------------


def _peer_spec() -> ServiceSpec[ServiceSettings]:
    async def peer(request: bytes, context: Context) -> bytes:
        return context.peer().encode()  # the client's address: its port names the connection

    def register(servicer: object, server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(peer)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("test.Peer", {"Peer": handler}),)
        )

    async def build(settings: ServiceSettings) -> ServiceComponents:
        return ServiceComponents(registrations=[Registration("test.Peer", register, None)])

    return ServiceSpec(name="peer", settings_type=ServiceSettings, build=build)


async def test_the_server_ends_old_connections_and_calls_keep_succeeding(merchant_id) -> None:
    settings = _settings(max_connection_age_seconds=0.3, max_connection_age_grace_seconds=0.2)
    async with running(_peer_spec(), settings) as service:
        async with open_channel(f"ipv4:{service.address}") as channel:
            call = channel.unary_unary("/test.Peer/Peer")
            peers: list[bytes] = []
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                # No wait_for_ready: a call failing during the reconnect would raise here.
                peers.append(await call(b"", metadata=merchant_metadata(merchant_id)))
                await asyncio.sleep(0.02)
    assert len(peers) > 20
    # The server closed the first connection after ~0.3 s; the client opened new ones.
    assert len(set(peers)) >= 3, set(peers)
