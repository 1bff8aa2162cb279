"""Server interceptors: the server span, RED metrics and access log (one layer), and error
mapping.

The telemetry layer is the outermost: the span it starts (platform/server_spans.py) is current
for everything inside, so logs, error reports, downstream calls and published events carry its
trace id.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import psycopg
from google.rpc import status_pb2
from grpc_status import rpc_status
from opentelemetry import trace

from loyalnest.platform import errors
from loyalnest.platform.grpctypes import Context, Handler
from loyalnest.platform.observability import RPC_HANDLED, RPC_LATENCY, RPC_STARTED, get_logger
from loyalnest.platform.outages import unavailable_errors
from loyalnest.platform.server_spans import MethodSpans

log = get_logger(__name__)

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler]]
UnaryBehavior = Callable[[Any, Context], Awaitable[Any]]
StreamBehavior = Callable[[Any, Context], AsyncIterator[Any]]

_ABORTED = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)


def split_method(full_method: str) -> tuple[str, str]:
    """'/pkg.Service/Method' -> ('pkg.Service', 'Method')."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


class WrappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps each handler's behaviour, whatever its streaming shape.

    grpc.aio asks interceptors for a handler on every call; wrapping once per method and
    reusing it keeps the per-call cost to a dictionary lookup.
    """

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        handler: Any = await continuation(handler_call_details)
        if handler is None:  # unknown method: let grpc answer UNIMPLEMENTED
            return handler  # type: ignore[return-value]
        method: str = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: Any) -> Handler:
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self.wrap_unary(method, "unary", handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self.wrap_unary(method, "client_stream", handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self.wrap_stream(method, "server_stream", handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self.wrap_stream(method, "bidi_stream", handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def wrap_unary(self, method: str, kind: str, behavior: UnaryBehavior) -> UnaryBehavior:
        raise NotImplementedError

    def wrap_stream(self, method: str, kind: str, behavior: StreamBehavior) -> StreamBehavior:
        raise NotImplementedError


def _status_code(context: Context) -> grpc.StatusCode:
    # grpc.aio returns None until a code is set; the stubs claim a StatusCode.
    code: Any = context.code()
    if code is None:
        return grpc.StatusCode.OK
    if isinstance(code, grpc.StatusCode):
        return code
    return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)


class _MethodTelemetry:
    """What every call of one method reports to, resolved once per method, not on every call:
    its metrics' label children and, with tracing, its span's name and attributes."""

    def __init__(self, method: str, kind: str, tracer: trace.Tracer | None) -> None:
        service, name = split_method(method)
        self.labels = (service, name, kind)
        self.started = RPC_STARTED.labels(*self.labels)
        self.latency = RPC_LATENCY.labels(*self.labels)
        self._handled: dict[grpc.StatusCode, Any] = {}
        self.spans = MethodSpans(tracer, service, name) if tracer is not None else None

    def handled(self, code: grpc.StatusCode) -> Any:
        counter = self._handled.get(code)
        if counter is None:
            counter = self._handled[code] = RPC_HANDLED.labels(*self.labels, code.name)
        return counter


class TelemetryInterceptor(WrappingInterceptor):
    """The server span (with `tracing`), Prometheus RED metrics per method and status code,
    and an optional access log: one layer, so one wrapper per call for all three."""

    def __init__(
        self,
        *,
        access_log: bool,
        tracing: bool = False,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        super().__init__()
        self._access_log = access_log
        # By default the global provider's (observability.configure_tracing sets it).
        self._tracer = (
            trace.get_tracer(__name__, tracer_provider=tracer_provider) if tracing else None
        )

    def _finish(
        self, telemetry: _MethodTelemetry, method: str, started: float, code: grpc.StatusCode
    ) -> None:
        elapsed = time.perf_counter() - started
        telemetry.handled(code).inc()
        telemetry.latency.observe(elapsed)
        if self._access_log:
            log.info("rpc", method=method, code=code.name, duration_ms=round(elapsed * 1e3, 3))

    def wrap_unary(self, method: str, kind: str, behavior: UnaryBehavior) -> UnaryBehavior:
        telemetry = _MethodTelemetry(method, kind, self._tracer)
        spans = telemetry.spans

        async def observed(request: Any, context: Context) -> Any:
            telemetry.started.inc()
            started = time.perf_counter()
            span = spans.start(context) if spans is not None else None
            code = grpc.StatusCode.UNKNOWN
            error: BaseException | None = None
            try:
                response = await behavior(request, context)
                code = _status_code(context)
                return response
            except grpc.aio.AbortError:
                code = _status_code(context)
                raise
            except BaseException as exc:
                # A client that goes away mid-handler is CANCELLED, not a server fault.
                code = grpc.StatusCode.CANCELLED if context.cancelled() else code
                error = exc
                raise
            finally:
                # Inside the span: the access log line carries its trace id.
                self._finish(telemetry, method, started, code)
                if span is not None:
                    span.end(code, context, error)

        return observed

    def wrap_stream(self, method: str, kind: str, behavior: StreamBehavior) -> StreamBehavior:
        telemetry = _MethodTelemetry(method, kind, self._tracer)
        spans = telemetry.spans

        async def observed(request: Any, context: Context) -> AsyncIterator[Any]:
            telemetry.started.inc()
            started = time.perf_counter()
            span = spans.start(context) if spans is not None else None
            code = grpc.StatusCode.UNKNOWN
            error: BaseException | None = None
            try:
                async for item in behavior(request, context):
                    yield item
                code = _status_code(context)
            except grpc.aio.AbortError:
                code = _status_code(context)
                raise
            except BaseException as exc:
                code = grpc.StatusCode.CANCELLED if context.cancelled() else code
                error = exc
                raise
            finally:
                self._finish(telemetry, method, started, code)
                if span is not None:
                    span.end(code, context, error)

        return observed


def to_rich_status(error: errors.LoyalNestError) -> grpc.Status:
    status = status_pb2.Status(
        code=error.code.value[0], message=error.message, details=error.packed_details()
    )
    return rpc_status.to_status(status)


def translate(exc: Exception, method: str) -> errors.LoyalNestError:
    """Maps any handler exception to a domain error; unexpected ones are logged."""
    if isinstance(exc, errors.LoyalNestError):
        return exc
    if isinstance(exc, grpc.aio.AioRpcError):
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
        return errors.DownstreamError(
            exc.code(), exc.details() or "", list(status.details) if status else []
        )
    if isinstance(exc, _ABORTED):
        return errors.Aborted("concurrent update conflict; retry the call")
    # Infrastructure failures a client can retry against another replica or later.
    if isinstance(exc, unavailable_errors()):
        log.warning("dependency unavailable", method=method, error=str(exc))
        return errors.Unavailable(
            "a backing store is unavailable; retry later", retry_after_seconds=1.0
        )
    log.exception("unhandled error in handler", method=method)
    return errors.Internal("internal error")


class ErrorMappingInterceptor(WrappingInterceptor):
    """Turns every handler exception into a proper status; nothing escapes as UNKNOWN."""

    async def _abort(self, context: Context, exc: Exception, method: str) -> None:
        error = translate(exc, method)
        if not isinstance(exc, errors.LoyalNestError):
            # A failure, not an answer: the server span (current here) keeps the exception,
            # which the telemetry layer outside only sees as the abort that reports it.
            span = trace.get_current_span()
            if span.is_recording():
                span.record_exception(exc)
        status = to_rich_status(error)
        metadata = tuple(status.trailing_metadata)
        retry_after = getattr(error, "retry_after_seconds", None)
        if retry_after is not None:
            # RetryInfo's delay as HTTP's Retry-After too (whole seconds, rounded up): the
            # gateway's REST clients see it as a header.
            metadata += (("retry-after", str(math.ceil(retry_after))),)
        await context.abort(status.code, status.details, metadata)

    def wrap_unary(self, method: str, kind: str, behavior: UnaryBehavior) -> UnaryBehavior:
        async def mapped(request: Any, context: Context) -> Any:
            try:
                return await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await self._abort(context, exc, method)

        return mapped

    def wrap_stream(self, method: str, kind: str, behavior: StreamBehavior) -> StreamBehavior:
        async def mapped(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                async for item in behavior(request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await self._abort(context, exc, method)

        return mapped
