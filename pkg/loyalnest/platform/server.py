"""One way to build, run and stop every LoyalNest service.

spec = ServiceSpec(name="points", settings_type=PointsSettings, build=build_points)
serve(spec)                        # process entry point: blocks until SIGTERM/SIGINT
async with running(spec, s) as r:  # tests: a real server on an ephemeral port
    ...
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection

from loyalnest.gen.platform.v1 import personal_data_pb2_grpc
from loyalnest.platform import asyncio_loop, pagination, personal_data
from loyalnest.platform.auth.interceptor import AuthInterceptor, JwksFile
from loyalnest.platform.auth.revocation import RevocationList
from loyalnest.platform.auth.service_identity import accepted_audiences
from loyalnest.platform.calls import Calls
from loyalnest.platform.config import ServerSettings, ServiceSettings
from loyalnest.platform.health import Check, HealthMonitor
from loyalnest.platform.interceptors import ErrorMappingInterceptor, TelemetryInterceptor
from loyalnest.platform.observability import (
    configure_logging,
    configure_tracing,
    get_logger,
    start_metrics_server,
)
from loyalnest.platform.personal_data import PersonalData, PersonalDataServicer, PersonalDataStore
from loyalnest.platform.pii import on_a_developer_machine
from loyalnest.platform.postgres import Database, DatabaseSpec

if TYPE_CHECKING:
    from loyalnest.platform.events.pseudonyms import PseudonymBackend

log = get_logger(__name__)

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


@dataclass(frozen=True)
class Registration:
    """A servicer and the generated function that adds it to a server."""

    service_name: str  # fully qualified, e.g. loyalnest.points.v1.PointsService
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: Any


@dataclass
class ServiceComponents:
    registrations: Sequence[Registration]
    # Must succeed once before the service reports SERVING (e.g. migrations); retried.
    startup: Sequence[Check] = ()
    # Probed periodically; any failure reports NOT_SERVING (e.g. database ping).
    readiness: Sequence[Check] = ()
    # Long-running loops (outbox relays, event consumers) started once start-up has succeeded,
    # cancelled on shutdown after in-flight calls have finished and before cleanup.
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    # Awaited in reverse order on shutdown, after in-flight calls have finished.
    cleanup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # The store answering the personal-data contract, when the spec declares `personal_data`.
    personal_data: PersonalDataStore | None = None


@dataclass(frozen=True)
class ServiceSpec(Generic[SettingsT]):
    name: str
    settings_type: type[SettingsT]
    build: Callable[[SettingsT], Awaitable[ServiceComponents]]
    # The PostgreSQL schema the service owns, if any (`loyalnest migrate` applies it).
    database: DatabaseSpec | None = None
    # The services it calls (`calls.connect(settings, caller=name)` in build); the chart's
    # targets and NetworkPolicy egress are generated from it.
    calls: Calls = field(default_factory=Calls)
    # The tables holding customer data, when it has any: the platform then serves
    # loyalnest.platform.v1.PersonalDataService from build's `personal_data` store.
    personal_data: PersonalData | None = None
    # The store of customer pseudonyms on the service's database, when it owns them (the
    # edge): its relay publishes with it, in the service's process or in one of its own.
    pseudonym_store: Callable[[SettingsT, Database], PseudonymBackend] | None = None


@dataclass(frozen=True)
class RunningService:
    name: str
    address: str
    port: int
    metrics_port: int | None
    health: HealthMonitor
    components: ServiceComponents
    # Completes only if a background loop crashed (loops retry their own transient errors).
    background: asyncio.Task[None]


def _server_options(settings: ServerSettings) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", settings.max_receive_message_bytes),
        ("grpc.so_reuseport", 0),  # a busy port must fail loudly, not be shared silently
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        # Clients re-resolve DNS and spread over new pods when a connection ends: see
        # ServerSettings.max_connection_age_seconds.
        ("grpc.max_connection_age_ms", round(settings.max_connection_age_seconds * 1000)),
        (
            "grpc.max_connection_age_grace_ms",
            round(settings.max_connection_age_grace_seconds * 1000),
        ),
    ]


def auth_interceptor(settings: ServiceSettings, service: str) -> AuthInterceptor:
    if settings.jwt_jwks_path is None:
        raise ValueError(
            "LOYALNEST_JWT_JWKS_PATH is required: the public JWKS that access tokens are "
            "verified with (the local stack and the chart provide it)"
        )
    jwks = JwksFile(
        settings.jwt_jwks_path,
        issuer=settings.jwt_issuer,
        # User tokens (the mesh's audience) and service tokens meant for this service.
        audience=accepted_audiences(settings.jwt_audience, service),
    )
    revocations = (
        RevocationList.from_url(settings.redis_url, mirrored=True) if settings.redis_url else None
    )
    return AuthInterceptor(jwks, revocations)


def _page_token_key(settings: ServiceSettings) -> bytes | None:
    key = settings.page_token_key
    if key is not None:
        return key.get_secret_value().encode()
    # As the PII keys (platform/pii.py): the public development key only on a developer's
    # machine; elsewhere anyone could forge a page token reaching past a filter's rows.
    if not on_a_developer_machine(settings):
        raise ValueError(
            "LOYALNEST_PAGE_TOKEN_KEY is required (`openssl rand -base64 32`, the same for"
            " every replica): page tokens are signed with it"
        )
    return None


def build_server(
    settings: ServiceSettings, service: str, auth: AuthInterceptor | None = None
) -> grpc.aio.Server:
    """`auth`: the token check, made here unless given (its owner then closes it)."""
    pagination.set_signing_key(_page_token_key(settings))
    interceptors: list[Any] = [
        # Outermost: its span is current for every layer inside (logs' trace ids included).
        TelemetryInterceptor(access_log=settings.access_log, tracing=settings.tracing_enabled),
        # Outside the auth check, so authentication failures are mapped like any other.
        ErrorMappingInterceptor(),
        auth or auth_interceptor(settings, service),
    ]
    return grpc.aio.server(
        interceptors=interceptors,
        options=_server_options(settings),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )


@contextlib.asynccontextmanager
async def running(
    spec: ServiceSpec[SettingsT], settings: SettingsT
) -> AsyncIterator[RunningService]:
    """Starts the service; on exit drains in-flight calls and releases its resources."""
    configure_tracing(settings, spec.name)
    components = await spec.build(settings)
    auth = auth_interceptor(settings, spec.name)
    components.cleanup.insert(0, auth.close)  # reversed: the last to close
    server = build_server(settings, spec.name, auth)
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    registrations = [*components.registrations, *_personal_data(spec, components)]
    names = [r.service_name for r in registrations]
    for registration in registrations:
        registration.add_to_server(registration.servicer, server)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    monitor = HealthMonitor(
        health_servicer,
        names,
        startup=components.startup,
        readiness=components.readiness,
        interval=settings.health_check_interval_seconds,
        timeout=settings.health_check_timeout_seconds,
    )
    try:
        try:
            port = server.add_insecure_port(f"{settings.host}:{settings.grpc_port}")
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {settings.host}:{settings.grpc_port}: {exc}") from exc
        metrics_port = start_metrics_server(settings, settings.host)
        await server.start()
    except BaseException:
        # Nothing serves yet: release what build() opened (pools) before giving up.
        for cleanup in reversed(components.cleanup):
            await cleanup()
        raise
    monitor_task = asyncio.create_task(monitor.run(), name=f"{spec.name}-health")
    background_tasks = asyncio.create_task(
        _run_background(monitor, components.background), name=f"{spec.name}-background"
    )
    log.info("service started", address=f"{settings.host}:{port}", metrics_port=metrics_port)
    try:
        yield RunningService(
            spec.name,
            f"{settings.host}:{port}",
            port,
            metrics_port,
            monitor,
            components,
            background_tasks,
        )
    finally:
        log.info("shutting down", grace_seconds=settings.shutdown_grace_seconds)
        await monitor.stop()
        await server.stop(settings.shutdown_grace_seconds)
        for task in (background_tasks, monitor_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for cleanup in reversed(components.cleanup):
            await cleanup()
        log.info("stopped")


def _personal_data(spec: ServiceSpec[Any], components: ServiceComponents) -> list[Registration]:
    """The personal-data contract, registered like health for a service that declares it."""
    if spec.personal_data is None:
        if components.personal_data is not None:
            raise ValueError(
                f"{spec.name} returns a personal_data store but its spec declares none"
            )
        return []
    if components.personal_data is None:
        raise ValueError(
            f"{spec.name} declares personal_data but build() returned no store implementing it"
        )
    return [
        Registration(
            personal_data.SERVICE_NAME,
            personal_data_pb2_grpc.add_PersonalDataServiceServicer_to_server,
            PersonalDataServicer(spec.name, components.personal_data),
        )
    ]


async def _run_background(
    monitor: HealthMonitor, loops: Sequence[Callable[[], Coroutine[Any, Any, None]]]
) -> None:
    """Runs the service's loops once start-up has succeeded."""
    await monitor.started.wait()
    if not loops:
        await asyncio.Event().wait()  # nothing to run: stay pending like a healthy loop
    async with asyncio.TaskGroup() as group:
        for loop in loops:
            group.create_task(loop())


async def _run_until_signalled(spec: ServiceSpec[SettingsT], settings: SettingsT) -> None:
    log.info("event loop", implementation=asyncio_loop.report_running_loop())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running(spec, settings) as service:
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([stopping, service.background], return_when=asyncio.FIRST_COMPLETED)
        if service.background.done() and not service.background.cancelled():
            error = service.background.exception()
            log.error("background loop crashed; exiting", error=repr(error))
            raise SystemExit(1)
        stopping.cancel()


def serve(spec: ServiceSpec[SettingsT], settings: SettingsT | None = None) -> None:
    settings = settings or spec.settings_type()
    configure_logging(settings, spec.name)
    asyncio_loop.run(_run_until_signalled(spec, settings), settings.event_loop)
