"""Per-RPC access policies, read from the `(loyalnest.options.v1.access)` method option."""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf import descriptor_pool

from loyalnest.gen.options.v1 import access_pb2

# Infrastructure every orchestrator and client must reach without a token.
_PUBLIC_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
        # Envoy's rate-limit check, asked by the gateway before routing (the gateway holds no
        # token of its own). Not routed from outside; NetworkPolicy admits only the gateway.
        "envoy.service.ratelimit.v3.RateLimitService",
    }
)


# Services registered without a proto (declare_access): their policy, for every method.
_DECLARED: dict[str, access_pb2.AccessPolicy] = {}


def declare_access(service_name: str, policy: access_pb2.AccessPolicy) -> None:
    """The policy of every method of a service registered without a proto (a generic handler,
    e.g. in tests), which has no method option to declare it with."""
    _DECLARED[service_name] = policy
    access_policy.cache_clear()


def declares_access(policy: access_pb2.AccessPolicy) -> bool:
    """Whether `policy` says who may call: an RPC that does not is refused to everyone."""
    return policy.public or policy.internal or policy.authenticated or bool(policy.permission)


@cache
def access_policy(full_method: str) -> access_pb2.AccessPolicy:
    """The policy of '/pkg.Service/Method'; empty (declares_access False: refused to every
    caller) for an RPC that declares none or is unknown."""
    service_name, _, method_name = full_method.lstrip("/").rpartition("/")
    if service_name in _PUBLIC_SERVICES:
        return access_pb2.AccessPolicy(public=True)
    if service_name in _DECLARED:
        return _DECLARED[service_name]
    try:
        service = descriptor_pool.Default().FindServiceByName(service_name)
    except KeyError:
        return access_pb2.AccessPolicy()
    method = service.methods_by_name.get(method_name)
    if method is None:
        return access_pb2.AccessPolicy()
    options: Any = method.GetOptions()  # the stubs do not type generated extensions
    if options.HasExtension(access_pb2.access):
        policy: access_pb2.AccessPolicy = options.Extensions[access_pb2.access]
        return policy
    return access_pb2.AccessPolicy()
