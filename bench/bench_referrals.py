"""Referral completions and invites per second, end to end, in one run (issue 16 item 9).

    .venv/bin/python bench/bench_referrals.py [--referrals 300] [--invites 300]
                                              [--concurrency 16] [--rate 200] [--duration 8]
                                              [--warmup 2] [--drain-timeout 180] [--json]

Path of one completion: a friend's signed orders/create carrying the referrer's code
(aiohttp -> Envoy -> the edge) -> tansu (webhook.received) -> Referrals' consumer (a pending
conversion) and Points' consumer (the order recorded; pending period 0: approved and credited
at once, points.earned `order:<id>`) -> Referrals' consumer (the conversion completes, the
referrer's reward is due) -> Referrals' reward loop -> Points' EarnPoints with Referrals' own
service token from Auth -> the referrer's `referral:<friend>` transaction.

Path of one invite: a queued invite row (as SendInvite / CreateReferral with a friend's email
writes it) -> Referrals' leased send job -> the Klaviyo stand-in (POST /api/events, 202).

Phases, against one Envoy and the same processes (edge, Auth, Points, Referrals):

1. ingress only (bench_orders.py's baseline): Points and Referrals not running yet; the same
   open-loop client and signed orders/create as bench_orders at `--rate`. Then Points and
   Referrals start and work off that backlog (not measured).
2. completions: `--referrals` friend orders (one per referrer, each a new customer placing a
   first order with its referrer's code) sent by `--concurrency` closed-loop senders; done
   when every referrer has its reward in Points' ledger. Completions/s = referrers credited /
   (last credit - first send).
3. invites: `--invites` invites queued at once (email channel), sent by Referrals' job to the
   Klaviyo stand-in; invites/s = accepted events / (last - first accepted).

Then the check: every friend order 200, every referrer credited exactly once with the
program's reward, no other referral credit; every invite accepted once and marked sent.
See README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_orders import GOAL_RATE, Stack, _open_phase, _seed_programs, start_services
from harness import (
    CpuCounter,
    cpu_percent,
    descendants,
    exit_on_sigterm,
    postmaster_pid,
    throwaway_root,
)
from ingress import (
    EDGE_MODULE,
    ID_BASE,
    POINTS_MODULE,
    SHOPS,
    SLOT_CUSTOMER,
    SLOT_NUMBER,
    SLOT_ORDER,
    SLOT_STRIDE,
    TOPIC,
    Template,
    client_processes,
    edge_settings,
    environment,
    envoy_gateway,
    order_template,
    query_count,
    service_settings,
)

AUTH_MODULE = "loyalnest.services.auth.service"
REFERRALS_MODULE = "loyalnest.services.referrals.service"
REWARD_POINTS = 250
# Referrers and friends far above the ingress client's ids (ID_BASE + n * SLOT_STRIDE).
REFERRER_BASE = 7_100_000_000_000
FRIEND_N0 = 10_000_000  # the friend deliveries' n: ids ID_BASE + n * SLOT_STRIDE + slot
KLAVIYO_KEY = "pk_bench_referrals"
POLL_SECONDS = 0.05


# ---------------------------------------------------------------------------------- the setup


@contextlib.contextmanager
def seeding_as(merchant_id: str) -> Iterator[None]:
    """The audited writes below name an actor (the merchant's principal, as a request's
    token would): here the benchmark's seeding, for one merchant."""
    from loyalnest.platform.auth.context import bind, unbind
    from loyalnest.platform.auth.tokens import Principal

    bound = bind(Principal("bench:seed", merchant_id, frozenset(), "bench", 2**31 - 1), "")
    try:
        yield
    finally:
        unbind(bound)


def referrer_of(index: int) -> str:
    return str(REFERRER_BASE + index)


def shop_of(index: int) -> str:
    return SHOPS[index % len(SHOPS)]


