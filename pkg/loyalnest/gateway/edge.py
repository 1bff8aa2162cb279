"""The gateway's edge policies (DESIGN §8): admin allowlist, JWT, per-merchant rate limits and
the request size limit, as Envoy filters and route settings.

Order on the request path: `rbac → jwt_authn → ratelimit`, all after the transcoder, so each
sees `/pkg.Service/Method` for REST, gRPC and gRPC-Web alike and is written once per RPC:

- **rbac** refuses (403) RPCs bound under `/admin/` unless the TCP peer is in the admin CIDRs
  (`direct_remote_ip`: X-Forwarded-For is the client's to forge), and internal RPCs
  (`(access).internal`, e.g. AuthService.GetShopAccessToken) for every peer: only services
  inside the mesh call them, directly.
- **jwt_authn** (`jwt_rules`) requires a token everywhere but public RPCs, and puts the
  verified claims in dynamic metadata (`jwt_payload`) for the next filter.
- **ratelimit** asks the gateway service (envoy.service.ratelimit.v3) with one descriptor
  `[merchant_id from the verified token, endpoint = the gRPC method]`; calls without a token
  (public RPCs) produce no descriptor and are not limited here. Over the limit: 429 for REST,
  RESOURCE_EXHAUSTED for gRPC, with the service's Retry-After and x-ratelimit-* headers.
  The service unreachable: requests pass (`fail_closed` refuses them instead).
- **read limits** (`read_rate_limit`, optional): reads (RPCs declaring `idempotency_level =
  NO_SIDE_EFFECTS`) are limited per merchant and RPC by a token bucket inside each Envoy
  replica (local_ratelimit with dynamic descriptors, after jwt_authn), and the ratelimit
  filter above then asks the rate-limit service about writes only: no network hop and no
  Python on the read path. The read bucket is per replica: with N gateway replicas a merchant
  may read up to N x the bucket cluster-wide, so an SRE sizes it as (the cluster-wide read
  budget per merchant and RPC) / (gateway replicas), and revisits it when scaling Envoy out.
  Writes keep the exact, cluster-wide, per-plan count in Redis.
- **local_ratelimit** (before rbac) limits each public RPC (`(access).public`: no token, so the
  per-merchant limit cannot apply; `Login` writes a state row per call) per *direct* peer
  address: a token bucket per (RPC, address) inside Envoy (dynamic descriptors, per gateway
  replica), 429 with `Retry-After` (RESOURCE_EXHAUSTED for gRPC). The address is the TCP peer
  (`use_remote_address` with no trusted hops), never X-Forwarded-For, which the client writes.
  Exempt by default: Shopify's signed webhooks (Shopify delivers from a few shared addresses),
  merchant integrations' signed activities (likewise) and the JWKS (Envoy fetches it from its
  own listener, i.e. from 127.0.0.1).
- **buffer** (first) answers 413 to a request body over `max_request_bytes`, kept below the
  services' 4 MiB gRPC receive limit (over it they would answer RESOURCE_EXHAUSTED → 429).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loyalnest.gateway.descriptors import ServiceInfo
from loyalnest.gateway.jwt_rules import (
    JWKS_GRPC_PATH,
    PAYLOAD_METADATA_KEY,
    GatewayJwks,
    jwt_authn_filter,
    public_methods,
)

JWT_FILTER = "envoy.filters.http.jwt_authn"
BUFFER_FILTER = "envoy.filters.http.buffer"
RATE_LIMIT_DOMAIN = "loyalnest"
RATE_LIMIT_FILTER = "envoy.filters.http.ratelimit"
# Descriptor keys: the gateway service's rate limiter reads the same names.
MERCHANT_DESCRIPTOR_KEY = "merchant_id"
ENDPOINT_DESCRIPTOR_KEY = "endpoint"
MERCHANT_CLAIM = "merchant_id"
DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024
LOOPBACK_CIDRS = ("127.0.0.1/32", "::1/128")
LOCAL_RATE_LIMIT_FILTER = "envoy.filters.http.local_ratelimit"
PUBLIC_RPC_DESCRIPTOR_KEY = "public_rpc"
REMOTE_ADDRESS_DESCRIPTOR_KEY = "remote_address"  # what Envoy's remote_address action writes
# Public RPCs a per-address limit must not throttle (see the module doc).
SIGNED_WEBHOOK_PATH = "/loyalnest.edge.v1.EdgeService/ReceiveWebhook"
# Merchant integrations' signed activities: an app reports for every shop it serves from a
# few addresses too, and each request carries its own HMAC.
SIGNED_ACTIVITY_PATH = "/loyalnest.points.v1.PointsService/RecordSignedActivity"
DEFAULT_PUBLIC_EXEMPT = (SIGNED_WEBHOOK_PATH, SIGNED_ACTIVITY_PATH, JWKS_GRPC_PATH)
MIN_REFILL_SECONDS = 0.05
READ_RATE_LIMIT_STAT_PREFIX = "merchant_reads"


def _typed(type_name: str, **fields: Any) -> dict[str, Any]:
    return {"@type": f"type.googleapis.com/{type_name}", **fields}


@dataclass(frozen=True)
class JwtProvider:
    # A file Envoy reads once at start, or Auth's published JWKS refetched in the background.
    jwks: Path | GatewayJwks
    issuer: str


@dataclass(frozen=True, kw_only=True)
class PublicRateLimit:
    """Each source address may call each public RPC `burst` times at once, then once every
    `refill_seconds`. Buckets live in each Envoy replica; at most `max_addresses` of them per
    RPC are kept (least recently used evicted)."""

    burst: int = 20
    refill_seconds: float = 3
    exempt: tuple[str, ...] = DEFAULT_PUBLIC_EXEMPT  # gRPC paths, /pkg.Service/Method
    max_addresses: int = 10_000

    def __post_init__(self) -> None:
        if self.burst <= 0 or self.max_addresses <= 0:
            raise ValueError("burst and max_addresses must be positive")
        if self.refill_seconds < MIN_REFILL_SECONDS:  # Envoy refuses a faster fill timer
            raise ValueError(f"refill_seconds must be at least {MIN_REFILL_SECONDS}")

    @property
    def retry_after_seconds(self) -> int:
        return max(1, math.ceil(self.refill_seconds))


@dataclass(frozen=True, kw_only=True)
class ReadRateLimit:
    """Each merchant may call each read RPC `burst` times at once, then
    `requests_per_second` times a second, **per Envoy replica** (see the module doc). At most
    `max_buckets` (merchant, RPC) buckets are kept per replica, least recently used evicted."""

    burst: int = 600
    requests_per_second: int = 100
    max_buckets: int = 100_000

    def __post_init__(self) -> None:
        if self.burst <= 0 or self.requests_per_second <= 0 or self.max_buckets <= 0:
            raise ValueError("burst, requests_per_second and max_buckets must be positive")


@dataclass(frozen=True, kw_only=True)
class EdgePolicy:
    jwt: JwtProvider | None = None
    # Peers allowed to call /admin/ RPCs. Empty: nobody (admin RPCs refused at the edge).
    admin_allowed_cidrs: tuple[str, ...] = LOOPBACK_CIDRS
    # The upstream (a GatewayConfig upstream name) serving envoy.service.ratelimit.v3; None:
    # no rate limiting.
    rate_limit_upstream: str | None = None
    # The check sits in front of every call: a slow limiter must not stall traffic.
    rate_limit_timeout_seconds: float = 0.25
    rate_limit_fail_closed: bool = False
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    # Per source address on public RPCs; None: unlimited.
    public_rate_limit: PublicRateLimit | None = field(default_factory=PublicRateLimit)
    # Reads limited in Envoy per replica, writes only by the rate-limit service; None: every
    # RPC asks the rate-limit service.
    read_rate_limit: ReadRateLimit | None = None

    def __post_init__(self) -> None:
        for cidr in self.admin_allowed_cidrs:
            ipaddress.ip_network(cidr, strict=False)  # ValueError names the bad entry
        if (
            self.rate_limit_upstream is not None or self.read_rate_limit is not None
        ) and self.jwt is None:
            raise ValueError("rate limits are per merchant from the JWT: configure jwt too")
        if self.max_request_bytes <= 0 or self.rate_limit_timeout_seconds <= 0:
            raise ValueError("max_request_bytes and rate_limit_timeout_seconds must be positive")


def admin_paths(services: Sequence[ServiceInfo]) -> list[str]:
    return sorted(s.grpc_path(m.name) for s in services for m in s.methods if m.admin)


def _cidr_principal(cidr: str) -> dict[str, Any]:
    network = ipaddress.ip_network(cidr, strict=False)
    return {
        "direct_remote_ip": {
            "address_prefix": str(network.network_address),
            "prefix_len": network.prefixlen,
        }
    }


def internal_paths(services: Sequence[ServiceInfo]) -> list[str]:
    return sorted(s.grpc_path(m.name) for s in services for m in s.methods if m.internal)


def _any_of_paths(paths: Sequence[str]) -> list[dict[str, Any]]:
    return [{"or_rules": {"rules": [{"url_path": {"path": {"exact": p}}} for p in paths]}}]


def rbac_filter(policy: EdgePolicy, services: Sequence[ServiceInfo]) -> dict[str, Any] | None:
    paths = admin_paths(services)
    internal = internal_paths(services)
    policies: dict[str, Any] = {}
    if paths:
        outside: dict[str, Any]
        if policy.admin_allowed_cidrs:
            ids = [_cidr_principal(cidr) for cidr in policy.admin_allowed_cidrs]
            outside = {"not_id": {"or_ids": {"ids": ids}}}
        else:
            outside = {"any": True}
        policies["admin-rpc-outside-allowlist"] = {
            "permissions": _any_of_paths(paths),
            "principals": [outside],
        }
    if internal:
        # `:path` is the gRPC method here for REST, gRPC and gRPC-Web alike (after the
        # transcoder), so one rule per method denies every way in.
        policies["internal-rpc"] = {
            "permissions": _any_of_paths(internal),
            "principals": [{"any": True}],
        }
    if not policies:
        return None
    return {
        "name": "envoy.filters.http.rbac",
        "typed_config": _typed(
            "envoy.extensions.filters.http.rbac.v3.RBAC",
            rules={"action": "DENY", "policies": policies},
        ),
    }


def rate_limit_filter(policy: EdgePolicy) -> dict[str, Any] | None:
    if policy.rate_limit_upstream is None:
        return None
    return {
        "name": RATE_LIMIT_FILTER,
        "typed_config": _typed(
            "envoy.extensions.filters.http.ratelimit.v3.RateLimit",
            domain=RATE_LIMIT_DOMAIN,
            timeout=f"{policy.rate_limit_timeout_seconds:g}s",
            failure_mode_deny=policy.rate_limit_fail_closed,
            # gRPC clients get RESOURCE_EXHAUSTED (Envoy's default would be UNAVAILABLE, which
            # clients retry at once).
            rate_limited_as_resource_exhausted=True,
            rate_limit_service={
                "grpc_service": {
                    "envoy_grpc": {"cluster_name": policy.rate_limit_upstream},
                    "timeout": f"{policy.rate_limit_timeout_seconds:g}s",
                },
                "transport_api_version": "V3",
            },
        ),
    }


def read_paths(services: Sequence[ServiceInfo]) -> list[str]:
    """gRPC paths of the reads (NO_SIDE_EFFECTS) the gateway routes."""
    return sorted(s.grpc_path(m.name) for s in services for m in s.methods if m.read_only)


def _merchant_and_endpoint() -> list[dict[str, Any]]:
    return [
        {
            "metadata": {
                "descriptor_key": MERCHANT_DESCRIPTOR_KEY,
                "metadata_key": {
                    "key": JWT_FILTER,
                    "path": [{"key": PAYLOAD_METADATA_KEY}, {"key": MERCHANT_CLAIM}],
                },
                "source": "DYNAMIC",
            }
        },
        {"request_headers": {"header_name": ":path", "descriptor_key": ENDPOINT_DESCRIPTOR_KEY}},
    ]


def virtual_host_rate_limits(policy: EdgePolicy) -> list[dict[str, Any]]:
    """One descriptor per request: [merchant from the verified token, gRPC method]. Without a
    verified token the metadata action finds nothing and Envoy sends no descriptor. With
    `read_rate_limit`, read routes ignore these (`reads_skip_global_limit`), so the service
    is asked about writes only."""
    if policy.rate_limit_upstream is None:
        return []
    return [{"actions": _merchant_and_endpoint()}]


def reads_skip_global_limit(policy: EdgePolicy) -> bool:
    return policy.read_rate_limit is not None and policy.rate_limit_upstream is not None


def global_limit_ignored() -> dict[str, Any]:
    """Per-route config of the ratelimit filter: the virtual host's descriptors are not
    generated on this route, so Envoy makes no call to the rate-limit service."""
    return _typed(
        "envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute", vh_rate_limits="IGNORE"
    )


def read_rate_limit_filter(
    policy: EdgePolicy, services: Sequence[ServiceInfo]
) -> dict[str, Any] | None:
    """local_ratelimit with one dynamic descriptor per read RPC:
    [(merchant_id, any), (endpoint, its gRPC path)], a bucket per merchant. Writes and calls
    without a verified token match no descriptor and are not limited here."""
    limit = policy.read_rate_limit
    paths = read_paths(services)
    if limit is None or policy.jwt is None or not paths:
        return None
    bucket = {
        "max_tokens": limit.burst,
        "tokens_per_fill": limit.requests_per_second,
        "fill_interval": "1s",
    }
    return {
        "name": LOCAL_RATE_LIMIT_FILTER,
        "typed_config": _typed(
            "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            stat_prefix=READ_RATE_LIMIT_STAT_PREFIX,
            filter_enabled=_percent("loyalnest.read_rate_limit.enabled"),
            filter_enforced=_percent("loyalnest.read_rate_limit.enforced"),
            rate_limited_as_resource_exhausted=True,
            response_headers_to_add=[
                {
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    "header": {"key": "retry-after", "value": "1"},
                }
            ],
            max_dynamic_descriptors=limit.max_buckets,
            rate_limits=[{"actions": _merchant_and_endpoint()}],
            descriptors=[
                {
                    "entries": [
                        # Empty value: a bucket per distinct merchant (dynamic descriptor).
                        {"key": MERCHANT_DESCRIPTOR_KEY, "value": ""},
                        {"key": ENDPOINT_DESCRIPTOR_KEY, "value": path},
                    ],
                    "token_bucket": bucket,
                }
                for path in paths
            ],
        ),
    }


def _percent(runtime_key: str) -> dict[str, Any]:
    return {
        "default_value": {"numerator": 100, "denominator": "HUNDRED"},
        "runtime_key": runtime_key,
    }


def public_rate_limit_filter(
    policy: EdgePolicy, services: Sequence[ServiceInfo], descriptor_set_path: Path
) -> dict[str, Any] | None:
    """local_ratelimit with one dynamic descriptor per limited public RPC:
    [(public_rpc, its gRPC path), (remote_address, any)], each address its own bucket. Other
    requests match no descriptor and no default bucket is set: they are not limited here."""
    limit = policy.public_rate_limit
    if limit is None:
        return None
    served = {s.grpc_path(m.name) for s in services for m in s.methods}
    paths = [
        p for p in public_methods(descriptor_set_path) if p in served and p not in limit.exempt
    ]
    if not paths:
        return None
    bucket = {
        "max_tokens": limit.burst,
        "tokens_per_fill": 1,
        "fill_interval": f"{limit.refill_seconds:g}s",
    }
    return {
        "name": LOCAL_RATE_LIMIT_FILTER,
        "typed_config": _typed(
            "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            stat_prefix="public_rpc_per_address",
            filter_enabled=_percent("loyalnest.public_rate_limit.enabled"),
            filter_enforced=_percent("loyalnest.public_rate_limit.enforced"),
            rate_limited_as_resource_exhausted=True,
            response_headers_to_add=[
                {
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    "header": {"key": "retry-after", "value": str(limit.retry_after_seconds)},
                }
            ],
            max_dynamic_descriptors=limit.max_addresses,
            # The descriptors come from here, not from the routes' rate_limits (those feed
            # the per-merchant ratelimit filter).
            rate_limits=[
                {
                    "actions": [
                        {
                            "request_headers": {
                                "header_name": ":path",
                                "descriptor_key": PUBLIC_RPC_DESCRIPTOR_KEY,
                            }
                        },
                        # The TCP peer (use_remote_address, no trusted hops): not spoofable.
                        {"remote_address": {}},
                    ]
                }
            ],
            descriptors=[
                {
                    "entries": [
                        {"key": PUBLIC_RPC_DESCRIPTOR_KEY, "value": path},
                        # Empty value: a bucket per distinct address (dynamic descriptor).
                        {"key": REMOTE_ADDRESS_DESCRIPTOR_KEY, "value": ""},
                    ],
                    "token_bucket": bucket,
                }
                for path in paths
            ],
        ),
    }


def buffer_filter(policy: EdgePolicy) -> dict[str, Any]:
    return {
        "name": BUFFER_FILTER,
        "typed_config": _typed(
            "envoy.extensions.filters.http.buffer.v3.Buffer",
            max_request_bytes=policy.max_request_bytes,
        ),
    }


def buffer_disabled() -> dict[str, Any]:
    """Per-route config turning the body limit off (streaming routes)."""
    return _typed("envoy.extensions.filters.http.buffer.v3.BufferPerRoute", disabled=True)


def policy_filters(
    policy: EdgePolicy, services: Sequence[ServiceInfo], descriptor_set_path: Path
) -> list[dict[str, Any]]:
    """local_ratelimit (public RPCs) → rbac → jwt_authn → local_ratelimit (reads) → ratelimit,
    those configured."""
    filters = [
        public_rate_limit_filter(policy, services, descriptor_set_path),
        rbac_filter(policy, services),
    ]
    if policy.jwt is not None:
        filters.append(jwt_authn_filter(descriptor_set_path, policy.jwt.jwks, policy.jwt.issuer))
    filters.append(read_rate_limit_filter(policy, services))
    filters.append(rate_limit_filter(policy))
    return [f for f in filters if f is not None]


def policy_clusters(policy: EdgePolicy) -> list[dict[str, Any]]:
    """Clusters the policies need besides the upstreams: the JWKS fetch, when remote."""
    if policy.jwt is not None and isinstance(policy.jwt.jwks, GatewayJwks):
        return [policy.jwt.jwks.cluster()]
    return []
