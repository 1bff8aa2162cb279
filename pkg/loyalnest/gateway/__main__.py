"""Render (and optionally validate) the gateway's Envoy bootstrap.

    python -m loyalnest.gateway --out gateway/envoy.yaml \\
        --endpoint points=127.0.0.1:50051 --endpoint points=127.0.0.1:50052 [--validate]

Upstreams are derived from the descriptor set (package loyalnest.<name>.v1 -> upstream <name>);
every service in it needs at least one --endpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loyalnest.gateway import openapi
from loyalnest.gateway.envoy_binary import EnvoyConfigError, validate_config
from loyalnest.gateway.envoy_config import GatewayConfig, upstreams_from_descriptor_set, write
from loyalnest.gateway.reflection import DEFAULT_DESCRIPTOR_SET


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def _endpoint(value: str) -> tuple[str, tuple[str, int]]:
    name, sep, address = value.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=HOST:PORT, got {value!r}")
    return name, _host_port(address)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loyalnest.gateway", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help=".yaml, .yml or .json")
    parser.add_argument("--descriptor-set", type=Path, default=DEFAULT_DESCRIPTOR_SET)
    parser.add_argument("--endpoint", type=_endpoint, action="append", default=[])
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--listen-port", type=int, default=8080)
    parser.add_argument("--admin-port", type=int, default=9901)
    parser.add_argument("--cors-origin", action="append", default=None)
    parser.add_argument("--access-log", default="/dev/stdout")
    parser.add_argument("--otel-collector", type=_host_port, default=None)
    parser.add_argument("--reflection", type=_host_port, default=None)
    parser.add_argument(
        "--openapi",
        type=Path,
        default=None,
        help="write the REST API's OpenAPI document here and serve it at /v1/api/openapi.json",
    )
    parser.add_argument("--validate", action="store_true", help="run envoy --mode validate")
    parser.add_argument(
        "--partial",
        action="store_true",
        help="allow services without --endpoint (they get no route), e.g. a partial stack",
    )
    args = parser.parse_args(argv)

    endpoints: dict[str, list[tuple[str, int]]] = {}
    for name, address in args.endpoint:
        endpoints.setdefault(name, []).append(address)
    try:
        config = GatewayConfig(
            listen_host=args.listen_host,
            listen_port=args.listen_port,
            admin_port=args.admin_port,
            cors_allowed_origins=tuple(args.cors_origin or ("http://localhost:5173",)),
            descriptor_set_path=args.descriptor_set,
            upstreams=upstreams_from_descriptor_set(
                args.descriptor_set, endpoints, require_all=not args.partial
            ),
            access_log_path=args.access_log,
            otel_collector=args.otel_collector,
            reflection_endpoint=args.reflection,
            openapi_path=(
                openapi.write(args.descriptor_set, args.openapi).resolve() if args.openapi else None
            ),
        )
        path = write(config, args.out)
        if args.validate:
            validate_config(path)
    except (ValueError, EnvoyConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
