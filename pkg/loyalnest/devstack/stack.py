"""`loyalnest up | status | down`: the whole mesh as processes on 127.0.0.1, no Docker.

Start order, each step gated on readiness: PostgreSQL → Redis → Kafka (tansu) → every service's
worker processes → the mesh-wide reflection server → Envoy. Any failure stops what was started
and names the component. The stack's state (pid, endpoints, restarts) is kept in
`<state>/stack.json` for `status` and `down`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from loyalnest.devstack import demo_merchant, probes
from loyalnest.devstack.bytecode import compile_bytecode
from loyalnest.devstack.ports import PortReservations
from loyalnest.devstack.postgres import LocalPostgres, PostgresError, traversable_by_others
from loyalnest.devstack.servers import KafkaBroker, RedisServer, tcp_ready
from loyalnest.devstack.standins import klaviyo as klaviyo_standin
from loyalnest.devstack.standins import posthog as posthog_standin
from loyalnest.devstack.standins import postscript as postscript_standin
from loyalnest.devstack.standins import ses as ses_standin
from loyalnest.devstack.supervisor import ComponentError, ProcessSpec, Supervisor
from loyalnest.gateway import openapi
from loyalnest.gateway.edge import LOOPBACK_CIDRS, EdgePolicy, JwtProvider, ReadRateLimit
from loyalnest.gateway.envoy_binary import EnvoyConfigError, envoy_command, validate_config
from loyalnest.gateway.envoy_config import (
    GatewayConfig,
    unserved_services,
    upstreams_from_descriptor_set,
    write,
)
from loyalnest.gateway.jwt_rules import GatewayJwks
from loyalnest.gateway.reflection import DEFAULT_DESCRIPTOR_SET
from loyalnest.platform.auth.keys import ensure_local_keyset
from loyalnest.platform.auth.service_identity import service_credential
from loyalnest.platform.calls import AUTH
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.crypto import decode_key
from loyalnest.platform.events import pseudonyms
from loyalnest.services.registry import SERVICES, spec_for

DATABASE = "loyalnest"
STATE_FILE = "stack.json"
# Shopify webhook secret for local development only; production reads it from a Secret.
DEV_SHOPIFY_API_SECRET = "loyalnest-dev-shopify-secret"
# The app's client id Auth and the local Shopify OAuth stand-in share.
DEV_SHOPIFY_API_KEY = "loyalnest-dev-shopify-api-key"
# The service that answers Envoy's rate-limit checks (envoy.service.ratelimit.v3).
RATE_LIMIT_SERVICE = "edge"


@dataclass
class Ports:
    gateway: int = 8080
    gateway_admin: int = 9901
    postgres: int = 55432
    redis: int = 56379
    kafka: int = 59092
    posthog: int = 58000  # the PostHog stand-in (devstack/standins/posthog.py)
    shopify: int = 58001  # Shopify's OAuth + Admin API stand-in (standins/shopify_admin.py)
    # Referral invites' providers: stand-ins in devstack/standins/.
    klaviyo: int = 58002
    postscript: int = 58003
    ses: int = 58004
    reflection: int = 50050
    first_service: int = 50051
    first_metrics: int = 51051


@dataclass
class Component:
    name: str
    probe: str  # how `status` checks it: grpc | redis | tcp
    port: int
    address: str  # what a user connects to
    host: str = "127.0.0.1"
    pid: int | None = None
    metrics: str = ""
    restarts: int = 0

    async def healthy(self) -> bool:
        if self.probe == "grpc":
            return await probes.grpc_serving(f"{self.host}:{self.port}")
        if self.probe == "redis":
            return await RedisServer(self.port, Path()).ready()
        return await tcp_ready(self.host, self.port)


@dataclass
class StackState:
    pid: int
    state_dir: str
    status: str = "starting"  # starting | ready | stopping
    gateway_url: str = ""
    grpc_address: str = ""
    components: list[Component] = field(default_factory=list)

    def save(self) -> None:
        path = Path(self.state_dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, state_dir: Path) -> StackState | None:
        try:
            data = json.loads((state_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        data["components"] = [Component(**c) for c in data["components"]]
        return cls(**data)


def default_state_dir() -> Path:
    state = Path.cwd() / ".loyalnest"
    if os.geteuid() != 0 or traversable_by_others(Path.cwd()):
        return state
    # As root the postgres user must reach the data directory; a clone under /root cannot.
    digest = hashlib.sha256(str(Path.cwd()).encode()).hexdigest()[:10]
    return Path("/var/tmp") / f"loyalnest-{digest}"


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir).resolve() if args.state_dir else default_state_dir()


def local_keyset_path(state_dir: str | None) -> Path:
    """The local stack's token signing keys (created on first use, marked local)."""
    directory = (Path(state_dir).resolve() if state_dir else default_state_dir()) / "keys"
    private, _ = ensure_local_keyset(directory)
    return private


