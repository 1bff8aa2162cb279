"""CPU per call of the tracing layers alone, in one process (no network, no other work): the
server's (OpenTelemetry's aio server interceptor + our telemetry layer, against the telemetry
layer's own span) and the client's (OpenTelemetry's aio client interceptor against
`platform/client_spans.TraceCalls`). See README.md, "Tracing without OpenTelemetry's gRPC
interceptors".

    .venv/bin/python bench/tracing_layers.py [--rounds 7] [--calls 5000]

The tracer provider is the services' without an exporter (`ParentBased(ALWAYS_OFF)`): a call
without a traceparent gets an unrecorded span, one with a sampled traceparent a recorded one
(no processor: recording, not exporting, is measured). Each variant runs `--calls` calls per
round, variants alternate, min and median over the rounds are printed. The servicer context
and the client's call are stand-ins answering what the layers ask, so only the layers' own
work is timed; the end-to-end effect is bench_points.py's tracing on vs off.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import namedtuple
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc.aio import ClientCallDetails
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

from loyalnest.platform.client_spans import TraceCalls
from loyalnest.platform.interceptors import ErrorMappingInterceptor, TelemetryInterceptor

METHOD = "/loyalnest.points.v1.PointsService/GetPointsBalance"
Metadatum = namedtuple("Metadatum", "key value")  # what grpc.aio's invocation_metadata() holds
METADATA = (
    Metadatum("user-agent", "grpc-python-asyncio/1.85.1 grpc-c/51.0.0 (linux; chttp2)"),
    Metadatum("authorization", "Bearer " + "x" * 600),
)
SAMPLED = Metadatum("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")


class Context:
    """What the layers ask of grpc.aio's servicer context."""

    def __init__(self, metadata: tuple[Metadatum, ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[Metadatum, ...]:
        return self._metadata

    def peer(self) -> str:
        return "ipv4:127.0.0.1:54321"

    def code(self) -> None:
        return None

    def details(self) -> None:
        return None

    def cancelled(self) -> bool:
        return False


class CallDetails:
    method = METHOD
    invocation_metadata = METADATA


async def answer(request: Any, context: Any) -> bytes:
    return b"ok"


HANDLER = grpc.unary_unary_rpc_method_handler(answer)


def server_chain(interceptors: list[Any]) -> Callable[[], Awaitable[Any]]:
    """grpc.aio's per-call walk through the interceptors to the method's handler."""

    async def at(index: int, details: Any) -> Any:
        if index == len(interceptors):
            return HANDLER
        return await interceptors[index].intercept_service(lambda d: at(index + 1, d), details)

    details = CallDetails()
    return lambda: at(0, details)


def server_variants() -> dict[str, Callable[[], list[Any]]]:
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return {
        "OpenTelemetry's + telemetry": lambda: [
            aio_server_interceptor(),  # type: ignore[no-untyped-call]
            TelemetryInterceptor(access_log=False),
            ErrorMappingInterceptor(),
        ],
        "telemetry's own span": lambda: [
            TelemetryInterceptor(access_log=False, tracing=True),
            ErrorMappingInterceptor(),
        ],
        "no tracing": lambda: [TelemetryInterceptor(access_log=False), ErrorMappingInterceptor()],
        "  telemetry layer only": lambda: [TelemetryInterceptor(access_log=False)],
        "  no layer": lambda: [],
    }


async def server_round(interceptors: list[Any], metadata: tuple[Metadatum, ...], n: int) -> float:
    handler_for = server_chain(interceptors)
    context = Context(metadata)
    for _ in range(200):
        await (await handler_for()).unary_unary(b"", context)
    started = time.process_time()
    for _ in range(n):
        await (await handler_for()).unary_unary(b"", context)
    return (time.process_time() - started) / n * 1e6


class Call:
    """A finished unary call, as an interceptor's continuation returns it."""

    async def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.OK

    async def details(self) -> str:
        return ""

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        callback(self)


CALL = Call()
CLIENT_DETAILS = ClientCallDetails(
    b"/loyalnest.points.v1.PointsService/EarnPoints",
    5.0,
    [("authorization", "Bearer " + "x" * 600)],  # type: ignore[arg-type]
    None,
    None,
)


async def continuation(details: Any, request: Any) -> Call:
    return CALL


async def no_interceptor(cont: Callable[..., Any], details: Any, request: Any) -> Any:
    return await cont(details, request)


def client_variants() -> dict[str, Callable[..., Any]]:
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    otel = aio_client_interceptors()[0]  # type: ignore[no-untyped-call]
    return {
        "OpenTelemetry's": otel.intercept_unary_unary,
        "TraceCalls": TraceCalls().intercept_unary_unary,
        "no interceptor": no_interceptor,
    }


async def client_round(intercept: Callable[..., Any], n: int) -> float:
    # Inside a handler's unrecorded server span, as a service without an exporter calls out.
    with trace.get_tracer("bench").start_as_current_span("handler", kind=trace.SpanKind.SERVER):
        for _ in range(200):
            await intercept(continuation, CLIENT_DETAILS, b"")
        started = time.process_time()
        for _ in range(n):
            await intercept(continuation, CLIENT_DETAILS, b"")
        return (time.process_time() - started) / n * 1e6


def show(title: str, results: dict[str, list[float]]) -> None:
    print(title)
    for name, values in results.items():
        print(
            f"  {name:30s} min {min(values):6.1f}  median {statistics.median(values):6.1f} us/call"
        )


async def main(rounds: int, calls: int) -> None:
    for title, metadata in (
        ("server, no traceparent (span not recorded)", METADATA),
        ("server, sampled traceparent (span recorded)", (*METADATA, SAMPLED)),
    ):
        results: dict[str, list[float]] = {name: [] for name in server_variants()}
        for _ in range(rounds):
            for name, make in server_variants().items():
                results[name].append(await server_round(make(), metadata, calls))
        show(title, results)
    client: dict[str, list[float]] = {name: [] for name in client_variants()}
    for _ in range(rounds):
        for name, intercept in client_variants().items():
            client[name].append(await client_round(intercept, calls))
    show("client, unary call inside an unrecorded span", client)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    trace.set_tracer_provider(TracerProvider(sampler=ParentBased(ALWAYS_OFF)))
    asyncio.run(main(args.rounds, args.calls))