async def _seed_referrals(database_url: str, referrals: int) -> list[str]:
    """Referrals' schema, every bench shop's referral program (reward REWARD_POINTS, no friend
    discount: no Shopify call) and one referral per referrer, through the store API, before
    Referrals starts (as CreateReferral would store them; Core and the Shopify discount are
    not part of the path measured). Returns the codes, by referrer index."""
    import logging

    import structlog

    from loyalnest.gen.events.v1 import core_pb2
    from loyalnest.platform.idempotency import IdempotencyKey
    from loyalnest.platform.postgres import Database
    from loyalnest.platform.tenancy import merchant_id_for_shop
    from loyalnest.services.referrals.service import DATABASE, ReferralsSettings
    from loyalnest.services.referrals.store import ReferralStore

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    database = Database(ReferralsSettings(database_url=database_url), DATABASE)
    await database.open()
    try:
        await database.migrate()
        store = ReferralStore(database)
        program = core_pb2.ProgramSettings(
            version=1, referral=core_pb2.ReferralProgram(referrer_reward_points=REWARD_POINTS)
        )
        for shop in SHOPS:
            async with database.pool.connection() as conn:
                await store.save_program(conn, merchant_id_for_shop(shop), program)
        codes = []
        for index in range(referrals):
            referrer, shop = referrer_of(index), shop_of(index)
            with seeding_as(merchant_id_for_shop(shop)):
                referral = await store.active_for(
                    merchant_id_for_shop(shop),
                    referrer,
                    shop=shop,
                    key=IdempotencyKey.internal(f"bench:{index}", referrer, shop),
                )
            codes.append(referral.code)
        return codes
    finally:
        await database.close()


async def _install_shops(database_url: str, encryption_key: str) -> None:
    """Every bench shop installed in Auth (its merchant row with a Shopify token, as the OAuth
    install writes it), through Auth's store once Auth has migrated: Auth issues Referrals'
    service token for a merchant only if it knows the merchant."""
    from loyalnest.platform.postgres import Database
    from loyalnest.services.auth.service import DATABASE, AuthSettings, field_encryption
    from loyalnest.services.auth.shopify import ShopifyTokens
    from loyalnest.services.auth.store import AuthStore

    settings = AuthSettings(database_url=database_url, auth_encryption_key=encryption_key)
    database = Database(settings, DATABASE)
    await database.open()
    try:
        store = AuthStore(database, *field_encryption(settings, local=False))
        for shop in SHOPS:
            async with database.pool.connection() as conn, conn.transaction():
                await store.install(conn, shop, ShopifyTokens("bench-token", ("read_orders",)))
    finally:
        await database.close()


async def _queue_invites(database_url: str, invites: int, referrals: int) -> None:
    """`invites` email invites over the referrals, as SendInvite queues them (no caps)."""
    from loyalnest.platform.idempotency import IdempotencyKey
    from loyalnest.platform.postgres import Database
    from loyalnest.platform.tenancy import merchant_id_for_shop
    from loyalnest.services.referrals.invites import Channel, InviteStore
    from loyalnest.services.referrals.service import DATABASE, ReferralsSettings
    from loyalnest.services.referrals.store import ReferralStore

    database = Database(ReferralsSettings(database_url=database_url), DATABASE)
    await database.open()
    try:
        store, queue = ReferralStore(database), InviteStore(database)
        for index in range(invites):
            which = index % referrals
            referral = await store.get(
                merchant_id_for_shop(shop_of(which)),
                code="",
                referral_id=await _referral_id(database, referrer_of(which)),
            )
            with seeding_as(referral.merchant_id):
                await queue.queue(
                    referral,
                    Channel.EMAIL,
                    f"friend-{index}@example.com",
                    per_referrer=0,
                    per_merchant=0,
                    key=IdempotencyKey.internal(f"bench-invite:{index}", referral.referrer_id),
                )
    finally:
        await database.close()


async def _referral_id(database: Any, referrer: str) -> str:
    async with database.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT referral_id FROM referrals WHERE referrer_id = %s", (referrer,)
        )
        row = await cursor.fetchone()
        return str(row[0])


