"""The pod's own gRPC health, for the catalog check nobody else runs (agentless Consul)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loyalnest.consul.catalog import CRITICAL, PASSING


class GrpcHealthProbe:
    """grpc.health.v1 Check of the service in the same pod (over loopback, so no
    NetworkPolicy has to admit anyone): passing when SERVING, critical otherwise."""

    def __init__(self, target: str, service: str = "", timeout: float = 2.0) -> None:
        self._channel = grpc.insecure_channel(target)
        self._stub = health_pb2_grpc.HealthStub(self._channel)
        self._service = service
        self._timeout = timeout

    def __call__(self) -> str:
        try:
            response = self._stub.Check(
                health_pb2.HealthCheckRequest(service=self._service), timeout=self._timeout
            )
        except grpc.RpcError:
            return CRITICAL
        serving = response.status == health_pb2.HealthCheckResponse.SERVING
        return PASSING if serving else CRITICAL

    def close(self) -> None:
        self._channel.close()
