"""Structured logging with trace ids, OpenTelemetry tracing, and Prometheus metrics."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from prometheus_client import Counter, Histogram, start_http_server

from loyalnest.platform.config import ObservabilitySettings

RPC_STARTED = Counter(
    "grpc_server_started_total",
    "RPCs started on the server.",
    ["grpc_service", "grpc_method", "grpc_type"],
)
RPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by status code.",
    ["grpc_service", "grpc_method", "grpc_type", "grpc_code"],
)
RPC_LATENCY = Histogram(
    "grpc_server_handling_seconds",
    "Time from receiving an RPC to completing it.",
    ["grpc_service", "grpc_method", "grpc_type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def _add_trace_context(
    _: Any, __: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event


def configure_logging(settings: ObservabilitySettings, service: str) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_trace_context,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr)


def configure_tracing(settings: ObservabilitySettings, service: str) -> None:
    if not settings.tracing_enabled or isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    exporting = settings.otel_exporter_otlp_endpoint is not None
    # Without an exporter, recorded spans would be dropped anyway: keep non-recording spans,
    # which still carry trace ids into logs and downstream calls, at a fraction of the cost.
    root_sampler = TraceIdRatioBased(settings.otel_sample_ratio) if exporting else ALWAYS_OFF
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"loyalnest-{service}"}),
        sampler=ParentBased(root_sampler),
    )
    if settings.otel_exporter_otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.otel_exporter_otlp_endpoint, insecure=True)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def start_metrics_server(settings: ObservabilitySettings, host: str) -> int | None:
    """Serves /metrics; returns the bound port (useful when configured as an ephemeral port)."""
    if not settings.metrics_enabled:
        return None
    server, _ = start_http_server(settings.metrics_port, addr=host)
    return int(server.server_port)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