def friend_order(index: int, code: str, secret: str) -> tuple[bytes, dict[str, str]]:
    """A new customer's first orders/create with `code` among its discount codes, signed as
    Shopify signs it; ingress.py's template (the same payload shape as the baseline's)."""
    from loyalnest.services.edge.signing import shopify_headers

    n = FRIEND_N0 + index
    base = ID_BASE + n * SLOT_STRIDE
    values = [str(base + slot).encode() for slot in range(SLOT_STRIDE)]
    values[SLOT_NUMBER] = str(1001 + n).encode()
    order = json.loads(Template.compile(order_template(random.Random(index))).fill(values))
    order["discount_codes"][0]["code"] = code
    body = json.dumps(order, separators=(",", ":")).encode()
    headers = shopify_headers(
        body, topic=TOPIC, shop_domain=shop_of(index), secret=secret, event_id=f"friend-{n}"
    )
    return body, headers


def friend_id(index: int) -> str:
    return str(ID_BASE + (FRIEND_N0 + index) * SLOT_STRIDE + SLOT_CUSTOMER)


def friend_order_id(index: int) -> str:
    return str(ID_BASE + (FRIEND_N0 + index) * SLOT_STRIDE + SLOT_ORDER)


async def send_all(
    url: str, deliveries: Sequence[tuple[bytes, dict[str, str]]], concurrency: int
) -> dict[str, int]:
    """Closed loop: `concurrency` senders over one keep-alive pool; statuses counted."""
    import aiohttp

    statuses: dict[str, int] = {}
    pending = iter(deliveries)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def sender() -> None:
            for body, headers in pending:
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        key = str(response.status)
                except aiohttp.ClientError as exc:
                    key = type(exc).__name__
                statuses[key] = statuses.get(key, 0) + 1

        await asyncio.gather(*(sender() for _ in range(concurrency)))
    return statuses


# ---------------------------------------------------------------------------------- the run


@dataclass
class Services:
    auth: list[Any]
    referrals: list[Any]


def _cpu(stack: Stack, services: Services) -> CpuCounter:
    pg = postmaster_pid(stack.env.pg_data_dir)
    broker = stack.env.broker_pid
    return CpuCounter(
        {
            # This process (the friend-order senders, the Klaviyo stand-in's threads) and the
            # ingress client processes (idle after their phase): as bench_orders' `client`.
            "client": lambda: [*stack.clients.pids, os.getpid()],
            "envoy": lambda: [stack.envoy_pid],
            "edge": lambda: [s.pid for s in stack.edge],
            "points": lambda: [s.pid for s in stack.points],
            "referrals": lambda: [s.pid for s in services.referrals],
            "auth": lambda: [s.pid for s in services.auth],
            "postgres": lambda: descendants(pg) if pg else [],
            "redis": lambda: [stack.env.redis_pid],
            "broker": lambda: [broker] if broker else [],
        }
    )


def _wait(count: Callable[[], int], target: int, timeout: float) -> tuple[int, float]:
    """Polls `count` until it reaches `target`, or `timeout`, or it stops moving for a third
    of the timeout; the last value and when it last grew."""
    started = time.monotonic()
    value, grew = count(), started
    while value < target and time.monotonic() - started < timeout:
        time.sleep(POLL_SECONDS)
        now_value = count()
        if now_value != value:
            value, grew = now_value, time.monotonic()
        elif time.monotonic() - grew > timeout / 3:
            break
    return value, grew


# Where a completion's time goes, from Referrals' own timestamps (seconds, PostgreSQL's
# clock): the friend order recorded (a pending conversion) -> completed (Points' approval
# consumed, the reward due) -> credited (EarnPoints answered).
STAGES_SQL = """
SELECT extract(epoch FROM max(c.created_at) - min(c.created_at)),
       extract(epoch FROM percentile_cont(0.5)
               WITHIN GROUP (ORDER BY c.completed_at - c.created_at)),
       extract(epoch FROM max(c.completed_at - c.created_at)),
       extract(epoch FROM percentile_cont(0.5)
               WITHIN GROUP (ORDER BY r.credited_at - r.created_at)),
       extract(epoch FROM max(r.credited_at - r.created_at)),
       extract(epoch FROM max(r.credited_at) - min(c.created_at))
FROM referrals.conversions c JOIN referrals.rewards r
  ON r.merchant_id = c.merchant_id AND r.reason = 'referral:' || c.referee_id
"""
STAGE_NAMES = (
    "orders_recorded_over",
    "recorded_to_completed_p50",
    "recorded_to_completed_max",
    "due_to_credited_p50",
    "due_to_credited_max",
    "first_recorded_to_last_credited",
)


