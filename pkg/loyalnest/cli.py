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
    from loyalnest.devstack.stack import run_stack

    return run_stack(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loyalnest", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run one service (configured by LOYALNEST_* env)")
    serve.add_argument("service", choices=sorted(SERVICES))
    serve.set_defaults(func=_serve)

    migrate = commands.add_parser("migrate", help="apply a service's database migrations")
    migrate.add_argument("service", choices=sorted(SERVICES))
    migrate.set_defaults(func=_migrate)

    up = commands.add_parser("up", help="start the local stack in the foreground")
    up.add_argument("--state-dir", default=None, help="where data and logs live")
    up.add_argument("--postgres-port", type=int, default=55432)
    up.add_argument(
        "--base-port",
        type=int,
        default=50051,
        help="first gRPC port; services take consecutive ports",
    )
    up.add_argument("--workers", type=int, default=1, help="processes per service")
    up.set_defaults(func=_up)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
