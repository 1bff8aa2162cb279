"""The `loyalnest` command: run services, apply migrations, start the local stack."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from loyalnest.services.registry import SERVICES, spec_for


def _serve(args: argparse.Namespace) -> int:
    from loyalnest.platform.server import serve

    serve(spec_for(args.service))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from loyalnest.platform.observability import configure_logging

    spec = spec_for(args.service)
    settings = spec.settings_type()
    configure_logging(settings, spec.name)
    if spec.database is None:
        print(f"{spec.name} has no PostgreSQL schema", file=sys.stderr)
        return 0
    applied = spec.database.migrate(settings.database_url)
    print(
        f"{spec.name}: applied {len(applied)} migration(s)"
        + (f": {', '.join(applied)}" if applied else "")
    )
    return 0


def _up(args: argparse.Namespace) -> int:
    from loyalnest.devstack.stack import run_up

    return run_up(args, args.argv)


def _status(args: argparse.Namespace) -> int:
    from loyalnest.devstack.stack import run_status

    return run_status(args)


def _down(args: argparse.Namespace) -> int:
    from loyalnest.devstack.stack import run_down

    return run_down(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loyalnest", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run one service (configured by LOYALNEST_* env)")
    serve.add_argument("service", choices=sorted(SERVICES))
    serve.set_defaults(func=_serve)

    migrate = commands.add_parser("migrate", help="apply a service's database migrations")
    migrate.add_argument("service", choices=sorted(SERVICES))
    migrate.set_defaults(func=_migrate)

    up = commands.add_parser(
        "up", help="start the local stack (PostgreSQL, Redis, Kafka, services, Envoy)"
    )
    up.add_argument("--detach", action="store_true", help="run in the background")
    up.add_argument("--workers", type=int, default=1, help="processes per service")
    up.add_argument("--gateway-port", type=int, default=8080)
    up.add_argument("--gateway-admin-port", type=int, default=9901)
    up.add_argument("--postgres-port", type=int, default=55432)
    up.add_argument("--redis-port", type=int, default=56379)
    up.add_argument("--kafka-port", type=int, default=59092)
    up.add_argument("--reflection-port", type=int, default=50050)
    up.add_argument(
        "--base-port",
        type=int,
        default=50051,
        help="first service gRPC port; metrics ports start 1000 higher",
    )
    up.add_argument(
        "--frontend-origin",
        default="http://localhost:5173",
        help="origin allowed by the gateway's CORS policy",
    )
    up.set_defaults(func=_up)
    status = commands.add_parser("status", help="show what is running and healthy")
    status.set_defaults(func=_status)
    down = commands.add_parser("down", help="stop a stack started with `up --detach`")
    down.set_defaults(func=_down)
    for command in (up, status, down):
        command.add_argument(
            "--state-dir", help="where data, logs and the stack's state live (default .loyalnest/)"
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
