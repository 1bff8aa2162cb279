"""The client span of each call a service makes (platform/client.py's channels), and the trace
context it sends in the call's metadata, so the callee's server span continues the trace.

This replaces OpenTelemetry's grpc.aio client interceptors, which on every call copy the
metadata into a new `grpc.aio.Metadata`, rebuild the call details, open the span through a
context manager and wait for the call to finish inside the interceptor, whether or not the span
is recorded: ~16 µs of CPU per call of its own, ~9 here (bench/tracing_layers.py; README
"Tracing without OpenTelemetry's gRPC interceptors"), and its import pulls in wrapt and the
instrumentation framework (~1.6 MiB a process). Here a span that is not recorded (no exporter,
or an unsampled trace) costs its start and the injection of its `traceparent`; only a recorded
one waits for the call's status.

A recorded span has what OpenTelemetry's gives it: kind CLIENT, attributes rpc.system,
rpc.service, rpc.method and rpc.grpc.status_code, status ERROR for any code but OK. Its name is
`pkg.Service/Method` as the server span's (platform/server_spans.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from loyalnest.platform.server_spans import (
    RPC_GRPC_STATUS_CODE,
    RPC_METHOD,
    RPC_SERVICE,
    RPC_SYSTEM,
)


class _CallSpans:
    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        # By default the global provider's (observability.configure_tracing sets it).
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self._methods: dict[str | bytes, tuple[str, dict[str, str]]] = {}
        # Recorded spans waiting for their call's status (a task each: keep a reference).
        self._ending: set[asyncio.Task[None]] = set()

    def _method(self, method: str | bytes) -> tuple[str, dict[str, str]]:
        found = self._methods.get(method)
        if found is None:
            # grpc.aio hands interceptors the path as bytes (grpc/grpc#31092).
            path = method.decode() if isinstance(method, bytes) else method
            service, _, name = path.lstrip("/").rpartition("/")
            attributes = {RPC_SYSTEM: "grpc", RPC_SERVICE: service, RPC_METHOD: name}
            found = self._methods[method] = (f"{service}/{name}", attributes)
        return found

    def _start(self, details: Any) -> tuple[Span, Any]:
        name, attributes = self._method(details.method)
        span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        carrier: dict[str, str] = {}
        propagate.inject(carrier, trace.set_span_in_context(span))
        metadata = [*(details.metadata or ()), *carrier.items()]
        return span, details._replace(metadata=metadata)

    async def _call(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        span, details = self._start(details)
        if not span.is_recording():
            return await continuation(details, request)  # nothing to end
        try:
            call = await continuation(details, request)
        except BaseException as exc:
            _failed(span, exc)
            raise
        ending = asyncio.get_running_loop().create_task(_end_when_done(span, call))
        self._ending.add(ending)
        ending.add_done_callback(self._ending.discard)
        return call


async def _end_when_done(span: Span, call: Any) -> None:
    code: grpc.StatusCode = await call.code()
    span.set_attribute(RPC_GRPC_STATUS_CODE, code.value[0])
    if code != grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, await call.details()))
    span.end()


def _failed(span: Span, exc: BaseException) -> None:
    if isinstance(exc, grpc.RpcError):
        span.set_attribute(RPC_GRPC_STATUS_CODE, exc.code().value[0])
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    if isinstance(exc, Exception):
        span.record_exception(exc)
    span.end()


# grpc.aio files an interceptor under the first call kind it implements only, hence one class
# per kind the services call (unary and server-streaming RPCs, as platform/client.py's).
class TraceCalls(_CallSpans, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await self._call(continuation, client_call_details, request)


class TraceStreamCalls(_CallSpans, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await self._call(continuation, client_call_details, request)
