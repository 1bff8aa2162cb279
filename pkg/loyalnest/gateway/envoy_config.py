"""The Envoy gateway's bootstrap, generated from the protobuf descriptor set.

Nothing here names a LoyalNest service or RPC: services, REST bindings and server-streaming
RPCs are read from the descriptor set that `tools/genproto.py` writes, and backends come from
`Upstream`s (the local supervisor or the chart provides their addresses). Adding a service or an
RPC therefore needs no edit here, only a regenerated descriptor set and a re-rendered config.

Request path through the HTTP filters (DESIGN §8):

    cors → buffer (413) → drop_invalid_metadata_headers (Lua) → grpc_web
         → hide_grpc_headers_on_rest (Lua) → grpc_json_transcoder → record_grpc_status (Lua)
         → local_ratelimit (public RPCs) → rbac → jwt_authn → ratelimit → router

(the two small Lua filters act on responses only; the edge policies are `edge.EdgePolicy`).

Routes: one per RPC that needs its own (server streaming: no timeout; a declared
`(loyalnest.options.v1.route).timeout`; `idempotency_level` NO_SIDE_EFFECTS/IDEMPOTENT, which
are retried on UNAVAILABLE and resets), then one per service. Every upstream cluster has
outlier detection (a worker failing in a row is ejected for a while) and circuit breakers.

After the transcoder every request, whether REST, native gRPC or gRPC-Web, carries
`:path = /<package>.<Service>/<Method>`, so routes (and later JWT rules, RBAC and rate limits) are
written once per gRPC service or method. `match_incoming_request_route` stays false: the route
is chosen again after the transcoder rewrote the path.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loyalnest.gateway import edge
from loyalnest.gateway.descriptors import (
    SHARED_PACKAGE_PREFIX,
    STATUS_FILES,
    MethodInfo,
    ServiceInfo,
    files_in_descriptor_set,
    grpc_services_in_descriptor_set,
    services_in_descriptor_set,
)
from loyalnest.gateway.local_replies import local_reply_config
from loyalnest.gateway.openapi import OPENAPI_PATH

__all__ = [
    "GatewayConfig",
    "Upstream",
    "grpc_services_in_descriptor_set",
    "render",
    "render_json",
    "unserved_services",
    "upstreams_from_descriptor_set",
    "write",
]

# Routes of unary RPCs: the gateway's default deadline. A native gRPC client's own deadline
# (grpc-timeout header) is honoured up to this value.
DEFAULT_ROUTE_TIMEOUT_SECONDS = 15
CONNECT_TIMEOUT_SECONDS = 1
# Active gRPC health checks (grpc.health.v1, which every service serves). Envoy's default
# no_traffic_interval is 60 s: a backend that starts after Envoy would stay unhealthy that long.
HEALTH_CHECK_INTERVAL_SECONDS = 2
HEALTH_CHECK_NO_TRAFFIC_INTERVAL_SECONDS = 3
HEALTH_CHECK_TIMEOUT_SECONDS = 1
HEALTHY_THRESHOLD = 1  # one good probe brings a (re)started worker into rotation
UNHEALTHY_THRESHOLD = 2  # two failed probes take it out; one slow probe does not
MAX_DOWNSTREAM_CONNECTIONS = 10_000
OUTLIER_CONSECUTIVE_5XX = 5
OUTLIER_CONSECUTIVE_GATEWAY_FAILURES = 3
OUTLIER_INTERVAL_SECONDS = 5
OUTLIER_BASE_EJECTION_SECONDS = 15
CIRCUIT_MAX_CONNECTIONS = 1024
CIRCUIT_MAX_PENDING_REQUESTS = 1024
CIRCUIT_MAX_REQUESTS = 4096
CIRCUIT_MAX_RETRIES = 32
# Retried when the RPC is idempotent, even if the request reached a backend.
IDEMPOTENT_RETRY_ON = "connect-failure,refused-stream,unavailable,reset"
# Always safe: the request never reached a backend.
SAFE_RETRY_ON = "connect-failure,refused-stream"

TRANSCODER_FILTER = "envoy.filters.http.grpc_json_transcoder"
MAX_DIRECT_RESPONSE_BYTES = 4 * 1024 * 1024

HEALTH_SERVICE = "grpc.health.v1.Health"
# grpcio-reflection serves v1alpha only; grpcurl 1.8 asks v1alpha, newer tools ask v1 first.
REFLECTION_SERVICES = (
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)
REFLECTION_CLUSTER = "grpc_reflection"
OTEL_CLUSTER = "opentelemetry_collector"
_RESERVED_CLUSTERS = frozenset({REFLECTION_CLUSTER, OTEL_CLUSTER})
_CLUSTER_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
_SERVICE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")

CORS_ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
# x-grpc-web, x-user-agent, grpc-timeout: what grpc-web clients send. The merchant header is
# deliberately absent: the gateway derives it from the verified token (see tenancy.py).
CORS_ALLOW_HEADERS = (
    "authorization, content-type, x-grpc-web, x-user-agent, grpc-timeout, x-request-id, "
    "traceparent, tracestate"
)
# gRPC-Web clients read the status from these (browsers hide non-exposed headers).
CORS_EXPOSE_HEADERS = "grpc-status, grpc-message, grpc-status-details-bin, x-request-id"
CORS_MAX_AGE_SECONDS = 86_400

# Where the backend's gRPC status of a REST call is kept for the access log (see below).
GRPC_STATUS_METADATA_NAMESPACE = "loyalnest.gateway"
GRPC_STATUS_METADATA_KEY = "upstream_grpc_status"
_RECORD_STATUS_LUA = f"""\
  local status = headers:get("grpc-status")
  if status ~= nil then
    response_handle:streamInfo():dynamicMetadata():set(
      "{GRPC_STATUS_METADATA_NAMESPACE}", "{GRPC_STATUS_METADATA_KEY}", status)
  end
