"""Server reflection for the whole mesh, answered from the descriptor set.

Envoy routes each call to one cluster by its path and cannot merge reflection streams from
several backends, so reflection routed to one backend lists only that backend's services. This
small server answers reflection for every service in the descriptor set (plus health and
reflection themselves); the gateway routes reflection here when
`GatewayConfig.reflection_endpoint` is set, and `grpcurl -plaintext <gateway> list` then shows
the whole API.

    python -m loyalnest.gateway.reflection --port 50060 [--descriptor-set PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection, reflection_pb2

from loyalnest.gateway.descriptors import load_descriptor_set, services_in_descriptor_set

DEFAULT_DESCRIPTOR_SET = Path(__file__).resolve().parent.parent / "gen" / "loyalnest.binpb"
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


def build_pool(descriptor_set_path: Path) -> descriptor_pool.DescriptorPool:
    """A private pool (not the process default) holding the set plus health and reflection."""
    pool = descriptor_pool.DescriptorPool()
    names: set[str] = set()
    for file in load_descriptor_set(descriptor_set_path).file:
        pool.AddSerializedFile(file.SerializeToString())
        names.add(file.name)
    for extra in (health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
        if extra.name not in names:
            pool.AddSerializedFile(extra.serialized_pb)
    return pool


@contextlib.asynccontextmanager
async def running_reflection_server(
    descriptor_set_path: Path = DEFAULT_DESCRIPTOR_SET, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[int]:
    """Serves reflection (and grpc.health.v1, SERVING) until exit; yields the bound port."""
    services = [
        name
        for name in services_in_descriptor_set(descriptor_set_path)
        if not name.startswith("google.")
    ]
    server = grpc.aio.server()
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [*services, HEALTH_SERVICE, reflection.SERVICE_NAME],
        server,
        pool=build_pool(descriptor_set_path),
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    await server.start()
    try:
        yield bound
    finally:
        await server.stop(1)


async def _serve(descriptor_set_path: Path, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running_reflection_server(descriptor_set_path, host, port) as bound:
        print(f"reflection for {descriptor_set_path} on {host}:{bound}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--descriptor-set", type=Path, default=DEFAULT_DESCRIPTOR_SET)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.descriptor_set, args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
