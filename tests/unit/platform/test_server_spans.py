"""The server span the platform's telemetry layer opens (platform/server_spans.py), through a
real grpc.aio server: the caller's trace continues into the handler, its logs, an event it
creates and a call it makes; a recorded span has OpenTelemetry's name, kind, attributes and
status for an answer, a domain error and a crash; an unrecorded one still gives logs a trace id.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import SpanKind, StatusCode

from loyalnest.gen.events.v1 import points_pb2
from loyalnest.platform import errors
from loyalnest.platform.client import open_channel
from loyalnest.platform.events.envelope import new_event
from loyalnest.platform.interceptors import ErrorMappingInterceptor, TelemetryInterceptor
from loyalnest.platform.observability import _add_trace_context

PROBE = "loyalnest.test.v1.SpanProbe"


def unary(channel: grpc.aio.Channel, method: str) -> Any:
    return channel.unary_unary(f"/{PROBE}/{method}", None, None)  # bytes in and out


def stream(channel: grpc.aio.Channel, method: str) -> Any:
    return channel.unary_stream(f"/{PROBE}/{method}", None, None)


def log_line() -> MutableMapping[str, Any]:
    """What observability's processor adds to a log line written here."""
    return _add_trace_context(None, "info", {})


class Probe:
    """The probe service's handlers; each keeps what its handler saw."""

    def __init__(self, downstream: str | None = None) -> None:
        self.downstream = downstream
        self.logs: list[MutableMapping[str, Any]] = []
        self.traceparents: list[str] = []

    def _saw(self) -> None:
        self.logs.append(log_line())
        event = new_event("m", points_pb2.PointsEarned(customer_id="c"))
        self.traceparents.append(event.envelope.trace_context["traceparent"])

    async def ok(self, request: bytes, context: Any) -> bytes:
        self._saw()
        return b"ok"

    async def invalid(self, request: bytes, context: Any) -> bytes:
        raise errors.InvalidArgument("points must be positive")

    async def crash(self, request: bytes, context: Any) -> bytes:
        raise RuntimeError("the handler broke")

    async def relay(self, request: bytes, context: Any) -> bytes:
        assert self.downstream is not None
        async with open_channel(self.downstream) as channel:
            reply: bytes = await unary(channel, "Ok")(b"")
        return reply

    async def stream(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        self._saw()
        yield b"1"
        yield b"2"

    async def stream_crash(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        yield b"1"
        raise RuntimeError("the stream broke")

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        one, many = grpc.unary_unary_rpc_method_handler, grpc.unary_stream_rpc_method_handler
        return grpc.method_handlers_generic_handler(
            PROBE,
            {
                "Ok": one(self.ok),
                "Invalid": one(self.invalid),
                "Crash": one(self.crash),
                "Relay": one(self.relay),
                "Stream": many(self.stream),
                "StreamCrash": many(self.stream_crash),
            },
        )


@asynccontextmanager
async def serving(probe: Probe, provider: TracerProvider) -> AsyncIterator[str]:
    server = grpc.aio.server(
        interceptors=[
            TelemetryInterceptor(access_log=False, tracing=True, tracer_provider=provider),
            ErrorMappingInterceptor(),
        ]
    )
    server.add_generic_rpc_handlers((probe.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def recording() -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider()  # every trace sampled
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def caller() -> tuple[int, int]:
    return random.getrandbits(128), random.getrandbits(64)


def traceparent(trace_id: int, span_id: int, *, sampled: bool = True) -> tuple[str, str]:
    return ("traceparent", f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}")


async def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    """The call's one finished span. The server ends it as the handler's task unwinds, which
    can come after the client has seen the status (sent first) and the server was stopped:
    give that task a moment to run."""
    for _ in range(200):
        if exporter.get_finished_spans():
            break
        await asyncio.sleep(0.01)
    (span,) = exporter.get_finished_spans()
    return span


async def test_the_span_continues_the_callers_trace_into_logs_and_events() -> None:
    provider, exporter = recording()
    probe = Probe()
    trace_id, parent_id = caller()
    async with serving(probe, provider) as address, grpc.aio.insecure_channel(address) as ch:
        await unary(ch, "Ok")(b"", metadata=(traceparent(trace_id, parent_id),))
    span = await only_span(exporter)
    assert span.context is not None and span.parent is not None
    assert span.context.trace_id == trace_id
    assert (span.parent.span_id, span.parent.is_remote) == (parent_id, True)
    # The span is current in the handler: its log lines and the events it creates carry it.
    (line,) = probe.logs
    assert line == {
        "trace_id": f"{trace_id:032x}",
        "span_id": f"{span.context.span_id:016x}",
    }
    assert probe.traceparents == [f"00-{trace_id:032x}-{span.context.span_id:016x}-01"]
    # Nothing of it stays current after the call.
    assert trace.get_current_span() is trace.INVALID_SPAN


async def test_an_answered_call_has_opentelemetrys_name_kind_and_attributes() -> None:
    provider, exporter = recording()
    async with serving(Probe(), provider) as address, grpc.aio.insecure_channel(address) as ch:
        await unary(ch, "Ok")(b"")
    span = await only_span(exporter)
    assert span.name == f"{PROBE}/Ok"
    assert span.kind == SpanKind.SERVER
    assert span.parent is None  # no caller's trace: a new one
    attributes = dict(span.attributes or {})
    assert str(attributes.pop("rpc.user_agent")).startswith("grpc-python")
    assert str(attributes.pop("net.peer.port")).isdigit()
    assert attributes == {
        "rpc.system": "grpc",
        "rpc.service": PROBE,
        "rpc.method": "Ok",
        "rpc.grpc.status_code": 0,
        "net.peer.ip": "127.0.0.1",
        "net.peer.name": "localhost",
    }
    assert span.status.status_code == StatusCode.UNSET
    assert not span.events


async def test_a_domain_error_is_the_callers_not_a_failure_of_the_server() -> None:
    provider, exporter = recording()
    async with serving(Probe(), provider) as address, grpc.aio.insecure_channel(address) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await unary(ch, "Invalid")(b"")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    span = await only_span(exporter)
    assert (span.attributes or {})["rpc.grpc.status_code"] == 3
    # As OpenTelemetry's interceptor and the conventions: only server faults are errors.
    assert span.status.status_code == StatusCode.UNSET
    assert not span.events


async def test_an_unexpected_exception_fails_the_span_and_is_recorded() -> None:
    provider, exporter = recording()
    async with serving(Probe(), provider) as address, grpc.aio.insecure_channel(address) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await unary(ch, "Crash")(b"")
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    span = await only_span(exporter)
    assert (span.attributes or {})["rpc.grpc.status_code"] == 13
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description == "StatusCode.INTERNAL:internal error"
    # The handler's own exception, not the abort that reported it to the client.
    (event,) = span.events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.type"] == "RuntimeError"
    assert (event.attributes or {})["exception.message"] == "the handler broke"


async def test_a_server_stream_has_one_span_current_while_it_streams() -> None:
    provider, exporter = recording()
    probe = Probe()
    trace_id, parent_id = caller()
    async with serving(probe, provider) as address, grpc.aio.insecure_channel(address) as ch:
        call = stream(ch, "Stream")(b"", metadata=(traceparent(trace_id, parent_id),))
        assert [reply async for reply in call] == [b"1", b"2"]
        crashed = stream(ch, "StreamCrash")(b"")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            _ = [reply async for reply in crashed]
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    streamed, failed = sorted(exporter.get_finished_spans(), key=lambda s: s.name)
    assert streamed.name == f"{PROBE}/Stream" and streamed.kind == SpanKind.SERVER
    assert streamed.context is not None and streamed.context.trace_id == trace_id
    assert probe.logs[0]["span_id"] == f"{streamed.context.span_id:016x}"
    assert (streamed.attributes or {})["rpc.grpc.status_code"] == 0
    assert failed.name == f"{PROBE}/StreamCrash"
    assert failed.status.status_code == StatusCode.ERROR
    assert [(e.attributes or {})["exception.type"] for e in failed.events] == ["RuntimeError"]


async def test_a_downstream_call_continues_the_trace() -> None:
    provider, exporter = recording()
    trace_id, parent_id = caller()
    async with serving(Probe(), provider) as downstream:
        async with (
            serving(Probe(downstream), provider) as upstream,
            grpc.aio.insecure_channel(upstream) as ch,
        ):
            await unary(ch, "Relay")(b"", metadata=(traceparent(trace_id, parent_id),))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    relay, ok = spans[f"{PROBE}/Relay"], spans[f"{PROBE}/Ok"]
    assert relay.context is not None and ok.context is not None and ok.parent is not None
    assert ok.context.trace_id == relay.context.trace_id == trace_id
    # The downstream span's parent is the client's span (platform/client.py's channels), or
    # the relaying server's span itself when no global tracer provider makes client spans.
    assert ok.parent.is_remote and ok.parent.span_id != parent_id


async def test_an_unrecorded_span_still_gives_logs_and_events_a_trace_id() -> None:
    # As observability.configure_tracing without an exporter: nothing recorded unless sampled.
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    probe = Probe()
    trace_id, parent_id = caller()
    async with serving(probe, provider) as address, grpc.aio.insecure_channel(address) as ch:
        await unary(ch, "Ok")(b"")
        await unary(ch, "Ok")(b"", metadata=(traceparent(trace_id, parent_id, sampled=False),))
    assert exporter.get_finished_spans() == ()
    fresh, continued = probe.logs
    assert len(fresh["trace_id"]) == 32 and int(fresh["trace_id"], 16) != 0
    assert continued["trace_id"] == f"{trace_id:032x}"
    assert probe.traceparents[1].startswith(f"00-{trace_id:032x}-")
    assert probe.traceparents[1].endswith("-00")  # not sampled: downstream won't record it
