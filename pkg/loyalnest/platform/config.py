"""Service configuration from the environment (`LOYALNEST_*`).

Every service reads `ServiceSettings`; a service that needs more subclasses it and adds
fields, which are read from `LOYALNEST_<FIELD>` as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
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

    # Access tokens (loyalnest.platform.auth): every non-public RPC needs one. The public JWKS
    # is a file (a ConfigMap in Kubernetes), re-read when it changes.
    jwt_jwks_path: Path | None = None
    jwt_issuer: str = "loyalnest-auth"
    jwt_audience: str = "loyalnest"
    # Service identity (loyalnest.platform.auth.service_identity): this service's credential
    # (a Secret; `loyalnest service-credential NAME` derives it) and where the Auth service
    # answers, e.g. dns:///auth.loyalnest.svc.cluster.local:50051. With both set, calls the
    # service makes on its own behalf carry a service token.
    service_credential: SecretStr | None = None
    auth_target: str | None = None
    # Redis: revoked token ids (and caches); unset skips revocation checks.
    redis_url: str | None = None

    # Domain events on Kafka (loyalnest.platform.events). Off: state changes still write
    # their outbox rows (they wait for a relay), but this process runs no relay and no
    # consumers.
    events_enabled: bool = True
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # How long connecting to the broker may take before the attempt counts as failed.
    kafka_connect_timeout_seconds: float = Field(5.0, gt=0)
    # How long one batch may take to be acknowledged (acks=all) before it is retried.
    kafka_publish_timeout_seconds: float = Field(10.0, gt=0)
    # A consumer that stops heartbeating for this long loses its partitions. Joining a group
    # takes about half of it on our broker, hence lower than Kafka's 45 s default.
    kafka_session_timeout_seconds: float = Field(10.0, ge=1)
    # Retries while the broker (or the database) is away: exponential, capped.
    events_retry_initial_seconds: float = Field(0.2, gt=0)
    events_retry_max_seconds: float = Field(5.0, gt=0)
    # False: this process does not relay its outbox; `loyalnest relay <service>` does, in a
    # process of its own (its Kafka producer then takes no CPU or GIL from request handling).
    outbox_relay_in_process: bool = True
    # Outbox relay: idle polling interval (a full batch is followed at once by the next).
    outbox_poll_interval_seconds: float = Field(0.1, gt=0)
    outbox_batch_size: int = Field(500, ge=1)
    # Lanes one relay claims per batch out of 64: lets several relays share the work.
    outbox_lanes_per_batch: int = Field(16, ge=1, le=64)
    # Sent rows are kept this long for inspection, then purged.
    outbox_retention_seconds: float = Field(24 * 3600, ge=0)
    # Consumers: attempts before a failing event goes to the dead-letter topic (errors of
    # the database or broker are retried without limit and do not count).
    consumer_max_attempts: int = Field(5, ge=1)
    consumer_max_poll_records: int = Field(500, ge=1)
    # Events of one partition applied in one database transaction (transactional handlers).
    consumer_batch_max_events: int = Field(100, ge=1)
    # Processed event ids are kept this long to recognise redeliveries; must exceed the
    # topics' retention, or a replay from the start of a topic applies old events again.
    processed_events_retention_seconds: float = Field(14 * 24 * 3600, gt=0)
