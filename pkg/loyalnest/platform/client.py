"""Channels for calling other LoyalNest services.

Every channel gets the same service config: client-side round-robin over the addresses DNS
returns (a headless Service in Kubernetes: HTTP/2 connections would defeat kube-proxy's
balancing), a deadline on every call, and transparent retries of UNAVAILABLE. The caller's
token is forwarded, so the called service applies the same merchant and permissions, and the
trace continues through OpenTelemetry's client interceptor.

With `service_tokens` (the calling service's `ServiceTokenSource`), a call made with no caller
(a Kafka consumer, a job) carries the service's own token, bound to the merchant of
`auth.context.acting_for(...)`; a call relaying a caller's token also carries the service's
token in the `loyalnest-service-token` header, which the callee verifies and records as the
relaying service.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from loyalnest.platform.auth.context import acting_merchant, current_bearer_token
from loyalnest.platform.auth.interceptor import SERVICE_TOKEN_HEADER
from loyalnest.platform.auth.service_tokens import ServiceTokenSource

DEFAULT_TIMEOUT_SECONDS = 5.0
MAX_ATTEMPTS = 4


def service_config(timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> str:
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "methodConfig": [
                {
                    "name": [{}],  # every method
                    "timeout": f"{timeout_seconds:g}s",
                    "retryPolicy": {
                        "maxAttempts": MAX_ATTEMPTS,
                        "initialBackoff": "0.1s",
                        "maxBackoff": "1s",
                        "backoffMultiplier": 2,
                        # Only what cannot have taken effect; ABORTED etc. are the caller's call.
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ],
        }
    )


class ForwardCallerToken(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Adds the token of the RPC being handled to outgoing calls that carry none; with a
    service token source, the service's own identity too (or alone, without a caller)."""

    def __init__(self, service_tokens: ServiceTokenSource | None = None) -> None:
        self._service_tokens = service_tokens

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        metadata = list(client_call_details.metadata or ())
        if not any(key == "authorization" for key, _ in metadata):
            caller = current_bearer_token()
            source = self._service_tokens
            if caller:
                metadata.append(("authorization", f"Bearer {caller}"))
                if source is not None:
                    metadata.append((SERVICE_TOKEN_HEADER, await source.token(None)))
            elif source is not None:
                own = await source.token(acting_merchant())
                metadata.append(("authorization", f"Bearer {own}"))
            client_call_details = client_call_details._replace(metadata=metadata)
        return await continuation(client_call_details, request)


def open_channel(
    target: str,
    *,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    service_tokens: ServiceTokenSource | None = None,
) -> grpc.aio.Channel:
    """A channel to `target`, e.g. `dns:///points.loyalnest.svc.cluster.local:50051`."""
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", service_config(timeout_seconds)),
            ("grpc.enable_retries", 1),
        ],
        interceptors=[
            *aio_client_interceptors(),  # type: ignore[no-untyped-call]
            ForwardCallerToken(service_tokens),  # type: ignore[list-item]
        ],
    )
