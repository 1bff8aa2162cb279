"""The `loyalnest` command: run services, apply migrations, start the local stack."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from loyalnest.consul.sync import configure_parser as _configure_consul_sync
from loyalnest.services.registry import SERVICES, spec_for


def _serve(args: argparse.Namespace) -> int:
    from loyalnest.platform.server import serve

    serve(spec_for(args.service))
    return 0


def _relay(args: argparse.Namespace) -> int:
    from loyalnest.platform.event_loops import relay_spec
    from loyalnest.platform.server import serve

    serve(relay_spec(spec_for(args.service)))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from loyalnest.platform.config import MigrationSettings
    from loyalnest.platform.observability import configure_logging

    spec = spec_for(args.service)
    settings = MigrationSettings()
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


def _points_expire(args: argparse.Namespace) -> int:
    import asyncio

    from loyalnest.platform.observability import configure_logging
    from loyalnest.services.points.service import PointsSettings, expire_points

    settings = PointsSettings()
    configure_logging(settings, "points-expire")
    report = asyncio.run(expire_points(settings))
    print(
        f"points expiry: {report.customers} customer(s) checked, {report.expired_points} point(s)"
        f" of {report.expired_customers} customer(s) expired, {report.notices} notice(s),"
        f" {report.skipped} left for the next run"
    )
    return 0


def _points_occasions(args: argparse.Namespace) -> int:
    import asyncio

    from loyalnest.platform.observability import configure_logging
    from loyalnest.services.points.service import PointsSettings, credit_occasions

    settings = PointsSettings()
    configure_logging(settings, "points-occasions")
    report = asyncio.run(credit_occasions(settings, args.date))
    print(
        f"occasions {report.day.isoformat()}: {report.awarded} credit(s),"
        f" {report.points} point(s) over {report.merchants} merchant(s),"
        f" {report.replayed} credited before"
        + (f", failed for {', '.join(report.failed_merchants)}" if report.failed_merchants else "")
    )
    # Non-zero so the CronJob's run counts as failed and is retried: a rerun credits nothing
    # twice.
    return 1 if report.failed_merchants else 0


def _rfm_rescore(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from loyalnest.platform.observability import configure_logging
    from loyalnest.platform.tenancy import merchant_id_for_shop
    from loyalnest.services.rfm.service import RfmSettings, rescore

    settings = RfmSettings()
    configure_logging(settings, "rfm-rescore")
    merchant = merchant_id_for_shop(args.shop) if args.shop else args.merchant
    for result in asyncio.run(rescore(settings, merchant)):
        print(
            f"{result.merchant_id}: {result.customers} customers with an order,"
            f" {result.changed} rescored, {result.seconds:.2f}s ({json.dumps(result.steps)})"
        )
    return 0


def _points_tiers(args: argparse.Namespace) -> int:
    import asyncio

    from loyalnest.platform.observability import configure_logging
    from loyalnest.services.points.service import PointsSettings, recalculate_tiers

    settings = PointsSettings()
    configure_logging(settings, "points-tiers")
    changed = asyncio.run(recalculate_tiers(settings))
    print(f"vip tiers: {changed} customer(s) changed")
    return 0


def _points_liability_backfill(args: argparse.Namespace) -> int:
    import asyncio

    from loyalnest.platform.observability import configure_logging
    from loyalnest.services.points.service import PointsSettings, backfill_liability

    settings = PointsSettings()
    configure_logging(settings, "points-liability-backfill")
    merchants, counted = asyncio.run(backfill_liability(settings, args.merchant))
    print(f"liability summary: {counted} transaction(s) of {merchants} merchant(s) counted")
    return 0


def _up(args: argparse.Namespace) -> int:
    from loyalnest.devstack.stack import run_up

    return run_up(args, args.argv)


def _status(args: argparse.Namespace) -> int:
    from loyalnest.devstack.stack import run_status

    return run_status(args)


_TTL_UNITS = {"s": 1, "m": 60, "h": 3600}


def _ttl_seconds(value: str) -> int:
    unit = value[-1:] if value[-1:] in _TTL_UNITS else "s"
    number = value[:-1] if value[-1:] in _TTL_UNITS else value
    if not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration like 900, 15m or 1h, got {value!r}")
    return int(number) * _TTL_UNITS[unit]


def _shop_domain(value: str) -> str:
    """A *.myshopify.com domain, checked as Auth checks it (fullmatch: no trailing newline
    or other text), so a token or webhook is never made for a shop Auth would refuse."""
    from loyalnest.services.auth.shopify import valid_shop

    if not valid_shop(value):
        raise argparse.ArgumentTypeError(f"expected <name>.myshopify.com, got {value!r}")
    return value


def _token(args: argparse.Namespace) -> int:
    from loyalnest.devstack.stack import local_keyset_path
    from loyalnest.platform.auth.keys import load_keyset
    from loyalnest.platform.auth.tokens import TokenIssuer
    from loyalnest.platform.config import ServiceSettings

    path = Path(args.keyset) if args.keyset else local_keyset_path(args.state_dir)
    keyset = load_keyset(path)
    if not keyset.local and not args.force:
        print(
            f"error: {path} is not a local development keyset; refusing without --force",
            file=sys.stderr,
        )
        return 2
    settings = ServiceSettings()
    issuer = TokenIssuer(keyset, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    permissions = [p for p in args.permissions.split(",") if p]
    merchant = args.merchant
    if args.shop:
        from loyalnest.platform.tenancy import merchant_id_for_shop

        merchant = merchant_id_for_shop(args.shop)
    print(
        issuer.mint(
            subject=args.user,
            merchant_id=merchant,
            permissions=permissions,
            ttl_seconds=args.ttl,
        )
    )
    return 0


def _webhook(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    from loyalnest.devstack.stack import DEV_SHOPIFY_API_SECRET
    from loyalnest.services.edge.signing import shopify_headers, webhook_path

    body = Path(args.file).read_bytes() if args.file != "-" else sys.stdin.buffer.read()
    secret = args.secret or os.environ.get("LOYALNEST_SHOPIFY_API_SECRET", DEV_SHOPIFY_API_SECRET)
    headers = shopify_headers(
        body, topic=args.topic, shop_domain=args.shop, secret=secret, event_id=args.event_id
    )
    url = args.gateway.rstrip("/") + webhook_path(args.topic)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            print(response.status, response.read().decode())
            return 0
    except urllib.error.HTTPError as error:
        print(error.code, error.read().decode(), file=sys.stderr)
        return 1


def _service_credential(args: argparse.Namespace) -> int:
    import os

    from loyalnest.devstack.stack import default_state_dir, ensure_local_service_credential_key
    from loyalnest.platform.auth.service_identity import SERVICE_GRANTS, service_credential
    from loyalnest.platform.crypto import decode_key

    if args.service not in SERVICE_GRANTS:
        print(f"error: {args.service!r} has no grant in SERVICE_GRANTS", file=sys.stderr)
        return 2
    encoded = os.environ.get("LOYALNEST_AUTH_SERVICE_CREDENTIAL_KEY")
    if not encoded:
        state = Path(args.state_dir).resolve() if args.state_dir else default_state_dir()
        encoded = ensure_local_service_credential_key(state / "keys")
    try:
        master = decode_key(encoded, name="LOYALNEST_AUTH_SERVICE_CREDENTIAL_KEY")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(service_credential(master, args.service))
    return 0


def _down(args: argparse.Namespace) -> int:
    from loyalnest.devstack.stack import run_down

    return run_down(args)


def _new_service(args: argparse.Namespace) -> int:
    from loyalnest.scaffold.new_service import run

    return run(args.name, Path(args.repo) if args.repo else None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loyalnest", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run one service (configured by LOYALNEST_* env)")
    serve.add_argument("service", choices=sorted(SERVICES))
    serve.set_defaults(func=_serve)

    relay = commands.add_parser(
        "relay",
        help="relay one service's PostgreSQL outbox to Kafka in a process of its own"
        " (for services run with LOYALNEST_OUTBOX_RELAY_IN_PROCESS=false)",
    )
    relay.add_argument("service", choices=sorted(SERVICES))
    relay.set_defaults(func=_relay)

    migrate = commands.add_parser("migrate", help="apply a service's database migrations")
    migrate.add_argument("service", choices=sorted(SERVICES))
    migrate.set_defaults(func=_migrate)

    points = commands.add_parser("points", help="Points jobs (configured by LOYALNEST_* env)")
    points_jobs = points.add_subparsers(dest="job", required=True)
    expire = points_jobs.add_parser(
        "expire",
        help="expire points under each merchant's points_expiry_days and publish"
        " points.expiring notices (idempotent; the chart runs it as a CronJob)",
    )
    expire.set_defaults(func=_points_expire)
    occasions = points_jobs.add_parser(
        "occasions",
        help="credit the BIRTHDAY and ANNIVERSARY earning rules of the day (UTC) once per"
        " customer and year (idempotent; the chart runs it daily as a CronJob)",
    )
    occasions.add_argument(
        "--date",
        type=date.fromisoformat,
        help="the day to credit, YYYY-MM-DD (default: today, UTC), e.g. one a failed run missed",
    )
    occasions.set_defaults(func=_points_occasions)
    rfm = commands.add_parser("rfm", help="RFM analytics jobs")
    rfm_jobs = rfm.add_subparsers(dest="rfm_command", required=True)
    rfm_rescore = rfm_jobs.add_parser(
        "rescore",
        help="recompute quintile cutoffs and rescore every customer (the nightly job;"
        " configured by LOYALNEST_* env like the service)",
    )
    only = rfm_rescore.add_mutually_exclusive_group()
    only.add_argument("--merchant", help="only this merchant (default: every one)")
    only.add_argument("--shop", type=_shop_domain, help="or only this *.myshopify.com shop's")
    rfm_rescore.set_defaults(func=_rfm_rescore)
    tiers = points_jobs.add_parser(
        "tiers",
        help="recalculate VIP tiers: downgrades at the end of a term, renewals, missed"
        " upgrades (idempotent)",
    )
    tiers.set_defaults(func=_points_tiers)
    backfill = points_jobs.add_parser(
        "liability-backfill",
        help="count the ledger written before the liability summary table (or while events"
        " were off) into it; idempotent, safe beside the running consumer (PostgreSQL)",
    )
    backfill.add_argument("--merchant", help="only this merchant (default: every one)")
    backfill.set_defaults(func=_points_liability_backfill)

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
    up.add_argument("--posthog-port", type=int, default=58000, help="the PostHog stand-in")
    up.add_argument("--shopify-port", type=int, default=58001, help="the Shopify OAuth stand-in")
    up.add_argument("--klaviyo-port", type=int, default=58002, help="the Klaviyo stand-in")
    up.add_argument("--postscript-port", type=int, default=58003, help="the Postscript stand-in")
    up.add_argument("--ses-port", type=int, default=58004, help="the Amazon SES stand-in")
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
    _configure_consul_sync(commands)

    token = commands.add_parser(
        "token", help="mint an access token with the local stack's signing key"
    )
    acting_for = token.add_mutually_exclusive_group(required=True)
    acting_for.add_argument("--merchant", help="merchant id the token acts for")
    acting_for.add_argument(
        "--shop", type=_shop_domain, help="or the merchant of this *.myshopify.com shop"
    )
    token.add_argument("--user", default="developer", help="subject (user id)")
    token.add_argument(
        "--permissions",
        default="points:read,points:write,points:adjust",
        help="comma-separated, e.g. points:read,admin:full",
    )
    token.add_argument("--ttl", type=_ttl_seconds, default=15 * 60, help="e.g. 900, 15m, 1h")
    token.add_argument("--keyset", help="private keyset file (default: the local stack's)")
    token.add_argument("--state-dir", help="the local stack's state directory")
    token.add_argument("--force", action="store_true", help="allow a non-local keyset")
    token.set_defaults(func=_token)

    webhook = commands.add_parser(
        "webhook", help="send a Shopify-signed webhook (as Shopify would) to the gateway"
    )
    webhook.add_argument("file", help="JSON body file (- for stdin)")
    webhook.add_argument("--topic", required=True, help="e.g. orders/create")
    webhook.add_argument("--shop", type=_shop_domain, default="loyalnest-demo.myshopify.com")
    webhook.add_argument("--gateway", default="http://127.0.0.1:8080")
    webhook.add_argument("--event-id", help="X-Shopify-Event-Id (repeat one to see dedupe)")
    webhook.add_argument(
        "--secret", help="app secret (default: $LOYALNEST_SHOPIFY_API_SECRET or the dev one)"
    )
    webhook.set_defaults(func=_webhook)

    credential = commands.add_parser(
        "service-credential",
        help="print a service's credential (for its Secret), derived from Auth's master key "
        "(LOYALNEST_AUTH_SERVICE_CREDENTIAL_KEY, else the local stack's)",
    )
    credential.add_argument("service", help="e.g. points")
    credential.add_argument("--state-dir", help="the local stack's state directory")
    credential.set_defaults(func=_service_credential)

    new_service = commands.add_parser(
        "new-service",
        help="scaffold a working service (proto, code, registry, grant, chart entry, tests)",
    )
    new_service.add_argument("name", help="e.g. widgets or event-tracking")
    new_service.add_argument(
        "--repo", help="the checkout to write into (default: the one this package runs from)"
    )
    new_service.set_defaults(func=_new_service)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
