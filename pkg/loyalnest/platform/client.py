"""Channels for calling other LoyalNest services (`loyalnest.platform.calls` declares whom a
service calls and opens these for it).

Every channel's policy is derived from the callee's proto: client-side round-robin over the
addresses DNS returns (a headless Service in Kubernetes: HTTP/2 connections would defeat
kube-proxy's balancing), per method a deadline (the RPC's `(loyalnest.options.v1.route).timeout`,
else a default) and, only for RPCs whose `idempotency_level` is NO_SIDE_EFFECTS or IDEMPOTENT,
retries of UNAVAILABLE with backoff (the service config): a repeat of those does no harm even
if the first attempt reached the callee. Other RPCs get
gRPC's transparent retry only (of attempts that never left the client), as at the gateway
(`loyalnest.gateway.envoy_config`, from the same `descriptors.method_info`). The caller's token
is forwarded, so the called service applies the same merchant and permissions, and the trace
continues through the client span's traceparent (`platform/client_spans.py`).

With `service_tokens` (the calling service's source of its own tokens), a call made with no
caller (a Kafka consumer, a job) carries the service's own token, bound to the merchant of
`auth.context.acting_for(...)`; a call relaying a caller's token also carries the service's
token in the `loyalnest-service-token` header, which the callee verifies and records as the
relaying service.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import ServiceDescriptor

from loyalnest.gateway.descriptors import method_info
from loyalnest.platform.auth.context import acting_merchant, current_bearer_token
from loyalnest.platform.auth.interceptor import SERVICE_TOKEN_HEADER
from loyalnest.platform.client_spans import TraceCalls, TraceStreamCalls

DEFAULT_TIMEOUT_SECONDS = 5.0
MAX_ATTEMPTS = 4
# Exponential backoff between attempts (gRPC randomises each delay in [0, backoff]).
INITIAL_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 1.0
BACKOFF_MULTIPLIER = 2
# Retry throttling per channel (gRFC A6): each failure costs a token, each success returns a
# tenth of one, and with half the tokens gone retries stop. A callee that is down for everyone
# is not hit by every caller's retries on top of its callers' traffic.
RETRY_THROTTLING = {"maxTokens": 10, "tokenRatio": 0.1}


class ServiceTokens(Protocol):
    """A source of the calling service's own tokens (ServiceTokenSource, or a service's own)."""

    async def token(self, merchant_id: str | None = None) -> str: ...

    async def close(self) -> None: ...


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


@dataclass(frozen=True)
class MethodPolicy:
    """How calls to one RPC are made: their deadline (None: none) and whether an UNAVAILABLE
    attempt is retried."""

    timeout_seconds: float | None
    retry: bool


def method_policies(
    service: ServiceDescriptor, *, default_timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> dict[str, MethodPolicy]:
    """The policy of every RPC of `service` (a generated service descriptor), keyed by the
    method's path (`/loyalnest.points.v1.PointsService/EarnPoints`)."""
    policies: dict[str, MethodPolicy] = {}
    for method in service.methods:
        proto = descriptor_pb2.MethodDescriptorProto()
        method.CopyToProto(proto)
        info = method_info(proto)
        timeout: float | None = info.timeout_seconds or default_timeout_seconds
        if info.server_streaming and not info.timeout_seconds:
            timeout = None  # a stream lasts as long as its caller wants
        policies[f"/{service.full_name}/{method.name}"] = MethodPolicy(timeout, info.idempotent)
    return policies