def ensure_local_service_credential_key(directory: Path) -> str:
    """The local stack's master key of service credentials (base64, file 0600), made once."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "service-credential-key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(base64.b64encode(os.urandom(32)).decode())
    return path.read_text().strip()


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _say(component: str, message: str) -> None:
    print(f"  {component:<16} {message}", flush=True)


class Stack:
    def __init__(self, args: argparse.Namespace) -> None:
        self.state_dir = _state_dir(args)
        self.workers: int = args.workers
        self.ports = Ports(
            gateway=args.gateway_port,
            gateway_admin=args.gateway_admin_port,
            postgres=args.postgres_port,
            redis=args.redis_port,
            kafka=args.kafka_port,
            posthog=getattr(args, "posthog_port", Ports.posthog),
            shopify=getattr(args, "shopify_port", Ports.shopify),
            klaviyo=getattr(args, "klaviyo_port", Ports.klaviyo),
            postscript=getattr(args, "postscript_port", Ports.postscript),
            ses=getattr(args, "ses_port", Ports.ses),
            reflection=args.reflection_port,
            first_service=args.base_port,
            first_metrics=args.base_port + 1000,
        )
        self.frontend_origin: str = args.frontend_origin
        self.log_dir = self.state_dir / "logs"
        self.postgres = LocalPostgres(self.state_dir / "postgres" / "data", self.ports.postgres)
        self.redis = RedisServer(self.ports.redis, self.state_dir / "redis")
        self.kafka = KafkaBroker(self.ports.kafka)
        self.reservations = PortReservations(lambda message: _say("ports", message))
        self.supervisor = Supervisor(self.log_dir, self._report, self.reservations)
        self.state = StackState(pid=os.getpid(), state_dir=str(self.state_dir))
        self.jwks_path = self.state_dir / "keys" / "jwks.json"

    def _report(self, component: str, message: str) -> None:
        _say(component, message)
        for process in self.supervisor.processes:
            for entry in self.state.components:
                if entry.name == process.spec.name:
                    entry.pid, entry.restarts = process.pid, process.restarts
        with contextlib.suppress(OSError):
            self.state.save()

    def _register(self, component: Component) -> None:
        self.state.components.append(component)
        self.state.save()

    @staticmethod
    def _shopify_api_secret() -> str:
        return os.environ.get("LOYALNEST_SHOPIFY_API_SECRET", DEV_SHOPIFY_API_SECRET)

    def _service_env(self) -> dict[str, str]:
        return {
            "LOYALNEST_HOST": "127.0.0.1",
            "LOYALNEST_DATABASE_URL": self.postgres.url(DATABASE),
            "LOYALNEST_REDIS_URL": self.redis.url,
            "LOYALNEST_KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "LOYALNEST_SHOPIFY_API_SECRET": self._shopify_api_secret(),
            # Auth's OAuth goes to the Shopify stand-in: the demo merchant installs through it.
            "LOYALNEST_SHOPIFY_API_KEY": DEV_SHOPIFY_API_KEY,
            "LOYALNEST_SHOPIFY_BASE_URL": f"http://127.0.0.1:{self.ports.shopify}/{{shop}}",
            "LOYALNEST_SHOPIFY_ADMIN_BASE_URL": f"http://127.0.0.1:{self.ports.shopify}/{{shop}}",
            "LOYALNEST_LOG_FORMAT": "json",
            # No Shopify customer id on Kafka, as wherever the mesh runs (platform/events/
            # pseudonyms.py): the services handling customer events ask the edge.
            "LOYALNEST_CUSTOMER_PSEUDONYMS": "true",
            # Applied by the stack before the services start (_migrate), as the chart's Job.
            "LOYALNEST_RUN_MIGRATIONS_ON_START": "false",
            "LOYALNEST_JWT_JWKS_PATH": str(self.jwks_path),
            # Event Tracking ships to the PostHog stand-in, never to PostHog from here.
            "LOYALNEST_POSTHOG_HOST": f"http://127.0.0.1:{self.ports.posthog}",
            "LOYALNEST_POSTHOG_API_KEY": posthog_standin.DEFAULT_API_KEY,
            # ... and deletes erased customers' persons through the stand-in's persons API.
            "LOYALNEST_POSTHOG_API_HOST": f"http://127.0.0.1:{self.ports.posthog}",
            "LOYALNEST_POSTHOG_PROJECT_ID": posthog_standin.DEFAULT_PROJECT_ID,
            "LOYALNEST_POSTHOG_PERSONAL_API_KEY": posthog_standin.DEFAULT_PERSONAL_API_KEY,
            # Referrals' invites go to the Klaviyo, Postscript and SES stand-ins.
            "LOYALNEST_KLAVIYO_BASE_URL": f"http://127.0.0.1:{self.ports.klaviyo}",
            "LOYALNEST_POSTSCRIPT_BASE_URL": f"http://127.0.0.1:{self.ports.postscript}",
            "LOYALNEST_SES_ENDPOINT_URL": f"http://127.0.0.1:{self.ports.ses}",
            "LOYALNEST_SES_ACCESS_KEY_ID": ses_standin.DEFAULT_ACCESS_KEY_ID,
            "LOYALNEST_SES_SECRET_ACCESS_KEY": ses_standin.DEFAULT_SECRET_ACCESS_KEY,
            "LOYALNEST_SES_FROM_ADDRESS": "invites@loyalnest.local",
            "LOYALNEST_REFERRALS_PROVIDER_KEYS": json.dumps(
                {
                    "*": {
                        "klaviyo_api_key": klaviyo_standin.DEFAULT_API_KEY,
                        "postscript_api_key": postscript_standin.DEFAULT_API_KEY,
                    }
                }
            ),
        }

    async def _start_postgres(self) -> None:
        _say("postgres", f"starting on 127.0.0.1:{self.ports.postgres}")
        try:
            await asyncio.to_thread(self.postgres.start)
            await asyncio.to_thread(self.postgres.create_database, DATABASE)
        except PostgresError as exc:
            raise ComponentError("postgres", str(exc)) from exc
        self._register(
            Component("postgres", "tcp", self.ports.postgres, self.postgres.url(DATABASE))
        )
        _say("postgres", "ready")

    async def _start_backing(self) -> None:
        self.redis.data_dir.mkdir(parents=True, exist_ok=True)
        self._register(Component("redis", "redis", self.redis.port, self.redis.url))
        await self.supervisor.start(
            ProcessSpec(
                "redis",
                self.redis.argv(),
                self.redis.ready,
                ports=[self.redis.port],
                backing=True,
            )
        )
        self._register(Component("kafka", "tcp", self.kafka.port, self.kafka.bootstrap_servers))
        await self.supervisor.start(
            ProcessSpec(
                "kafka",
                self.kafka.argv(),
                self.kafka.ready,
                ports=[self.kafka.port],
                backing=True,
            )
        )
        await self._start_standin(
            "posthog-standin", self.ports.posthog, ["loyalnest.devstack.standins.posthog"]
        )
        await self._start_standin(
            "shopify-standin",
            self.ports.shopify,
            [
                # The Admin API's stand-in, which is the OAuth one too: Points' reward codes,
                # Campaign's discounts, Products' sync and Core's billing work locally.
                "loyalnest.devstack.standins.shopify_admin",
                "--api-key",
                DEV_SHOPIFY_API_KEY,
            ],
            # The secret by environment, not argv (which `ps` shows).
            {"LOYALNEST_SHOPIFY_API_SECRET": self._shopify_api_secret()},
        )
        for name, port in (
            ("klaviyo", self.ports.klaviyo),
            ("postscript", self.ports.postscript),
            ("ses", self.ports.ses),
        ):
            await self._start_standin(
                f"{name}-standin", port, [f"loyalnest.devstack.standins.{name}"]
            )

    async def _start_standin(
        self, name: str, port: int, argv: list[str], env: dict[str, str] | None = None
    ) -> None:
        """An outside API's stand-in (devstack/standins/), a supervised process on `port`."""
        self._register(Component(name, "tcp", port, f"http://127.0.0.1:{port}"))
        await self.supervisor.start(
            ProcessSpec(
                name,
                [sys.executable, "-m", *argv, "--port", str(port)],
                partial(tcp_ready, "127.0.0.1", port),
                ports=[port],
                env=env or {},
                backing=True,
            )
        )

    async def _install_demo_merchant(self) -> None:
        """The demo shop installs the app through Auth's real OAuth path (demo_merchant.py)."""
        shop = demo_merchant.DEMO_SHOP
        try:
            installed = await asyncio.to_thread(demo_merchant.install, self.state.gateway_url)
        except (demo_merchant.InstallError, OSError, ValueError, KeyError) as exc:
            raise ComponentError("demo-merchant", f"installing {shop}: {exc}") from exc
        how = "installed" if installed.first_install else "already installed, signed in"
        _say("demo-merchant", f"{shop} {how} (merchant {installed.merchant_id})")

    def _identity_env(self, service: str, calls: tuple[str, ...]) -> dict[str, str]:
        """Service identity: Auth gets the master key; a service that calls Auth (where service
        tokens come from) its credential, derived from it."""
        master = ensure_local_service_credential_key(self.jwks_path.parent)
        if service == AUTH:
            return {"LOYALNEST_AUTH_SERVICE_CREDENTIAL_KEY": master}
        if AUTH not in calls:
            return {}
        key = decode_key(master, name="service credential key")
        return {"LOYALNEST_SERVICE_CREDENTIAL": service_credential(key, service)}

    def _addresses(self) -> dict[str, list[str]]:
        """Every service's worker addresses, in start order."""
        addresses: dict[str, list[str]] = {}
        for service, _, grpc_port, _ in self._service_processes():
            addresses.setdefault(service, []).append(f"127.0.0.1:{grpc_port}")
        return addresses

    @staticmethod
    def _call_env(calls: tuple[str, ...], addresses: dict[str, list[str]]) -> dict[str, str]:
        """Where the services a service declares it calls answer: all their workers, which
        the channel balances over (round robin)."""
        if not calls:
            return {}
        targets = {callee: "ipv4:" + ",".join(addresses[callee]) for callee in calls}
        return {"LOYALNEST_CALL_TARGETS": json.dumps(targets)}

    async def _migrate(self) -> None:
        """Every service's schema, applied here one after another (as the chart's migration
        Job does) rather than by each service at start: yoyo, and what a run of it leaves in
        the heap, then stay out of the 13 service processes (~2.5 MiB each, bench/README.md
        "Memory"); this process imports every service's spec anyway."""
        url = self.postgres.url(DATABASE)
        for service in SERVICES:
            database = spec_for(service).database
            if database is None:
                continue
            try:
                applied = await asyncio.to_thread(database.migrate, url)
            except Exception as exc:
                raise ComponentError(service, f"migrations failed: {exc}") from exc
            if applied:
                self._report(service, f"{len(applied)} migrations applied")

    def _service_processes(self) -> Iterator[tuple[str, int, int, int]]:
        """(service, worker index, gRPC port, metrics port) of every service process."""
        offset = 0
        for service in SERVICES:
            for index in range(self.workers):
                yield (
                    service,
                    index,
                    self.ports.first_service + offset,
                    self.ports.first_metrics + offset,
                )
                offset += 1

    def _mesh_ports(self) -> list[int]:
        """What the services (gRPC and metrics), the reflection server and Envoy listen on."""
        services = [
            port for *_, grpc, metrics in self._service_processes() for port in (grpc, metrics)
        ]
        return [*services, self.ports.reflection, self.ports.gateway, self.ports.gateway_admin]

    async def _start_services(self) -> dict[str, list[tuple[str, int]]]:
        endpoints: dict[str, list[tuple[str, int]]] = {}
        addresses = self._addresses()
        processes: dict[str, list[tuple[int, int, int]]] = {}
        for service, index, grpc_port, metrics_port in self._service_processes():
            processes.setdefault(service, []).append((index, grpc_port, metrics_port))
        for service in SERVICES:
            # Its declared calls, and its event loops' (the edge's customer pseudonyms).
            calls = tuple(sorted({*spec_for(service).calls.services, *pseudonyms.callees(service)}))
            unknown = [callee for callee in calls if callee not in addresses]
            if unknown:
                raise ComponentError(service, f"calls {', '.join(unknown)}: not in the registry")
            specs = []
            for index, grpc_port, metrics_port in processes[service]:
                address = f"127.0.0.1:{grpc_port}"
                name = f"{service}-{index}"
                env = {
                    **self._service_env(),
                    **self._identity_env(service, calls),
                    **self._call_env(calls, addresses),
                    "LOYALNEST_GRPC_PORT": str(grpc_port),
                    "LOYALNEST_METRICS_PORT": str(metrics_port),
                }
                specs.append(
                    ProcessSpec(
                        name,
                        [sys.executable, "-m", "loyalnest.cli", "serve", service],
                        partial(probes.grpc_serving, address),
                        ports=[grpc_port, metrics_port],
                        env=env,
                    )
                )
                self._register(
                    Component(
                        name,
                        "grpc",
                        grpc_port,
                        address,
                        metrics=f"http://127.0.0.1:{metrics_port}/metrics",
                    )
                )
                endpoints.setdefault(service, []).append(("127.0.0.1", grpc_port))
            await self.supervisor.start_group(specs)
        return endpoints

    async def _start_gateway(self, endpoints: dict[str, list[tuple[str, int]]]) -> None:
        reflection_address = f"127.0.0.1:{self.ports.reflection}"
        self._register(Component("reflection", "grpc", self.ports.reflection, reflection_address))
        await self.supervisor.start(
            ProcessSpec(
                "reflection",
                [
                    sys.executable,
                    "-m",
                    "loyalnest.gateway.reflection",
                    "--port",
                    str(self.ports.reflection),
                ],
                partial(probes.grpc_serving, reflection_address),
                ports=[self.ports.reflection],
            )
        )
        jwks = GatewayJwks(self.ports.gateway)
        config = GatewayConfig(
            listen_port=self.ports.gateway,
            admin_port=self.ports.gateway_admin,
            cors_allowed_origins=(self.frontend_origin,),
            descriptor_set_path=DEFAULT_DESCRIPTOR_SET,
            upstreams=upstreams_from_descriptor_set(
                DEFAULT_DESCRIPTOR_SET, endpoints, require_all=False
            ),
            access_log_path=str(self.log_dir / "gateway-access.log"),
            reflection_endpoint=("127.0.0.1", self.ports.reflection),
            # GET /v1/api/openapi.json, rendered from the descriptor set the gateway serves.
            openapi_path=openapi.write(
                DEFAULT_DESCRIPTOR_SET, self.state_dir / "openapi.json"
            ).resolve(),
            # Auth's published JWKS, refetched by Envoy: a key rotation needs no restart.
            policy=EdgePolicy(
                jwt=JwtProvider(jwks, ServiceSettings().jwt_issuer),
                # The local stack listens on loopback only: admin RPCs from this machine.
                admin_allowed_cidrs=LOOPBACK_CIDRS,
                rate_limit_upstream=RATE_LIMIT_SERVICE if RATE_LIMIT_SERVICE in endpoints else None,
                # Reads limited inside Envoy (one replica here), writes by the edge's service.
                read_rate_limit=ReadRateLimit(),
            ),
        )
        for service in unserved_services(config):
            _say("gateway", f"warning: {service} has no running implementation; no route")
        path = write(config, self.state_dir / "envoy.json")
        try:
            await asyncio.to_thread(validate_config, path)
        except EnvoyConfigError as exc:
            raise ComponentError("gateway", str(exc)) from exc
        gateway_address = f"127.0.0.1:{self.ports.gateway}"
        admin_ready = f"http://127.0.0.1:{self.ports.gateway_admin}/ready"

        async def gateway_ready() -> bool:
            # Envoy is live and routes to healthy backends.
            return await probes.http_ok(admin_ready) and await probes.grpc_serving(gateway_address)

        self._register(
            Component(
                "gateway",
                "grpc",
                self.ports.gateway,
                gateway_address,
                metrics=f"http://127.0.0.1:{self.ports.gateway_admin}/stats/prometheus",
            )
        )
        await self.supervisor.start(
            ProcessSpec(
                "gateway",
                envoy_command(path),
                gateway_ready,
                ports=[self.ports.gateway, self.ports.gateway_admin],
            )
        )
        self.state.gateway_url = f"http://{gateway_address}"
        self.state.grpc_address = gateway_address

    async def run(self, stop: asyncio.Event) -> int:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o755)
        self.log_dir.mkdir(exist_ok=True)
        previous = StackState.load(self.state_dir)
        if previous and previous.pid != os.getpid() and _pid_alive(previous.pid):
            print(
                f"error: a stack is already running (pid {previous.pid}); "
                "`loyalnest down` stops it",
                file=sys.stderr,
            )
            return 1
        print(f"Starting LoyalNest (state and logs in {self.state_dir})", flush=True)
        self.state.save()
        ensure_local_keyset(self.jwks_path.parent)
        started = time.monotonic()
        try:
            # Before any connection is made: none may take a service's port as its source.
            await self.reservations.reserve(self._mesh_ports())
            await self._start_postgres()
            await self._start_backing()
            # Once here rather than in each service process (devstack/bytecode.py).
            await asyncio.to_thread(compile_bytecode)
            await self._migrate()
            endpoints = await self._start_services()
            await self._start_gateway(endpoints)
            await self._install_demo_merchant()
            self.state.status = "ready"
            self._report("stack", f"ready in {time.monotonic() - started:.1f} s")
            print_endpoints(self.state)
            await stop.wait()
            print("\nStopping...", flush=True)
            return 0
        except ComponentError as exc:
            print(
                f"\nerror: {exc.component} could not start: {exc.reason}",
                file=sys.stderr,
                flush=True,
            )
            return 1
        finally:
            self.state.status = "stopping"
            self.state.save()
            self.reservations.release_all()
            await self.supervisor.stop_all()
            await asyncio.to_thread(self.postgres.stop)
            _say("postgres", "stopped")
            (self.state_dir / STATE_FILE).unlink(missing_ok=True)