"""

# REST responses must not carry grpc-* headers. The transcoder copies grpc-status/grpc-message
# into the headers of every unary REST response and passes the backend's other grpc-* headers
# (grpc-accept-encoding, ...) through; native gRPC and gRPC-Web clients need those headers, and
# REST and gRPC share routes, so no per-route or virtual-host removal can tell them apart (and
# route-level response header removal runs in the router, before the transcoder adds its copies
# on the way back). This filter sits in front of the transcoder, so on the response path it
# runs after it, and strips every grpc-* header only from responses that are no longer gRPC:
# the transcoder sets application/json (or an HttpBody's own type) on every response it
# transcodes, native gRPC keeps application/grpc*, and gRPC-Web responses are still
# application/grpc here (the grpc_web filter converts them after us). A response without
# content-type is left alone (a gRPC Trailers-Only response must keep its status).
# Scope: response headers. HTTP/1.1 REST clients never receive trailers; an HTTP/2 REST client
# may still get grpc-status as a trailer of a successful unary response.
# A successful REST answer whose service sent this response header (gRPC initial metadata)
# becomes a 302 to its value: the transcoder itself answers every success with 200 (e.g.
# Referrals' click endpoint, GET /v1/api/referrals/click/{code}). Only services set it.
REDIRECT_HEADER = "x-loyalnest-redirect"
HIDE_GRPC_HEADERS_LUA = f"""\
function envoy_on_response(response_handle)
  local headers = response_handle:headers()
  local content_type = headers:get("content-type")
  if content_type == nil or string.sub(content_type, 1, 16) == "application/grpc" then
    return
  end
{_RECORD_STATUS_LUA}  local grpc_headers = {{}}
  for key, _ in pairs(headers) do
    if string.sub(key, 1, 5) == "grpc-" then
      grpc_headers[#grpc_headers + 1] = key
    end
  end
  for _, key in ipairs(grpc_headers) do
    headers:remove(key)
  end
  local redirect = headers:get("{REDIRECT_HEADER}")
  if redirect ~= nil then
    headers:remove("{REDIRECT_HEADER}")
    headers:replace(":status", "302")
    headers:replace("location", redirect)
  end
end
"""

# gRPC metadata keys are lowercase letters, digits and `-_.`; HTTP header names may also hold
# `!#$%&'*+^`|~`. A backend's gRPC server refuses a call carrying such a key as INTERNAL
# ("Illegal header key"), which the transcoder turns into a 500 for REST callers. No service
# reads such a header, so the gateway drops it before anything else sees it (pseudo-headers,
# `:path` and the like, are kept).
DROP_INVALID_METADATA_LUA = """\
function envoy_on_request(request_handle)
  local headers = request_handle:headers()
  local invalid = {}
  for key, _ in pairs(headers) do
    if string.sub(key, 1, 1) ~= ":" and string.find(key, "[^0-9a-z_%.%-]") ~= nil then
      invalid[#invalid + 1] = key
    end
  end
  for _, key in ipairs(invalid) do
    headers:remove(key)
  end
end
"""

# Behind the transcoder (so before it on the response path): a Trailers-Only gRPC response
# (how errors usually come back) still has the backend's grpc-status in its headers here; the
# transcoder drops it once it has turned it into the HTTP code and the JSON body.
RECORD_GRPC_STATUS_LUA = f"""\
function envoy_on_response(response_handle)
  local headers = response_handle:headers()
{_RECORD_STATUS_LUA}end
"""

# One JSON object per request. The transcoder rewrites :method/:path to the gRPC call and keeps
# the client's in x-envoy-original-method/-path, so `method`/`path` are what the client sent
# and `grpc_method` is the RPC it reached. `grpc_status` is what the client saw: exact for
# native gRPC and gRPC-Web; for REST Envoy derives it from the HTTP code (404 -> 12), so REST
# calls also log the backend's own code as `upstream_grpc_status` (recorded by the Lua filters;
# null for native gRPC successes, whose status travels in trailers).
ACCESS_LOG_FORMAT: dict[str, str] = {
    "start_time": "%START_TIME%",
    "method": "%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "grpc_method": "%REQ(:PATH)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "grpc_status": "%GRPC_STATUS(NUMBER)%",
    "upstream_grpc_status": (
        f"%DYNAMIC_METADATA({GRPC_STATUS_METADATA_NAMESPACE}:{GRPC_STATUS_METADATA_KEY})%"
    ),
    "response_flags": "%RESPONSE_FLAGS%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "duration_ms": "%DURATION%",
    "upstream_service_time_ms": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_host": "%UPSTREAM_HOST%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "user_agent": "%REQ(USER-AGENT)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "trace_id": "%TRACE_ID%",
}


def _check_endpoint(endpoint: tuple[str, int], what: str) -> None:
    host, port = endpoint
    if not host or not 0 < port < 65536:
        raise ValueError(f"{what}: invalid endpoint {host}:{port}")


@dataclass(frozen=True)
class Upstream:
    """One backend service = one Envoy cluster; each worker process is one endpoint."""

    service: str  # short name and cluster name, e.g. "points"
    grpc_services: tuple[str, ...]  # e.g. ("loyalnest.points.v1.PointsService",)
    endpoints: tuple[tuple[str, int], ...]  # (host, port) per worker process

    def __post_init__(self) -> None:
        if not _CLUSTER_NAME_RE.match(self.service) or self.service in _RESERVED_CLUSTERS:
            raise ValueError(f"invalid upstream name {self.service!r}")
        if not self.grpc_services:
            raise ValueError(f"upstream {self.service!r} serves no gRPC service")
        for name in self.grpc_services:
            if not _SERVICE_NAME_RE.match(name):
                raise ValueError(f"upstream {self.service!r}: {name!r} is not a qualified name")
        if not self.endpoints:
            raise ValueError(f"upstream {self.service!r} has no endpoints")
        for endpoint in self.endpoints:
            _check_endpoint(endpoint, f"upstream {self.service!r}")
        if len(set(self.endpoints)) != len(self.endpoints):
            raise ValueError(f"upstream {self.service!r} lists an endpoint twice")


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    admin_port: int = 9901
    cors_allowed_origins: tuple[str, ...] = ("http://localhost:5173",)
    descriptor_set_path: Path
    upstreams: tuple[Upstream, ...]
    access_log_path: str = "/dev/stdout"
    otel_collector: tuple[str, int] | None = None  # OTLP/gRPC; tracing at the gateway when set
    # A server that answers reflection for every service in the descriptor set (see
    # loyalnest.gateway.reflection). Unset: reflection goes to the first upstream only.
    reflection_endpoint: tuple[str, int] | None = None
    route_timeout_seconds: int = DEFAULT_ROUTE_TIMEOUT_SECONDS
    # Admin allowlist, JWT, rate limits, body size (see loyalnest.gateway.edge).
    policy: edge.EdgePolicy = field(default_factory=edge.EdgePolicy)
    # The OpenAPI document (loyalnest.gateway.openapi), served at GET /v1/api/openapi.json
    # from this file (Envoy reads it at start); None: not served.
    openapi_path: Path | None = None

    def __post_init__(self) -> None:
        if not self.upstreams:
            raise ValueError("the gateway needs at least one upstream")
        names = [u.service for u in self.upstreams]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate upstream names in {names}")
        owners: dict[str, str] = {}
        for upstream in self.upstreams:
            for name in upstream.grpc_services:
                if name in owners:
                    raise ValueError(
                        f"{name} is served by both {owners[name]!r} and {upstream.service!r}"
                    )
                owners[name] = upstream.service
        if self.otel_collector is not None:
            _check_endpoint(self.otel_collector, "otel_collector")
        if self.reflection_endpoint is not None:
            _check_endpoint(self.reflection_endpoint, "reflection_endpoint")
        if self.route_timeout_seconds <= 0:
            raise ValueError("route_timeout_seconds must be positive")
        limiter = self.policy.rate_limit_upstream
        if limiter is not None and limiter not in names:
            raise ValueError(f"rate_limit_upstream {limiter!r} is not an upstream ({names})")


def upstreams_from_descriptor_set(
    descriptor_set_path: Path,
    endpoints: Mapping[str, Sequence[tuple[str, int]]],
    *,
    root_package: str = "loyalnest",
    require_all: bool = True,
) -> tuple[Upstream, ...]:
    """One Upstream per `<root_package>.<service>.<version>` package that has services,
    e.g. loyalnest.points.v1 -> "points", with the endpoints given for that short name.

    Names in `endpoints` without services are rejected. With `require_all` (the default) so is
    a package without endpoints; otherwise it is left out (a partial local stack), and
    `unserved_services` lists what then has no route."""
    by_name: dict[str, list[str]] = {}
    for package, services in grpc_services_in_descriptor_set(descriptor_set_path).items():
        parts = package.split(".")
        if len(parts) >= 2 and parts[0] == root_package:
            by_name.setdefault(parts[1], []).extend(services)
    missing = sorted(set(by_name) - set(endpoints)) if require_all else []
    unknown = sorted(set(endpoints) - set(by_name))
    if missing or unknown:
        raise ValueError(f"endpoints missing for {missing}; no services for {unknown}")
    return tuple(
        Upstream(name, tuple(services), tuple(endpoints[name]))
        for name, services in by_name.items()
        if name in endpoints
    )


def unserved_services(config: GatewayConfig) -> list[str]:
    """Services in the descriptor set (outside google.*) that no upstream serves: they get no
    route and no transcoding. Worth a warning where the stack is assembled."""
    served = {name for u in config.upstreams for name in u.grpc_services}
    return [
        name
        for name in services_in_descriptor_set(config.descriptor_set_path)
        if name not in served
        and not name.startswith("google.")
        and not name.startswith(SHARED_PACKAGE_PREFIX)
    ]


# --------------------------------------------------------------------------- helpers


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _typed(type_name: str, **fields: Any) -> dict[str, Any]:
    return {"@type": f"type.googleapis.com/{type_name}", **fields}


def _http2_options() -> dict[str, Any]:
    return {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _typed(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            explicit_http_config={
                "http2_protocol_options": {
                    # Notices a dead backend connection without waiting for a request.
                    "connection_keepalive": {"interval": "30s", "timeout": "5s"},
                }
            },
        )
    }


def _cluster(name: str, endpoints: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """An HTTP/2 cluster. IP endpoints: STATIC; host names: STRICT_DNS, which also fits a
    Kubernetes headless Service (one name resolving to every pod)."""
    static = all(_is_ip(host) for host, _ in endpoints)
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC" if static else "STRICT_DNS",
        "connect_timeout": _seconds(CONNECT_TIMEOUT_SECONDS),
        "lb_policy": "ROUND_ROBIN",
        "typed_extension_protocol_options": _http2_options(),
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": _socket_address(host, port)}}
                        for host, port in endpoints
                    ]
                }
            ],
        },
    }
    if not static:
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    return cluster


def _grpc_health_check(service_name: str) -> dict[str, Any]:
    return {
        "timeout": _seconds(HEALTH_CHECK_TIMEOUT_SECONDS),
        "interval": _seconds(HEALTH_CHECK_INTERVAL_SECONDS),
        "no_traffic_interval": _seconds(HEALTH_CHECK_NO_TRAFFIC_INTERVAL_SECONDS),
        "interval_jitter": "0.2s",
        "healthy_threshold": HEALTHY_THRESHOLD,
        "unhealthy_threshold": UNHEALTHY_THRESHOLD,
        "always_log_health_check_failures": True,
        "grpc_health_check": {"service_name": service_name},
    }


def _upstream_cluster(upstream: Upstream) -> dict[str, Any]:
    cluster = _cluster(upstream.service, upstream.endpoints)
    # A worker reports NOT_SERVING for its first service until its dependencies answer.
    # If every endpoint is unhealthy, Envoy's panic mode still routes to them (fail open).
    cluster["health_checks"] = [_grpc_health_check(upstream.grpc_services[0])]
    # A worker whose calls fail in a row (UNAVAILABLE and other 5xx-mapped statuses, resets,
    # timeouts) leaves rotation for a while; at most half of a cluster at once.
    cluster["outlier_detection"] = {
        "consecutive_5xx": OUTLIER_CONSECUTIVE_5XX,
        "consecutive_gateway_failure": OUTLIER_CONSECUTIVE_GATEWAY_FAILURES,
        "interval": _seconds(OUTLIER_INTERVAL_SECONDS),
        "base_ejection_time": _seconds(OUTLIER_BASE_EJECTION_SECONDS),
        "max_ejection_percent": 50,
    }
    # Back-pressure instead of an unbounded queue in front of a slow service; retries are
    # bounded too, so a struggling backend is not hit by a retry storm.
    cluster["circuit_breakers"] = {
        "thresholds": [
            {
                "priority": "DEFAULT",
                "max_connections": CIRCUIT_MAX_CONNECTIONS,
                "max_pending_requests": CIRCUIT_MAX_PENDING_REQUESTS,
                "max_requests": CIRCUIT_MAX_REQUESTS,
                "max_retries": CIRCUIT_MAX_RETRIES,
            }
        ]
    }
    return cluster


def _route(
    name: str,
    match: dict[str, str],
    cluster: str,
    timeout_seconds: float,
    *,
    retry_on: str = SAFE_RETRY_ON,
) -> dict[str, Any]:
    route: dict[str, Any] = {
        "name": name,
        "match": match,
        "route": {
            "cluster": cluster,
            # 0s = no timeout (streams). Otherwise the gateway's deadline.
            "timeout": _seconds(timeout_seconds),
            # Honour a native gRPC client's grpc-timeout, capped by the route's timeout
            # (0s: uncapped).
            "max_stream_duration": {"grpc_timeout_header_max": _seconds(timeout_seconds)},
            # Retries go to another worker where there is one.
            "retry_policy": {
                "retry_on": retry_on,
                "num_retries": 2,
                "retry_host_predicate": [
                    {
                        "name": "envoy.retry_host_predicates.previous_hosts",
                        "typed_config": _typed(
                            "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                        ),
                    }
                ],
                "host_selection_retry_max_attempts": 3,
            },
        },
    }
    if timeout_seconds == 0:
        # A stream's request may never end (reflection is bidirectional): the body limit's
        # buffering would hold it forever. The services' own receive limit still applies.
        route["typed_per_filter_config"] = {edge.BUFFER_FILTER: edge.buffer_disabled()}
    return route


def _method_route(
    service: ServiceInfo,
    method: MethodInfo,
    cluster: str,
    timeout: int,
    reads_skip_global_limit: bool = False,
) -> dict[str, Any] | None:
    """An exact route for an RPC routed unlike its service's default, else None. Reads
    (always idempotent, so always here) skip the global rate limit when Envoy limits them."""
    if not (method.server_streaming or method.idempotent or method.timeout_seconds):
        return None
    seconds: float = 0 if method.server_streaming else method.timeout_seconds or timeout
    route = _route(
        f"{service.full_name}/{method.name}",
        {"path": service.grpc_path(method.name)},
        cluster,
        seconds,
        retry_on=IDEMPOTENT_RETRY_ON if method.idempotent else SAFE_RETRY_ON,
    )
    if reads_skip_global_limit and method.read_only:
        route.setdefault("typed_per_filter_config", {})[edge.RATE_LIMIT_FILTER] = (
            edge.global_limit_ignored()
        )
    return route


def _service_routes(
    service: ServiceInfo, cluster: str, timeout: int, reads_skip_global_limit: bool = False
) -> list[dict[str, Any]]:
    routes = [
        route
        for method in service.methods
        if (route := _method_route(service, method, cluster, timeout, reads_skip_global_limit))
        is not None
    ]
    routes.append(_route(service.full_name, {"prefix": service.grpc_path_prefix}, cluster, timeout))
    return routes


def _infrastructure_routes(config: GatewayConfig) -> list[dict[str, Any]]:
    """grpc.health.v1 and server reflection, so `grpcurl -plaintext <gateway> list` works.

    Envoy routes a call to one cluster by its path; it cannot fan a reflection stream out to
    every backend and merge the answers. Without `reflection_endpoint` reflection (and health)
    goes to the first upstream, so `list` shows only that backend's services. With it,
    reflection goes to a server that answers for the whole descriptor set. Health always goes to
    the first upstream: `Check(service="")` through the gateway tells whether *that* backend is
    up; per-service health is what Envoy's own active health checks (and /clusters) report.
    """
    first = config.upstreams[0].service
    reflection = REFLECTION_CLUSTER if config.reflection_endpoint else first
    timeout = config.route_timeout_seconds
    routes = [
        _route(f"{HEALTH_SERVICE}/Watch", {"path": f"/{HEALTH_SERVICE}/Watch"}, first, 0),
        _route(HEALTH_SERVICE, {"prefix": f"/{HEALTH_SERVICE}/"}, first, timeout),
    ]
    routes += [_route(name, {"prefix": f"/{name}/"}, reflection, 0) for name in REFLECTION_SERVICES]
    return routes


def _catch_all_route(config: GatewayConfig) -> dict[str, Any]:
    """The last route: it matches what no gRPC route does.

    Filters before the transcoder (CORS) see the REST path, which no gRPC route matches; with
    no route, or a direct_response route (no route entry), the CORS filter does nothing and a
    preflight would reach the transcoder (404). This forwarding route gives them the virtual
    host's policy. After transcoding the route is chosen again, so REST calls never end here;
    unknown REST paths get the transcoder's 404 (reject_unknown_method). What does reach the
    router on this route is native gRPC / gRPC-Web for a service no upstream serves: a real gRPC
    server answers it with UNIMPLEMENTED (the reflection server when there is one, which has no
    business logic, else the first upstream).
    """
    cluster = REFLECTION_CLUSTER if config.reflection_endpoint else config.upstreams[0].service
    route = _route("unknown_service", {"prefix": "/"}, cluster, config.route_timeout_seconds)
    del route["route"]["retry_policy"]
    return route


def _openapi_route(path: Path) -> dict[str, Any]:
    """GET /v1/api/openapi.json answered by Envoy from the file. The transcoder is off on this
    route (it would answer 404: no RPC is bound there); jwt_rules lets it through without a
    token."""
    return {
        "name": "openapi",
        "match": {
            "path": OPENAPI_PATH,
            "headers": [{"name": ":method", "string_match": {"exact": "GET"}}],
        },
        "direct_response": {"status": 200, "body": {"filename": str(path)}},
        "response_headers_to_add": [
            {
                "header": {"key": "content-type", "value": "application/json"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            },
            {
                "header": {"key": "cache-control", "value": "public, max-age=300"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            },
        ],
        "typed_per_filter_config": {
            TRANSCODER_FILTER: _typed("envoy.config.route.v3.FilterConfig", disabled=True)
        },
    }


def _cors_policy(config: GatewayConfig) -> dict[str, Any]:
    return _typed(
        "envoy.extensions.filters.http.cors.v3.CorsPolicy",
        allow_origin_string_match=[{"exact": origin} for origin in config.cors_allowed_origins],
        allow_methods=CORS_ALLOW_METHODS,
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
        max_age=str(CORS_MAX_AGE_SECONDS),
    )


def _transcoder(config: GatewayConfig, services: Sequence[str]) -> dict[str, Any]:
    return {
        "name": TRANSCODER_FILTER,
        "typed_config": _typed(
            "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
            proto_descriptor=str(config.descriptor_set_path.resolve()),
            services=list(services),
            print_options={
                "add_whitespace": False,
                "always_print_primitive_fields": True,
                "always_print_enums_as_ints": False,
                "preserve_proto_field_names": True,
                # Server-streaming RPCs reach browsers as NDJSON (one message per line, sent as
                # it arrives) instead of one JSON array that closes only with the stream.
                "stream_newline_delimited": True,
            },
            # gRPC errors become the HTTP code + a JSON google.rpc.Status with its details
            # (BadRequest, ResourceInfo, ...; their descriptors are in the set).
            convert_grpc_status=True,
            # true gives 404 on every REST call with this route table (DESIGN §8).
            match_incoming_request_route=False,
            request_validation_options={
                "reject_unknown_method": True,
                "reject_unknown_query_parameters": True,
            },
        ),
    }


def _http_filters(config: GatewayConfig, services: Sequence[ServiceInfo]) -> list[dict[str, Any]]:
    return [
        {
            "name": "envoy.filters.http.cors",
            "typed_config": _typed("envoy.extensions.filters.http.cors.v3.Cors"),
        },
        edge.buffer_filter(config.policy),
        {
            "name": "loyalnest.drop_invalid_metadata_headers",
            "typed_config": _typed(
                "envoy.extensions.filters.http.lua.v3.Lua",
                default_source_code={"inline_string": DROP_INVALID_METADATA_LUA},
            ),
        },
        {
            "name": "envoy.filters.http.grpc_web",
            "typed_config": _typed("envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"),
        },
        {
            "name": "loyalnest.hide_grpc_headers_on_rest",
            "typed_config": _typed(
                "envoy.extensions.filters.http.lua.v3.Lua",
                default_source_code={"inline_string": HIDE_GRPC_HEADERS_LUA},
            ),
        },
        _transcoder(config, [service.full_name for service in services]),
        {
            "name": "loyalnest.record_grpc_status",
            "typed_config": _typed(
                "envoy.extensions.filters.http.lua.v3.Lua",
                default_source_code={"inline_string": RECORD_GRPC_STATUS_LUA},
            ),
        },
        *edge.policy_filters(config.policy, services, config.descriptor_set_path),
        {
            "name": "envoy.filters.http.router",
            "typed_config": _typed("envoy.extensions.filters.http.router.v3.Router"),
        },
    ]


def _access_log(config: GatewayConfig) -> list[dict[str, Any]]:
    log_format = {"json_format": ACCESS_LOG_FORMAT}
    if config.access_log_path == "/dev/stdout":
        logger = {
            "name": "envoy.access_loggers.stdout",
            "typed_config": _typed(
                "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                log_format=log_format,
            ),
        }
    else:
        logger = {
            "name": "envoy.access_loggers.file",
            "typed_config": _typed(
                "envoy.extensions.access_loggers.file.v3.FileAccessLog",
                path=config.access_log_path,
                log_format=log_format,
            ),
        }
    return [logger]


def _tracing() -> dict[str, Any]:
    return {
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": _typed(
                "envoy.config.trace.v3.OpenTelemetryConfig",
                grpc_service={"envoy_grpc": {"cluster_name": OTEL_CLUSTER}, "timeout": "0.25s"},
                service_name="loyalnest-gateway",
            ),
        },
        # Sampling follows the caller's traceparent; new traces are all sampled here and
        # thinned by the collector.
        "random_sampling": {"value": 100},
    }


def _connection_manager(config: GatewayConfig, services: dict[str, ServiceInfo]) -> dict[str, Any]:
    timeout = config.route_timeout_seconds
    routes: list[dict[str, Any]] = []
    if config.openapi_path is not None:
        routes.append(_openapi_route(config.openapi_path))
    for upstream in config.upstreams:
        for name in upstream.grpc_services:
            routes += _service_routes(
                services[name],
                upstream.service,
                timeout,
                edge.reads_skip_global_limit(config.policy),
            )
    routes += _infrastructure_routes(config)
    routes.append(_catch_all_route(config))
    transcoded = [services[name] for u in config.upstreams for name in u.grpc_services]
    manager: dict[str, Any] = _typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix="loyalnest_gateway",
        codec_type="AUTO",  # HTTP/1.1 (REST, gRPC-Web) and h2c (native gRPC) on one port
        # Edge proxy: the peer address is the client; X-Forwarded-For is not trusted.
        use_remote_address=True,
        normalize_path=True,
        merge_slashes=True,
        common_http_protocol_options={"headers_with_underscores_action": "REJECT_REQUEST"},
        http2_protocol_options={
            "max_concurrent_streams": 1000,
            "initial_stream_window_size": 65536,
            "initial_connection_window_size": 1048576,
        },
        access_log=_access_log(config),
        # Envoy's own error replies to REST callers as google.rpc.Status JSON (local_replies).
        local_reply_config=local_reply_config(),
        route_config={
            "name": "loyalnest",
            # Envoy's default (4 KiB) is far below the OpenAPI document's size.
            "max_direct_response_body_size_bytes": MAX_DIRECT_RESPONSE_BYTES,
            # The transcoder records the client's method/path in these (the access log reads
            # them); it overwrites a client-sent x-envoy-original-path but only appends to
            # x-envoy-original-method, so client copies are dropped before any filter runs.
            "internal_only_headers": ["x-envoy-original-method", "x-envoy-original-path"],
            "virtual_hosts": [
                {
                    "name": "loyalnest",
                    "domains": ["*"],
                    "routes": routes,
                    "typed_per_filter_config": {"envoy.filters.http.cors": _cors_policy(config)},
                    **(
                        {"rate_limits": limits}
                        if (limits := edge.virtual_host_rate_limits(config.policy))
                        else {}
                    ),
                }
            ],
        },
        http_filters=_http_filters(config, transcoded),
    )
    if config.otel_collector is not None:
        manager["tracing"] = _tracing()
    return manager


def _check_descriptor_set(config: GatewayConfig, services: dict[str, ServiceInfo]) -> None:
    unknown = [name for u in config.upstreams for name in u.grpc_services if name not in services]
    if unknown:
        raise ValueError(f"not in {config.descriptor_set_path}: {unknown} (regenerate protos?)")
    missing = [
        f for f in STATUS_FILES if f not in files_in_descriptor_set(config.descriptor_set_path)
    ]
    if missing:
        raise ValueError(
            f"{config.descriptor_set_path} lacks {missing}: the transcoder could not render "
            "google.rpc.Status details"
        )


def render(config: GatewayConfig) -> dict[str, Any]:
    """The full Envoy v3 bootstrap as plain data (JSON/YAML serialisable)."""
    services = services_in_descriptor_set(config.descriptor_set_path)
    _check_descriptor_set(config, services)
    clusters = [_upstream_cluster(u) for u in config.upstreams]
    if config.reflection_endpoint is not None:
        reflection = _cluster(REFLECTION_CLUSTER, [config.reflection_endpoint])
        reflection["health_checks"] = [_grpc_health_check("")]
        clusters.append(reflection)
    if config.otel_collector is not None:
        clusters.append(_cluster(OTEL_CLUSTER, [config.otel_collector]))
    clusters += edge.policy_clusters(config.policy)
    return {
        "node": {"id": "loyalnest-gateway", "cluster": "loyalnest-gateway"},
        "admin": {"address": _socket_address("127.0.0.1", config.admin_port)},
        "static_resources": {
            "listeners": [
                {
                    "name": "loyalnest_http",
                    "address": _socket_address(config.listen_host, config.listen_port),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": _connection_manager(config, services),
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": clusters,
        },
        # Edge hygiene: without a limit Envoy warns and accepts connections without bound.
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": _typed(
                        "envoy.extensions.resource_monitors.downstream_connections.v3."
                        "DownstreamConnectionsConfig",
                        max_active_downstream_connections=MAX_DOWNSTREAM_CONNECTIONS,
                    ),
                }
            ]
        },
    }


def render_json(config: GatewayConfig) -> str:
    return json.dumps(render(config), indent=2) + "\n"


def write(config: GatewayConfig, dest: Path) -> Path:
    """Writes the bootstrap to `dest` (.json, .yaml or .yml). The text is JSON either way:
    JSON is valid YAML, and Envoy picks its parser by the file extension."""
    if dest.suffix not in {".json", ".yaml", ".yml"}:
        raise ValueError(f"{dest}: Envoy needs a .json, .yaml or .yml file name")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(render_json(config))
    return dest
