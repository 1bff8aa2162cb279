"""Service configuration from the environment (`LOYALNEST_*`).

One mixin per concern, each read from `LOYALNEST_<FIELD>`: the platform code of a concern takes
only its part (`Database` takes `DatabaseSettings`, `OutboxRelay` `EventSettings`, ...), so what
a class reads is visible in its signature and a test builds just that part. `ServiceSettings`
combines them all; a service that needs more subclasses it and adds fields, read the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The placeholder of LOYALNEST_CALL_TARGET_TEMPLATE, replaced by the callee's component name.
SERVICE_PLACEHOLDER = "{service}"


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALNEST_", extra="ignore", frozen=True)


class ServerSettings(_Settings):
    """The gRPC server: where it listens, how it drains, how long a connection lives."""

    # In Kubernetes the chart sets 0.0.0.0; locally nothing should listen beyond loopback.
    host: str = "127.0.0.1"
    grpc_port: int = Field(50051, ge=0, le=65535)
    # SIGTERM: stop accepting, give in-flight calls this long, then cancel them.
    # Kubernetes' terminationGracePeriodSeconds must exceed it.
    shutdown_grace_seconds: float = Field(10.0, ge=0)
    max_receive_message_bytes: int = 4 * 1024 * 1024
    max_concurrent_rpcs: int | None = None
    # HMAC key of List RPCs' page tokens (loyalnest.platform.pagination), the same for every
    # replica of a service. Unset: a development key (tokens still strictly validated).
    page_token_key: SecretStr | None = None
    # Clients balance over the addresses DNS returned when they connected; a connection that
    # never closes never sees the pods a scale-out added. So the server ends every connection
    # after this long (gRPC adds +-10 % jitter so a fleet's connections do not all end at
    # once) with a GOAWAY; the client re-resolves and reconnects without failing a call.
    # 5 minutes: new pods take a share of the traffic within one HPA stabilisation window,
    # while a reconnect (one TCP + HTTP/2 handshake per client and pod) stays rare.
    max_connection_age_seconds: float = Field(300.0, gt=0)
    # After the GOAWAY, calls already running get this long to finish before the connection
    # is closed under them. Longer than any unary deadline (the gateway's is 15 s, service
    # calls' 5 s): only long streams (StreamPoints) are cut, and their clients resume.
    max_connection_age_grace_seconds: float = Field(30.0, ge=0)
    # The asyncio loop `loyalnest serve` runs on: uvloop (libuv) costs less CPU per call;
    # "asyncio" (the standard library's loop) is the fallback should uvloop misbehave.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"


class DatabaseSettings(_Settings):
    """The service's PostgreSQL database (loyalnest.platform.postgres)."""

    database_url: str = "postgresql://postgres@127.0.0.1:5432/loyalnest"
    db_pool_min_size: int = Field(2, ge=1)
    db_pool_max_size: int = Field(10, ge=1)
    db_connect_timeout_seconds: float = Field(3.0, gt=0)
    run_migrations_on_start: bool = True


class HealthSettings(_Settings):
    # How often dependencies are probed for grpc.health.v1, and how long one probe may take.
    health_check_interval_seconds: float = Field(2.0, gt=0)
    health_check_timeout_seconds: float = Field(1.0, gt=0)


class ObservabilitySettings(_Settings):
    """Logs, traces and metrics (loyalnest.platform.observability)."""

    # Prometheus /metrics on its own HTTP port (0 picks a free one).
    metrics_enabled: bool = True
    metrics_port: int = Field(9464, ge=0, le=65535)

    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    # One line per RPC; errors are always logged.
    access_log: bool = False

    tracing_enabled: bool = True
    # OTLP/gRPC collector, e.g. http://otel-collector:4317; unset keeps spans in-process
    # (trace ids still reach logs and downstream calls).
    otel_exporter_otlp_endpoint: str | None = None
    otel_sample_ratio: float = Field(1.0, ge=0, le=1)


