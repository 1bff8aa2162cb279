"""The client span of a call made through the platform's channels (platform/client_spans.py):
its traceparent makes the callee's server span its child; a recorded one has OpenTelemetry's
name, kind, attributes and status; an unrecorded one still carries the trace downstream."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import SpanKind, StatusCode

from loyalnest.platform.client_spans import TraceCalls, TraceStreamCalls
from tests.unit.platform.test_server_spans import PROBE, Probe, recording, serving, stream, unary


def channel(address: str, provider: TracerProvider) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        address,
        interceptors=[
            TraceCalls(tracer_provider=provider),  # type: ignore[list-item]
            TraceStreamCalls(tracer_provider=provider),  # type: ignore[list-item]
        ],
    )


async def finished(exporter: InMemorySpanExporter, count: int) -> list[ReadableSpan]:
    # A recorded client span ends when its call's status is in (a task after the call).
    for _ in range(100):
        spans = list(exporter.get_finished_spans())
        if len(spans) >= count:
            return spans
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} spans expected, got {exporter.get_finished_spans()}")


async def test_the_callees_span_is_the_client_spans_child() -> None:
    provider, exporter = recording()
    async with serving(Probe(), provider) as address, channel(address, provider) as ch:
        await unary(ch, "Ok")(b"")
    client, server = sorted(await finished(exporter, 2), key=lambda s: s.kind != SpanKind.CLIENT)
    assert client.kind == SpanKind.CLIENT and server.kind == SpanKind.SERVER
    assert client.context is not None and server.context is not None
    assert server.context.trace_id == client.context.trace_id
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert client.name == f"{PROBE}/Ok"
    assert dict(client.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": PROBE,
        "rpc.method": "Ok",
        "rpc.grpc.status_code": 0,
    }
    assert client.status.status_code == StatusCode.UNSET


async def test_a_failed_call_fails_the_client_span() -> None:
    provider, exporter = recording()
    async with serving(Probe(), provider) as address, channel(address, provider) as ch:
        with pytest.raises(grpc.aio.AioRpcError):
            await unary(ch, "Invalid")(b"")
    (client,) = [s for s in await finished(exporter, 2) if s.kind == SpanKind.CLIENT]
    # On the client side every code but OK is an error (OpenTelemetry's client interceptor).
    assert (client.attributes or {})["rpc.grpc.status_code"] == 3
    assert client.status.status_code == StatusCode.ERROR
    assert client.status.description == "points must be positive"


async def test_a_stream_calls_span_ends_with_the_stream() -> None:
    provider, exporter = recording()
    async with serving(Probe(), provider) as address, channel(address, provider) as ch:
        replies = [r async for r in stream(ch, "Stream")(b"")]
    assert replies == [b"1", b"2"]
    client, server = sorted(await finished(exporter, 2), key=lambda s: s.kind != SpanKind.CLIENT)
    assert client.kind == SpanKind.CLIENT and client.name == f"{PROBE}/Stream"
    assert client.context is not None and server.parent is not None
    assert server.parent.span_id == client.context.span_id
    assert (client.attributes or {})["rpc.grpc.status_code"] == 0


async def test_an_unrecorded_client_span_still_carries_the_trace() -> None:
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    probe = Probe()
    tracer = provider.get_tracer("test")
    async with serving(probe, provider) as address, channel(address, provider) as ch:
        with tracer.start_as_current_span("a handler") as handler:
            await unary(ch, "Ok")(b"")
    assert exporter.get_finished_spans() == ()
    assert probe.logs[0]["trace_id"] == f"{handler.get_span_context().trace_id:032x}"
