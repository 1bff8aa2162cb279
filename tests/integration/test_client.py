"""Service-to-service calls: the caller's token travels with the call, and tenancy holds."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from loyalnest.gen.points.v1 import points_pb2 as pb
from loyalnest.gen.points.v1 import points_pb2_grpc
from loyalnest.platform.client import open_channel, service_config
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


def _relay_spec(points_address: str) -> ServiceSpec[ServiceSettings]:
    """A service whose one RPC reads a balance from Points on its caller's behalf."""

    async def relay(request: bytes, context: Context) -> bytes:
        async with open_channel(points_address) as channel:
            response = await points_pb2_grpc.PointsServiceStub(channel).GetPointsBalance(
                pb.GetPointsBalanceRequest(customer_id=request.decode())
            )
        return response.SerializeToString()

    def register(servicer: object, server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(relay)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("test.Relay", {"Balance": handler}),)
        )

    async def build(settings: ServiceSettings) -> ServiceComponents:
        return ServiceComponents(registrations=[Registration("test.Relay", register, None)])

    return ServiceSpec(name="relay", settings_type=ServiceSettings, build=build)


@pytest.fixture
async def relay(points_service: RunningService) -> AsyncIterator[grpc.aio.Channel]:
    settings = ServiceSettings(grpc_port=0, metrics_enabled=False, shutdown_grace_seconds=0)
    async with running(_relay_spec(points_service.address), settings) as service:
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
    # Another merchant's token, relayed, still cannot see this merchant's customer.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(b"c-1", metadata=merchant_metadata(f"{merchant_id}-other"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_service_config_balances_and_retries_only_unavailable():
    import json

    config = json.loads(service_config(2.5))
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    method = config["methodConfig"][0]
    assert method["timeout"] == "2.5s"
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