class TokenSettings(_Settings):
    """Verifying access tokens (loyalnest.platform.auth): every non-public RPC needs one."""

    # The public JWKS is a file (a ConfigMap in Kubernetes), re-read when it changes.
    jwt_jwks_path: Path | None = None
    jwt_issuer: str = "loyalnest-auth"
    jwt_audience: str = "loyalnest"


class RedisSettings(_Settings):
    # Redis: revoked token ids (and caches); unset skips revocation checks.
    redis_url: str | None = None


class CallSettings(_Settings):
    """Calls to other LoyalNest services (loyalnest.platform.calls): where each callee answers
    and how this service proves who it is when it calls on its own behalf."""

    # Where the callees answer, by the name the service declares them with (`Calls(roles=...)`):
    # LOYALNEST_CALL_TARGETS='{"roles": "dns:///roles.loyalnest.svc.cluster.local:50051"}'.
    # Takes precedence over the template. The chart and the local stack set it from the
    # service's declared calls.
    call_targets: dict[str, str] = {}
    # The convention for the callees CALL_TARGETS does not name: `{service}` is replaced by the
    # callee's name (with `-` for `_`), e.g. dns:///{service}.loyalnest.svc.cluster.local:50051.
    call_target_template: str | None = None
    # The deadline of a call whose RPC declares no `(loyalnest.options.v1.route).timeout`.
    call_timeout_seconds: float = Field(5.0, gt=0)
    # Attempts of a call to an RPC that is safe to repeat (idempotency_level NO_SIDE_EFFECTS or
    # IDEMPOTENT) that failed with UNAVAILABLE; gRPC caps it at 5.
    call_max_attempts: int = Field(4, ge=1, le=5)
    # Service identity (loyalnest.platform.auth.service_identity): this service's credential (a
    # Secret; `loyalnest service-credential NAME` derives it). With it, calls made on the
    # service's own behalf carry a service token from Auth (so the service must declare auth
    # among its calls).
    service_credential: SecretStr | None = None

    @field_validator("call_target_template")
    @classmethod
    def _has_placeholder(cls, value: str | None) -> str | None:
        if value is not None and SERVICE_PLACEHOLDER not in value:
            raise ValueError(
                f"LOYALNEST_CALL_TARGET_TEMPLATE must contain {SERVICE_PLACEHOLDER}, e.g. "
                "dns:///{service}.loyalnest.svc.cluster.local:50051"
            )
        return value

    @field_validator("call_targets", mode="before")
    @classmethod
    def _targets_json(cls, value: object) -> object:
        # pydantic-settings decodes JSON from the environment; a constructor may pass either.
        return json.loads(value) if isinstance(value, str) else value