def stages(database_url: str) -> dict[str, float]:
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute(STAGES_SQL).fetchone()
    return {name: float(v or 0) for name, v in zip(STAGE_NAMES, row or (), strict=False)}


REFERRAL_CREDITS = "FROM points.points_transactions WHERE reason LIKE 'referral:%'"


def run_benchmark(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    from loyalnest.devstack.standins.klaviyo import KlaviyoStandIn
    from loyalnest.platform.auth.keys import KeySet
    from loyalnest.platform.auth.service_identity import service_credential

    load_before = os.getloadavg()
    seed = random.randrange(1 << 30)
    klaviyo = KlaviyoStandIn(api_keys=frozenset({KLAVIYO_KEY}))
    klaviyo.start()
    with (
        throwaway_root("loyalnest-bench-referrals-", args.logs) as root,
        environment(args, root) as env,
        client_processes(1, env.secret, seed) as clients,
        contextlib.ExitStack() as servers,
    ):
        servers.callback(klaviyo.stop)
        # Auth signs the service tokens every service (and Envoy) verifies: one keyset whose
        # public half replaces the environment's JWKS before anything reads it.
        keyset = KeySet.generate(local=False)
        keyset_path = root / "signing-keys.json"
        keyset_path.write_text(keyset.to_json())
        env.jwks_path.write_text(json.dumps(keyset.public_jwks()))
        master_key = os.urandom(32)

        say("Points' and Referrals' schemas, programs (pending period 0) and referrals ...")
        asyncio.run(_seed_programs(env.database_url))
        codes = asyncio.run(_seed_referrals(env.database_url, args.referrals))
        say("edge behind Envoy ...")
        edge = start_services(EDGE_MODULE, 1, edge_settings(args, env), servers)
        gateway = servers.enter_context(
            envoy_gateway(root, "referrals", [s.address for s in edge], env.jwks_path)
        )
        url = gateway.url + f"/v1/api/webhooks/{TOPIC}"
        stack = Stack(env, clients, edge, [], gateway.pid, url)
        services = Services([], [])

        say(f"ingress only (bench_orders' baseline): open loop {args.rate:g}/s ...")
        ingress = _open_phase(stack, args.rate, args)

        base = service_settings(env, tracing=args.tracing)
        say("Auth, Points, Referrals ...")
        auth_key = base64.b64encode(os.urandom(32)).decode()
        services.auth += start_services(
            AUTH_MODULE,
            1,
            base
            | {
                "auth_signing_keys_path": str(keyset_path),
                "auth_encryption_key": auth_key,
                "auth_service_credential_key": base64.b64encode(master_key).decode(),
                "shopify_api_key": "bench-api-key",
                "shopify_api_secret": env.secret,
                "shopify_base_url": "http://127.0.0.1:9",  # no install in this run
                "shopify_redirect_url": "http://localhost/auth/callback",
            },
            servers,
        )
        asyncio.run(_install_shops(env.database_url, auth_key))
        stack.points += start_services(POINTS_MODULE, 1, base, servers)
        services.referrals += start_services(
            REFERRALS_MODULE,
            1,
            base
            | {
                "call_targets": {
                    "auth": services.auth[0].address,
                    "points": stack.points[0].address,
                },
                "service_credential": service_credential(master_key, "referrals"),
                "klaviyo_base_url": klaviyo.url,
                "referrals_provider_keys": json.dumps({"*": {"klaviyo_api_key": KLAVIYO_KEY}}),
            },
            servers,
        )
        db = env.database_url
        say(f"Points working off the ingress backlog ({len(ingress.scheduled)} orders) ...")
        _wait(
            lambda: query_count(
                db, "SELECT count(*) FROM points.order_earnings WHERE status = 'approved'"
            ),
            ingress.accepted_total,
            args.drain_timeout,
        )

        say(f"completions: {args.referrals} friend orders, {args.concurrency} senders ...")
        deliveries = [friend_order(i, codes[i], env.secret) for i in range(args.referrals)]
        counter = _cpu(stack, services)
        before = counter.sample()
        started = time.monotonic()
        statuses = asyncio.run(send_all(url, deliveries, args.concurrency))
        sent_seconds = time.monotonic() - started
        credited, last = _wait(
            lambda: query_count(db, f"SELECT count(DISTINCT customer_id) {REFERRAL_CREDITS}"),
            args.referrals,
            args.drain_timeout,
        )
        after = counter.sample()
        seconds = last - started
        completions = {
            "referrals": args.referrals,
            "credited": credited,
            "send_seconds": sent_seconds,
            "seconds": seconds,
            "throughput": credited / seconds if seconds > 0 else 0.0,
            "statuses": statuses,
            "cpu_percent": cpu_percent(before, after, seconds),
            "stages_seconds": stages(db),
        }

        say(f"invites: {args.invites} queued, sent to the Klaviyo stand-in ...")
        asyncio.run(_queue_invites(db, args.invites, args.referrals))
        counter = _cpu(stack, services)
        before = counter.sample()
        first_seen: float | None = None
        started = time.monotonic()
        deadline = started + args.drain_timeout
        while len(klaviyo.accepted) < args.invites and time.monotonic() < deadline:
            if first_seen is None and klaviyo.accepted:
                first_seen = time.monotonic()
            time.sleep(POLL_SECONDS / 5)
        ended = time.monotonic()
        after = counter.sample()
        accepted = len(klaviyo.accepted)
        span = ended - (first_seen or started)
        invites = {
            "invites": args.invites,
            "accepted": accepted,
            "seconds": span,
            "throughput": (accepted - 1) / span if span > 0 and accepted > 1 else 0.0,
            "cpu_percent": cpu_percent(before, after, ended - started),
        }

        say("checking ...")
        per_referrer = query_count(
            db,
            "SELECT count(*) FROM (SELECT customer_id FROM points.points_transactions"
            " WHERE reason LIKE 'referral:%' GROUP BY customer_id HAVING count(*) > 1) t",
        )
        check: dict[str, Any] = {
            "friend_orders_200": statuses.get("200", 0),
            "referral_credits": query_count(db, f"SELECT count(*) {REFERRAL_CREDITS}"),
            "referrers_credited": credited,
            "referrers_credited_twice": per_referrer,
            "credits_with_other_points": query_count(
                db, f"SELECT count(*) {REFERRAL_CREDITS} AND points <> {REWARD_POINTS}"
            ),
            "unexpected_referrers": query_count(
                db,
                f"SELECT count(*) {REFERRAL_CREDITS} AND customer_id::bigint NOT BETWEEN "
                f"{REFERRER_BASE} AND {REFERRER_BASE + args.referrals - 1}",
            ),
            "invites_accepted": accepted,
            "invites_marked_sent": query_count(
                db, "SELECT count(*) FROM referrals.invites WHERE status = 'sent'"
            ),
        }
        check["ok"] = (
            check["friend_orders_200"] == args.referrals
            and check["referral_credits"] == credited == args.referrals
            and per_referrer == 0
            and check["credits_with_other_points"] == 0
            and check["unexpected_referrers"] == 0
            and accepted == args.invites == check["invites_marked_sent"]
        )
    baseline = ingress.throughput
    return {
        "cpu_count": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "tracing": args.tracing,
        "ingress": ingress.public(),
        "completions": completions,
        "invites": invites,
        "ratio_completions_to_ingress": completions["throughput"] / baseline if baseline else 0,
        "ratio_invites_to_ingress": invites["throughput"] / baseline if baseline else 0,
        "correctness": check,
    }


# ---------------------------------------------------------------------------------- reporting

CPU_COLUMNS = (
    *("client", "envoy", "edge", "points", "referrals", "auth", "postgres", "redis", "broker"),
)


def render(report: dict[str, Any]) -> str:
    load = " ".join(f"{x:.2f}" for x in report["loadavg_before"])
    load_after = " ".join(f"{x:.2f}" for x in report["loadavg_after"])
    ingress, done, inv = report["ingress"], report["completions"], report["invites"]
    lines = [
        f"cpus: {report['cpu_count']}   load average before: {load}   after: {load_after}",
        "servers: 1 edge, 1 Auth, 1 Points, 1 Referrals, one Envoy; tansu; PostgreSQL fsync off;"
        f" tracing {'on' if report['tracing'] else 'off'}",
        "",
        f"{'phase':<14}{'per s':>8}{'count':>7}{'s':>7} | cpu% then us per item:"
        + "".join(f"{c:>10}" for c in CPU_COLUMNS),
    ]
    rows = [
        ("ingress", ingress["throughput"], ingress["accepted_total"], 0.0, ingress["cpu_percent"]),
        ("completions", done["throughput"], done["credited"], done["seconds"], done["cpu_percent"]),
        ("invites", inv["throughput"], inv["accepted"], inv["seconds"], inv["cpu_percent"]),
    ]
    for name, rate, count, seconds, cpu in rows:
        lines.append(
            f"{name:<14}{rate:>8.1f}{count:>7}{seconds:>7.1f} | cpu%     "
            + "".join(f"{cpu[c]:>10.0f}" if c in cpu else f"{'-':>10}" for c in CPU_COLUMNS)
        )
        lines.append(
            f"{'':<36} | us/item  "
            + "".join(
                f"{cpu[c] * 1e4 / rate:>10.0f}" if c in cpu and rate else f"{'-':>10}"
                for c in CPU_COLUMNS
            )
        )
    check = report["correctness"]
    lines += [
        "",
        f"ratio completions/ingress: {report['ratio_completions_to_ingress']:.3f}x   "
        f"invites/ingress: {report['ratio_invites_to_ingress']:.3f}x",
        f"friend orders: statuses {done['statuses']}, sent in {done['send_seconds']:.1f}s",
        "completion stages (s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in done["stages_seconds"].items()),
        f"correctness: {check['referrers_credited']} of {done['referrals']} referrers credited, "
        f"{check['referral_credits']} referral credits, {check['referrers_credited_twice']} "
        f"credited twice, {check['credits_with_other_points']} with other points, "
        f"{check['unexpected_referrers']} unexpected; invites {check['invites_accepted']} "
        f"accepted by Klaviyo, {check['invites_marked_sent']} marked sent "
        f"=> {'OK' if check['ok'] else 'FAILED'}",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--referrals", type=int, default=300, help="referrers, one friend each")
    parser.add_argument("--invites", type=int, default=300, help="invites queued at once")
    parser.add_argument("--concurrency", type=int, default=16, help="friend-order senders")
    parser.add_argument(
        "--rate", type=float, default=GOAL_RATE, help="ingress baseline: orders/s offered"
    )
    parser.add_argument("--duration", type=float, default=8.0, help="ingress measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="ingress discarded seconds")
    parser.add_argument(
        "--tracing", action=argparse.BooleanOptionalAction, default=True, help="OpenTelemetry"
    )
    parser.add_argument("--pg-durable", action="store_true", help="fsync on (default off)")
    parser.add_argument("--drain-timeout", type=float, default=180.0, help="seconds per wait")
    parser.add_argument("--json", action="store_true", help="print a JSON report instead")
    parser.add_argument("--logs", type=Path, metavar="DIR", help="copy the logs to DIR")
    args = parser.parse_args(argv)
    if min(args.referrals, args.invites, args.concurrency) < 1 or args.rate <= 0:
        parser.error("--referrals, --invites, --concurrency >= 1 and --rate > 0")
    args.broker = True  # environment(): tansu is part of the path
    args.kafka_producer = args.kafka_consumer = None  # the platform's defaults
    args.clients = 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)

    def say(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    say("starting PostgreSQL, Valkey, tansu ...")
    report = run_benchmark(args, say)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0 if report["correctness"]["ok"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