def service_config(
    policies: Mapping[str, MethodPolicy], *, max_attempts: int = MAX_ATTEMPTS
) -> str:
    """The channel's service config (JSON): round-robin, and retries of the RPCs safe to
    repeat. Deadlines are not in it: gRPC Python ends calls up to ~1 s before a deadline set
    there (grpc/grpc#34547, #40633), so `MethodDeadlines` sets them per call instead."""
    methods: list[dict[str, Any]] = []
    for path, policy in policies.items():
        if not policy.retry or max_attempts < 2:
            continue
        service, _, method = path.strip("/").rpartition("/")
        methods.append(
            {
                "name": [{"service": service, "method": method}],
                "retryPolicy": {
                    "maxAttempts": max_attempts,
                    "initialBackoff": _duration(INITIAL_BACKOFF_SECONDS),
                    "maxBackoff": _duration(MAX_BACKOFF_SECONDS),
                    "backoffMultiplier": BACKOFF_MULTIPLIER,
                    # Only what says "try another backend"; ABORTED etc. are the caller's call.
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        )
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "methodConfig": methods,
            "retryThrottling": RETRY_THROTTLING,
        }
    )


class _Deadlines:
    """Gives a call without a timeout of its own its RPC's deadline (a shorter one the caller
    passes is kept). The deadline spans every attempt of a retried call."""

    def __init__(
        self, policies: Mapping[str, MethodPolicy], default_timeout_seconds: float
    ) -> None:
        self._timeouts = {path: policy.timeout_seconds for path, policy in policies.items()}
        self._default = default_timeout_seconds

    def _details(self, client_call_details: Any) -> Any:
        method = client_call_details.method
        path = method.decode() if isinstance(method, bytes) else method
        timeout = self._timeouts.get(path, self._default)
        if timeout is None:
            return client_call_details
        if client_call_details.timeout is not None:
            timeout = min(timeout, client_call_details.timeout)
        return client_call_details._replace(timeout=timeout)


# grpc.aio files an interceptor under the first call kind it implements only, hence one class
# per kind the services use (unary and server-streaming RPCs).
class MethodDeadlines(
    _Deadlines,
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)


class StreamDeadlines(
    _Deadlines,
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)


class _CallerTokenMetadata:
    """Adds the token of the RPC being handled to outgoing calls that carry none; with a
    service token source, the service's own identity too (or alone, without a caller)."""

    def __init__(self, service_tokens: ServiceTokens | None = None) -> None:
        self._service_tokens = service_tokens

    async def _details(self, client_call_details: Any) -> Any:
        metadata = list(client_call_details.metadata or ())
        if any(key == "authorization" for key, _ in metadata):
            return client_call_details
        caller = current_bearer_token()
        source = self._service_tokens
        if caller:
            metadata.append(("authorization", f"Bearer {caller}"))
            if source is not None:
                metadata.append((SERVICE_TOKEN_HEADER, await source.token(None)))
        elif source is not None:
            own = await source.token(acting_merchant())
            metadata.append(("authorization", f"Bearer {own}"))
        return client_call_details._replace(metadata=metadata)


class ForwardCallerToken(
    _CallerTokenMetadata,
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(await self._details(client_call_details), request)


class ForwardCallerTokenToStreams(
    _CallerTokenMetadata,
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(await self._details(client_call_details), request)


def open_channel(
    target: str,
    *,
    services: Iterable[ServiceDescriptor] = (),
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    max_attempts: int = MAX_ATTEMPTS,
    service_tokens: ServiceTokens | None = None,
) -> grpc.aio.Channel:
    """A channel to `target`, e.g. `dns:///points.loyalnest.svc.cluster.local:50051`, whose
    deadlines and retries follow the RPCs of `services` (the callee's service descriptors);
    other methods get `timeout_seconds` and no retries."""
    policies: dict[str, MethodPolicy] = {}
    for service in services:
        policies |= method_policies(service, default_timeout_seconds=timeout_seconds)
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", service_config(policies, max_attempts=max_attempts)),
            ("grpc.enable_retries", 1),
        ],
        interceptors=[
            # Outermost: the client span covers every attempt of a retried call.
            TraceCalls(),  # type: ignore[list-item]
            TraceStreamCalls(),  # type: ignore[list-item]
            MethodDeadlines(policies, timeout_seconds),  # type: ignore[list-item]
            StreamDeadlines(policies, timeout_seconds),  # type: ignore[list-item]
            ForwardCallerToken(service_tokens),  # type: ignore[list-item]
            ForwardCallerTokenToStreams(service_tokens),  # type: ignore[list-item]
        ],
    )
