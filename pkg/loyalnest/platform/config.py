"""Service configuration from the environment (`LOYALNEST_*`).

Every service reads `ServiceSettings`; a service that needs more subclasses it and adds
fields, which are read from `LOYALNEST_<FIELD>` as well.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALNEST_", extra="ignore", frozen=True)

    # In Kubernetes the chart sets 0.0.0.0; locally nothing should listen beyond loopback.
    host: str = "127.0.0.1"
    grpc_port: int = Field(50051, ge=0, le=65535)
    # Prometheus /metrics on its own HTTP port (0 picks a free one).
    metrics_enabled: bool = True
    metrics_port: int = Field(9464, ge=0, le=65535)

    database_url: str = "postgresql://postgres@127.0.0.1:5432/loyalnest"
    db_pool_min_size: int = Field(2, ge=1)
    db_pool_max_size: int = Field(10, ge=1)
    db_connect_timeout_seconds: float = Field(3.0, gt=0)
    run_migrations_on_start: bool = True

    # How often dependencies are probed for grpc.health.v1, and how long one probe may take.
    health_check_interval_seconds: float = Field(2.0, gt=0)
    health_check_timeout_seconds: float = Field(1.0, gt=0)

    # SIGTERM: stop accepting, give in-flight calls this long, then cancel them.
    # Kubernetes' terminationGracePeriodSeconds must exceed it.
    shutdown_grace_seconds: float = Field(10.0, ge=0)
    max_receive_message_bytes: int = 4 * 1024 * 1024
    max_concurrent_rpcs: int | None = None

    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    # One line per RPC; errors are always logged.
    access_log: bool = False

    tracing_enabled: bool = True
    # OTLP/gRPC collector, e.g. http://otel-collector:4317; unset keeps spans in-process
    # (trace ids still reach logs and downstream calls).
    otel_exporter_otlp_endpoint: str | None = None
    otel_sample_ratio: float = Field(1.0, ge=0, le=1)
