"""The Envoy gateway: its bootstrap generated from the descriptor set, and helpers to run it."""

from loyalnest.gateway.envoy_config import (
    GatewayConfig,
    Upstream,
    grpc_services_in_descriptor_set,
    render,
    write,
)

__all__ = ["GatewayConfig", "Upstream", "grpc_services_in_descriptor_set", "render", "write"]