def print_endpoints(state: StackState) -> None:
    print("\nLoyalNest is up. Ctrl-C (or `loyalnest down`) stops it.\n")
    print(f"  REST base URL    {state.gateway_url}/v1/api/...")
    print(f"  gRPC (gateway)   {state.grpc_address}   grpcurl -plaintext {state.grpc_address} list")
    print()
    print(f"  {'component':<16} {'address':<44} metrics")
    for c in state.components:
        print(f"  {c.name:<16} {c.address:<44} {c.metrics}")
    print(
        f"\n  demo shop        {demo_merchant.DEMO_SHOP} (installed through Auth's OAuth; "
        "its webhooks: .venv/bin/loyalnest webhook --topic orders/create FILE)"
    )
    print(
        "\n  try: TOKEN=$(.venv/bin/loyalnest token --merchant demo-shop)\n"
        '       curl -s -H "authorization: Bearer $TOKEN" '
        f'-d \'{{"customer_id":"c-1","points":120,"idempotency_key":"order-1001"}}\' '
        f"{state.gateway_url}/v1/api/points/earn\n",
        flush=True,
    )


async def _up(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await Stack(args).run(stop)


def _detach(args: argparse.Namespace, argv: list[str]) -> int:
    state_dir = _state_dir(args)
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "stack.log"
    foreground = [a for a in argv if a != "--detach"]
    with log_path.open("ab") as log:
        this_run_from = log.tell()
        child = subprocess.Popen(
            [sys.executable, "-m", "loyalnest.cli", *foreground, "--state-dir", str(state_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    print(f"Starting LoyalNest in the background (pid {child.pid}, log {log_path})", flush=True)
    while child.poll() is None:
        state = StackState.load(state_dir)
        if state and state.pid == child.pid and state.status == "ready":
            print_endpoints(state)
            return 0
        time.sleep(0.5)
    with log_path.open("rb") as log:
        log.seek(this_run_from)
        this_run = log.read().decode(errors="replace")
    print(
        f"error: the stack exited with code {child.returncode} (log {log_path}):\n"
        f"{why_it_stopped(this_run)}",
        file=sys.stderr,
    )
    return 1


def why_it_stopped(log: str, tail: int = 15) -> str:
    """The part of a stack's log that says why it stopped: its `error:` line with the lines
    indented under it (the component's own last log lines), not the stop reports after them,
    which with 28 workers fill any tail. The tail when the log names no error."""
    lines = log.splitlines()
    for start, line in enumerate(lines):
        if line.startswith("error:"):
            end = start + 1
            while end < len(lines) and lines[end].startswith("    "):
                end += 1
            return "\n".join(lines[start:end])
    return "\n".join(lines[-tail:])


def run_up(args: argparse.Namespace, argv: list[str]) -> int:
    if args.detach:
        return _detach(args, argv)
    return asyncio.run(_up(args))


async def _status(state: StackState) -> list[tuple[Component, bool, bool]]:
    results = await asyncio.gather(*(c.healthy() for c in state.components))
    return [
        (c, c.pid is None or _pid_alive(c.pid), healthy)
        for c, healthy in zip(state.components, results, strict=True)
    ]


def run_status(args: argparse.Namespace) -> int:
    state = StackState.load(_state_dir(args))
    if state is None or not _pid_alive(state.pid):
        print("LoyalNest is not running.")
        return 3
    rows = asyncio.run(_status(state))
    print(f"LoyalNest ({state.status}, supervisor pid {state.pid}); gateway {state.gateway_url}\n")
    print(f"  {'component':<16} {'pid':>7} {'restarts':>8}  {'health':<9} address")
    for component, alive, healthy in rows:
        health = "healthy" if alive and healthy else ("down" if not alive else "unhealthy")
        pid = str(component.pid or "-")
        print(
            f"  {component.name:<16} {pid:>7} {component.restarts:>8}  {health:<9} "
            f"{component.address}"
        )
    return 0 if all(alive and healthy for _, alive, healthy in rows) else 1


def run_down(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    state = StackState.load(state_dir)
    if state is None or not _pid_alive(state.pid):
        print("LoyalNest is not running.")
        return 0
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + 90
    while _pid_alive(state.pid) and time.monotonic() < deadline:
        time.sleep(0.3)
    if _pid_alive(state.pid):
        print(f"error: the stack (pid {state.pid}) did not stop in 90 s", file=sys.stderr)
        return 1
    print("LoyalNest stopped.")
    return 0
