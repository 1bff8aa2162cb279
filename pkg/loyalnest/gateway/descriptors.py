"""What the gateway needs to know about the services in a protobuf descriptor set.

The descriptor set (written by `tools/genproto.py`) is the single source of truth: which gRPC
services exist, which of their RPCs have `google.api.http` (REST) bindings, and which are
server-streaming (those need routes without a timeout).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from loyalnest.gen.options.v1 import access_pb2, route_pb2

# The transcoder renders google.rpc.Status (with convert_grpc_status) and the detail messages
# packed into it only if their descriptors are in the set.
STATUS_FILES = ("google/rpc/status.proto", "google/rpc/error_details.proto")


@dataclass(frozen=True)
class MethodInfo:
    name: str
    client_streaming: bool
    server_streaming: bool
    http_bound: bool  # has a google.api.http option, so it is reachable as REST
    # REST path templates of its bindings, e.g. ("/admin/v1/auth/revoke",).
    http_paths: tuple[str, ...] = ()
    # `idempotency_level` NO_SIDE_EFFECTS or IDEMPOTENT: a repeat does no harm, so the gateway
    # may retry it even after it reached a backend.
    idempotent: bool = False
    # `(loyalnest.options.v1.route).timeout`, when the RPC declares one.
    timeout_seconds: float | None = None
    # `idempotency_level` NO_SIDE_EFFECTS: a read. The gateway limits reads per replica in
    # Envoy and only writes with the global (Redis-backed) rate-limit service.
    read_only: bool = False
    # `(loyalnest.options.v1.access).internal`: for LoyalNest's services only, never routed
    # from outside (the gateway's RBAC denies it for every peer).
    internal: bool = False

    @property
    def admin(self) -> bool:
        """Bound under /admin/: callable only from the admin network allowlist."""
        return any(path.startswith("/admin/") for path in self.http_paths)


@dataclass(frozen=True)
class ServiceInfo:
    full_name: str  # e.g. loyalnest.points.v1.PointsService
    package: str  # e.g. loyalnest.points.v1
    file: str  # e.g. loyalnest/points/v1/points.proto
    methods: tuple[MethodInfo, ...]

    @property
    def grpc_path_prefix(self) -> str:
        return f"/{self.full_name}/"

    @property
    def http_bound(self) -> bool:
        return any(m.http_bound for m in self.methods)

    @property
    def server_streaming_methods(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.methods if m.server_streaming)

    def grpc_path(self, method: str) -> str:
        return f"/{self.full_name}/{method}"


def load_descriptor_set(path: Path) -> descriptor_pb2.FileDescriptorSet:
    # Importing annotations_pb2 (above) registers the google.api.http extension, so the
    # MethodOptions parsed here expose it instead of keeping it as unknown fields.
    try:
        return descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
    except OSError as exc:
        raise FileNotFoundError(f"cannot read descriptor set {path}: {exc}") from exc


def _http_paths(rule: http_pb2.HttpRule) -> list[str]:
    pattern = rule.WhichOneof("pattern")
    paths = []
    if pattern == "custom":
        paths.append(rule.custom.path)
    elif pattern is not None:
        paths.append(str(getattr(rule, pattern)))
    for binding in rule.additional_bindings:
        paths += _http_paths(binding)
    return paths


_IDEMPOTENT_LEVELS = (
    descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
    descriptor_pb2.MethodOptions.IDEMPOTENT,
)


def method_info(method: descriptor_pb2.MethodDescriptorProto) -> MethodInfo:
    """How an RPC may be routed and retried. Shared with the services' own channels
    (loyalnest.platform.client), so the gateway and a calling service read one policy."""
    options: Any = method.options  # the stubs do not type generated extensions
    http_bound = options.HasExtension(annotations_pb2.http)
    timeout: float | None = None
    if options.HasExtension(route_pb2.route):
        policy: route_pb2.RoutePolicy = options.Extensions[route_pb2.route]
        if policy.HasField("timeout"):
            timeout = policy.timeout.ToTimedelta().total_seconds()
    internal = (
        options.HasExtension(access_pb2.access) and options.Extensions[access_pb2.access].internal
    )
    return MethodInfo(
        name=method.name,
        client_streaming=method.client_streaming,
        server_streaming=method.server_streaming,
        http_bound=http_bound,
        http_paths=tuple(_http_paths(options.Extensions[annotations_pb2.http]))
        if http_bound
        else (),
        idempotent=options.idempotency_level in _IDEMPOTENT_LEVELS,
        timeout_seconds=timeout,
        read_only=options.idempotency_level == descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
        internal=bool(internal),
    )


def services_in_descriptor_set(path: Path) -> dict[str, ServiceInfo]:
    """Every gRPC service in the set, keyed by fully qualified name, in file order."""
    services: dict[str, ServiceInfo] = {}
    for file in load_descriptor_set(path).file:
        for service in file.service:
            full_name = f"{file.package}.{service.name}" if file.package else service.name
            methods = tuple(method_info(m) for m in service.method)
            services[full_name] = ServiceInfo(full_name, file.package, file.name, methods)
    return services


# Platform contracts every service serves on its own server (loyalnest.platform.v1's
# PersonalDataService), internal: no component of their own, never routed by the gateway.
SHARED_PACKAGE_PREFIX = "loyalnest.platform."


def grpc_services_in_descriptor_set(path: Path) -> dict[str, list[str]]:
    """Package -> fully qualified service names, e.g.
    {"loyalnest.points.v1": ["loyalnest.points.v1.PointsService"]}; shared platform
    contracts left out."""
    by_package: dict[str, list[str]] = {}
    for info in services_in_descriptor_set(path).values():
        if info.package.startswith(SHARED_PACKAGE_PREFIX):
            continue
        by_package.setdefault(info.package, []).append(info.full_name)
    return by_package


def files_in_descriptor_set(path: Path) -> set[str]:
    return {file.name for file in load_descriptor_set(path).file}