class EventSettings(_Settings):
    """Domain events on Kafka (loyalnest.platform.events): the outbox relay and consumers."""

    # Off: state changes still write their outbox rows (they wait for a relay), but this
    # process runs no relay and no consumers.
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
    # Shutting down, each step with the broker (the relay's batch in flight, the producer's
    # flush, the consumer's last commit and close) waits at most this long: a healthy broker
    # answers in milliseconds, one that is away must not hold the pod past its grace.
    events_shutdown_step_seconds: float = Field(3.0, gt=0)
    # False: this process does not relay its outbox; `loyalnest relay <service>` does, in a
    # process of its own (its Kafka producer then takes no CPU or GIL from request handling).
    outbox_relay_in_process: bool = True
    # The outbox relay's (and dead letters') Kafka producer: "kafka-python" (pure Python) or
    # "confluent" (librdkafka: its IO in C threads, off the GIL; about half the relay's CPU
    # per event; same partitions, order and delivery guarantees). kafka-python stays the
    # default: on two cores shared with the broker, librdkafka credits ~0.9x as many orders
    # at saturation, the broker answering twice as many fetches (bench/README.md, "Kafka
    # consumers on librdkafka", which also explains the records once lost on the local broker).
    kafka_producer: Literal["kafka-python", "confluent"] = "kafka-python"
    # The consumers' Kafka client, the same choice (members of both kinds can share a group).
    # Topics are created with librdkafka's admin client unless both are kafka-python: a
    # process imports only the library it uses.
    kafka_consumer: Literal["kafka-python", "confluent"] = "kafka-python"
    # Customer pseudonyms on Kafka (loyalnest.platform.events.pseudonyms): relays publish a
    # pseudonym instead of every Shopify customer id, consumers resolve it back, both asking the
    # edge (CustomerPseudonymService; needs the edge and auth call targets and this service's
    # credential, checked at start-up). On wherever the mesh runs (the chart, k8s/base,
    # `loyalnest up`, tests/deploy assert it); off only for a service run alone in a test.
    customer_pseudonyms: bool = False
    # Outbox relay: idle polling interval (a full batch is followed at once by the next).
    outbox_poll_interval_seconds: float = Field(0.1, gt=0)
    outbox_batch_size: int = Field(500, ge=1)
    # After a batch smaller than outbox_batch_size, the relay waits this long before its next
    # claim: a claim costs the same round trips for 1 row as for 500, so under load the next
    # batch carries the events of this interval instead of the few committed meanwhile. The
    # price is at most this much delay for events behind a partial batch (bench/README.md,
    # "The relay's linger": edge CPU per webhook 0.77x at 300/s with 25 ms).
    outbox_linger_seconds: float = Field(0.025, ge=0)
    # Lanes one relay claims per batch out of 64: lets several relays share the work.
    outbox_lanes_per_batch: int = Field(16, ge=1, le=64)
    # Sent rows are kept this long for inspection, then purged.
    outbox_retention_seconds: float = Field(24 * 3600, ge=0)
    # With events off, at most this many audit rows wait in an audited schema's
    # audit_log_queue: older ones move on into the outbox (as audit_log.recorded, in queue
    # order), where every event waits for a relay (platform/audit/shipper.py).
    audit_queue_bound: int = Field(10_000, ge=0)
    # Consumers: attempts before a failing event goes to the dead-letter topic (errors of
    # the database or broker are retried without limit and do not count).
    consumer_max_attempts: int = Field(5, ge=1)
    consumer_max_poll_records: int = Field(500, ge=1)
    # How often a consumer commits the offsets of what it applied (and updates its lag
    # gauges); 0: after every poll. A crash or rebalance redelivers at most this much,
    # skipped by the inbox. 1 s cut Points' CPU per order to 0.91x, but stays opt-in until a
    # CI timeout of the crash-and-redelivery test on librdkafka is explained (bench/README.md).
    consumer_commit_interval_seconds: float = Field(0.0, ge=0)
    # Kafka's max.poll.interval.ms: a member that does not poll for this long leaves the
    # group, and it is also the rebalance timeout, i.e. how long a join waits for members
    # that held partitions to rejoin (a member killed mid-batch holds a join up to this long
    # on our broker). Must exceed the slowest batch; the default is Kafka's.
    consumer_max_poll_interval_seconds: float = Field(300.0, gt=0)
    # Events of one partition applied in one database transaction (transactional handlers).
    consumer_batch_max_events: int = Field(100, ge=1)
    # Processed event ids are kept this long to recognise redeliveries; must exceed the
    # topics' retention, or a replay from the start of a topic applies old events again.
    processed_events_retention_seconds: float = Field(14 * 24 * 3600, gt=0)


class ServiceSettings(
    ServerSettings,
    DatabaseSettings,
    HealthSettings,
    ObservabilitySettings,
    TokenSettings,
    RedisSettings,
    CallSettings,
    EventSettings,
):
    """Everything a service process reads; see each part for its fields."""


class MigrationSettings(DatabaseSettings, ObservabilitySettings):
    """What applying a service's schema reads (`loyalnest migrate`): the database and how to
    log. Not the service's own settings: its secrets (API keys, encryption keys) are no
    business of a migration, and the chart's migration Job is given none of them."""
