"""What the gateway needs to know about the services in a protobuf descriptor set.

The descriptor set (written by `tools/genproto.py`) is the single source of truth: which gRPC
services exist, which of their RPCs have `google.api.http` (REST) bindings, and which are
server-streaming (those need routes without a timeout).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

# The transcoder renders google.rpc.Status (with convert_grpc_status) and the detail messages
# packed into it only if their descriptors are in the set.
STATUS_FILES = ("google/rpc/status.proto", "google/rpc/error_details.proto")


@dataclass(frozen=True)
class MethodInfo:
    name: str
    client_streaming: bool
    server_streaming: bool
    http_bound: bool  # has a google.api.http option, so it is reachable as REST


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


def services_in_descriptor_set(path: Path) -> dict[str, ServiceInfo]:
    """Every gRPC service in the set, keyed by fully qualified name, in file order."""
    services: dict[str, ServiceInfo] = {}
    for file in load_descriptor_set(path).file:
        for service in file.service:
            full_name = f"{file.package}.{service.name}" if file.package else service.name
            methods = tuple(
                MethodInfo(
                    name=m.name,
                    client_streaming=m.client_streaming,
                    server_streaming=m.server_streaming,
                    http_bound=m.options.HasExtension(annotations_pb2.http),
                )
                for m in service.method
            )
            services[full_name] = ServiceInfo(full_name, file.package, file.name, methods)
    return services


def grpc_services_in_descriptor_set(path: Path) -> dict[str, list[str]]:
    """Package -> fully qualified service names, e.g.
    {"loyalnest.points.v1": ["loyalnest.points.v1.PointsService"]}."""
    by_package: dict[str, list[str]] = {}
    for info in services_in_descriptor_set(path).values():
        by_package.setdefault(info.package, []).append(info.full_name)
    return by_package


def files_in_descriptor_set(path: Path) -> set[str]:
    return {file.name for file in load_descriptor_set(path).file}
