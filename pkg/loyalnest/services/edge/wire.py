"""The edge's messages (loyalnest.edge.v1 and Envoy's rate-limit service) <-> domain values."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from loyalnest.gen.edge.v1 import edge_pb2
from loyalnest.gen.xds.envoy.config.core.v3 import base_pb2
from loyalnest.services.edge.domain import Decision, Outcome

# The entries of the one descriptor Envoy sends per request (the gateway's rate_limits).
MERCHANT_KEY = "merchant_id"
ENDPOINT_KEY = "endpoint"

OUTCOMES = {
    Outcome.ACCEPTED: edge_pb2.WEBHOOK_OUTCOME_ACCEPTED,
    Outcome.DUPLICATE: edge_pb2.WEBHOOK_OUTCOME_DUPLICATE,
    Outcome.DEAD_LETTERED: edge_pb2.WEBHOOK_OUTCOME_DEAD_LETTERED,
}


def descriptor_entries(descriptor: Any) -> Mapping[str, str]:
    return {entry.key: entry.value for entry in descriptor.entries}


def _header(name: str, value: str | int) -> base_pb2.HeaderValue:
    return base_pb2.HeaderValue(key=name, value=str(value))


def rate_limit_headers(decision: Decision) -> list[base_pb2.HeaderValue]:
    """IETF draft RateLimit headers (x-ratelimit-*) and, when refused, Retry-After (Envoy adds
    none by itself)."""
    limit = decision.limit
    window = max(1, math.ceil(limit.burst / limit.requests_per_second))
    headers = [
        _header("x-ratelimit-limit", f"{limit.burst}, {limit.burst};w={window}"),
        _header("x-ratelimit-remaining", decision.remaining),
        _header("x-ratelimit-reset", math.ceil(decision.reset_seconds)),
    ]
    if not decision.allowed:
        headers.append(_header("retry-after", max(1, math.ceil(decision.retry_after_seconds))))
    return headers
