"""The gateway's Envoy bootstrap and descriptor set as the Helm chart carries them.

The chart cannot run Python, so the bootstrap is rendered here, by the same generator the local
stack uses (`loyalnest.gateway.render`), and committed under `charts/loyalnest/files/gateway/`
with the descriptor set it was rendered from. What only the release knows is left as tokens
that the chart's `loyalnest.gatewayConfig` template replaces:

    ${NAMESPACE}        in every upstream host:  points.${NAMESPACE}.svc.${CLUSTER_DOMAIN}
    ${CLUSTER_DOMAIN}   (the upstreams are the components' headless Services, so Envoy's
                        STRICT_DNS clusters see every pod and balance per request)
    "${CORS_ORIGINS}"   the whole CORS origin list (a JSON value, quotes included)
    "${OTEL_HOST}"      only in envoy-otel.json, the variant with tracing: the collector
    "${OTEL_PORT}"
    "${TRACE_SAMPLING_PERCENT}" the share of new traces Envoy samples (otel.sampleRatio x 100)
    "${JWT_ISSUER}"     the `iss` the jwt_authn filter accepts (auth.issuer)
    "${ADMIN_CIDRS}"    the RBAC principals allowed to call /admin/ RPCs
                        (gateway.adminAllowedCidrs, each as a direct_remote_ip range)

The edge service (`edge`) answers the `ratelimit` filter's checks, through its upstream cluster.

Every upstream listens on the platform's gRPC port (50051): the Service is headless, so Envoy
connects to pod IPs on the container port and the chart keeps that port fixed.

The `jwt_authn` filter (`loyalnest.gateway.jwt_rules`, as the local stack has it) requires a
token on everything but health, reflection and the RPCs declared public, and fetches the
public JWKS from the Auth service (GET /v1/api/auth/jwks) through the pod's own listener,
refetching it every 30 s in the background (`remote_jwks` + `async_fetch`): a published key
rotation reaches the gateway without a restart. (A `local_jwks` file would be read once, at
start.) The services read the mounted JWKS ConfigMap and re-read it when it changes.

`openapi.json` (the OpenAPI document of the REST surface, `loyalnest.gateway.openapi`) is
rendered from the same descriptor set and mounted beside the bootstrap, which serves it at
`GET /v1/api/openapi.json`.

Two additions that only matter in a pod, made here rather than in the generator:
- the transcoder reads the descriptor set from where the ConfigMap is mounted;
- an `ops` listener on 0.0.0.0:9902 exposes only GET /ready and /stats/prometheus of the admin
  interface, which stays on 127.0.0.1: kubelet probes and Prometheus need those two, and the
  admin API's other endpoints (/quitquitquit, /drain_listeners, runtime changes) must not be
  reachable from the pod network.

`python -m loyalnest.deploy gateway-config [--check]` writes (or checks) the files.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loyalnest.deploy.paths import CHART_DIR
from loyalnest.gateway import openapi
from loyalnest.gateway.descriptors import grpc_services_in_descriptor_set
from loyalnest.gateway.edge import (
    READ_RATE_LIMIT_STAT_PREFIX,
    EdgePolicy,
    JwtProvider,
    ReadRateLimit,
)
from loyalnest.gateway.envoy_config import (
    GatewayConfig,
    render,
    upstreams_from_descriptor_set,
)
from loyalnest.gateway.jwt_rules import GatewayJwks
from loyalnest.gateway.reflection import DEFAULT_DESCRIPTOR_SET

GATEWAY_FILES_DIR = CHART_DIR / "files" / "gateway"
CONFIG_FILE = "envoy.json"
CONFIG_OTEL_FILE = "envoy-otel.json"
# The components the bootstrap routes to; the chart fails to render if one is not enabled.
UPSTREAMS_FILE = "upstreams.json"
DESCRIPTOR_SET_FILE = "loyalnest.binpb"
# The REST API's OpenAPI document (loyalnest.gateway.openapi), served by Envoy from the mount.
OPENAPI_FILE = "openapi.json"

# Where the chart mounts the ConfigMap in the gateway pod (templates/gateway.yaml).
MOUNT_DIR = "/etc/loyalnest/gateway"
# Where it mounts the public JWKS, in the gateway pod and every service pod
# (templates/_helpers.tpl: loyalnest.jwksDir, loyalnest.jwksFile).
JWKS_MOUNT_DIR = "/etc/loyalnest/jwks"
JWKS_FILE = "jwks.json"
JWKS_PATH = f"{JWKS_MOUNT_DIR}/{JWKS_FILE}"
DEFAULT_JWT_ISSUER = "loyalnest-auth"  # values.yaml auth.issuer

GRPC_PORT = 50051  # every component's container port (platform default, fixed by the chart)
LISTEN_PORT = 8080
GATEWAY_JWKS = GatewayJwks(LISTEN_PORT)
ADMIN_PORT = 9901
OPS_PORT = 9902
REFLECTION_PORT = 50060  # the reflection sidecar in the gateway pod
OTEL_DEFAULT_PORT = 4317

NAMESPACE_TOKEN = "${NAMESPACE}"
CLUSTER_DOMAIN_TOKEN = "${CLUSTER_DOMAIN}"
CORS_ORIGINS_TOKEN = "${CORS_ORIGINS}"
OTEL_HOST_TOKEN = "${OTEL_HOST}"
OTEL_PORT_TOKEN = "${OTEL_PORT}"
TRACE_SAMPLING_TOKEN = "${TRACE_SAMPLING_PERCENT}"
JWT_ISSUER_TOKEN = "${JWT_ISSUER}"
ADMIN_CIDRS_TOKEN = "${ADMIN_CIDRS}"
# The per-replica read bucket (values.yaml gateway.readRateLimit).
READ_BURST_TOKEN = "${READ_RATE_LIMIT_BURST}"
READ_RATE_TOKEN = "${READ_RATE_LIMIT_PER_SECOND}"
DEFAULT_READ_RATE_LIMIT = (300, 50)  # values.yaml gateway.readRateLimit: burst, per second
# Rendered into the config, then its principal list replaced by ADMIN_CIDRS_TOKEN.
ADMIN_CIDR_PLACEHOLDER = "192.0.2.0/24"
DEFAULT_ADMIN_CIDRS: tuple[str, ...] = ()  # values.yaml gateway.adminAllowedCidrs
RATE_LIMIT_SERVICE = "edge"

ADMIN_CLUSTER = "envoy_admin"
OPS_PATHS = ("/ready", "/stats/prometheus")


def k8s_name(service: str) -> str:
    """Kubernetes object name of a service: registry names may use `_`, DNS labels may not."""
    return service.replace("_", "-")


def upstream_host(service: str) -> str:
    return f"{k8s_name(service)}.{NAMESPACE_TOKEN}.svc.{CLUSTER_DOMAIN_TOKEN}"


def services_in(descriptor_set: Path) -> list[str]:
    """Short names of the services the gateway routes to (loyalnest.<name>.v1 -> <name>)."""
    names: list[str] = []
    for package in grpc_services_in_descriptor_set(descriptor_set):
        parts = package.split(".")
        if len(parts) >= 2 and parts[0] == "loyalnest" and parts[1] not in names:
            names.append(parts[1])
    return names


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _ops_listener() -> dict[str, Any]:
    routes: list[dict[str, Any]] = [
        {"match": {"path": path}, "route": {"cluster": ADMIN_CLUSTER}} for path in OPS_PATHS
    ]
    routes.append({"match": {"prefix": "/"}, "direct_response": {"status": 404}})
    return {
        "name": "ops",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": OPS_PORT}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network."
                            "http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "ops",
                            "route_config": {
                                "name": "ops",
                                "virtual_hosts": [
                                    {"name": "ops", "domains": ["*"], "routes": routes}
                                ],
                            },
                            "http_filters": [
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions."
                                        "filters.http.router.v3.Router"
                                    },
                                }
                            ],
                        },
                    }
                ]
            }
        ],
    }


def _admin_cluster() -> dict[str, Any]:
    return {
        "name": ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": ADMIN_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": "127.0.0.1",
                                        "port_value": ADMIN_PORT,
                                    }
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }


def render_chart_config(descriptor_set: Path, *, tracing: bool) -> dict[str, Any]:
    """The bootstrap with release-specific values left as tokens (see the module doc)."""
    endpoints = {name: [(upstream_host(name), GRPC_PORT)] for name in services_in(descriptor_set)}
    config = GatewayConfig(
        listen_host="0.0.0.0",
        listen_port=LISTEN_PORT,
        admin_port=ADMIN_PORT,
        # A placeholder origin: replaced below by the token for the whole list.
        cors_allowed_origins=("https://cors.origins.invalid",),
        descriptor_set_path=descriptor_set,
        upstreams=upstreams_from_descriptor_set(descriptor_set, endpoints),
        access_log_path="/dev/stdout",
        # Port placeholder as well: _check_endpoint wants an int; the token replaces it below.
        otel_collector=(OTEL_HOST_TOKEN, OTEL_DEFAULT_PORT) if tracing else None,
        reflection_endpoint=("127.0.0.1", REFLECTION_PORT),
        openapi_path=Path(MOUNT_DIR) / OPENAPI_FILE,
        policy=EdgePolicy(
            jwt=JwtProvider(GATEWAY_JWKS, JWT_ISSUER_TOKEN),
            # A placeholder network: replaced below by the token for the whole list.
            admin_allowed_cidrs=(ADMIN_CIDR_PLACEHOLDER,),
            rate_limit_upstream=RATE_LIMIT_SERVICE,
            # Reads limited in each Envoy replica; the sizes are tokens replaced below.
            read_rate_limit=ReadRateLimit(),
        ),
    )
    bootstrap = render(config)
    mounted_descriptor_set = f"{MOUNT_DIR}/{DESCRIPTOR_SET_FILE}"
    for node in _walk(bootstrap):
        if "proto_descriptor" in node:
            node["proto_descriptor"] = mounted_descriptor_set
        if "allow_origin_string_match" in node:
            node["allow_origin_string_match"] = CORS_ORIGINS_TOKEN
        ids = node.get("ids")
        if isinstance(ids, list) and any("direct_remote_ip" in principal for principal in ids):
            node["ids"] = ADMIN_CIDRS_TOKEN
        address = node.get("socket_address")
        if isinstance(address, dict) and address.get("address") == OTEL_HOST_TOKEN:
            address["port_value"] = OTEL_PORT_TOKEN
        if "random_sampling" in node:
            node["random_sampling"] = {"value": TRACE_SAMPLING_TOKEN}
        if node.get("stat_prefix") == READ_RATE_LIMIT_STAT_PREFIX:
            for descriptor in node["descriptors"]:
                bucket = descriptor["token_bucket"]
                bucket["max_tokens"], bucket["tokens_per_fill"] = READ_BURST_TOKEN, READ_RATE_TOKEN
    resources = bootstrap["static_resources"]
    resources["listeners"].append(_ops_listener())
    resources["clusters"].append(_admin_cluster())
    return bootstrap


def _dump(bootstrap: dict[str, Any]) -> str:
    # Compact: the gateway's ConfigMap (this, the OpenAPI document and the descriptor set) must
    # stay well under Kubernetes' 1 MiB; indentation alone was 40 % of it. `jq .` to read it.
    return json.dumps(bootstrap, separators=(",", ":"), sort_keys=False) + "\n"


def write_files(dest: Path, descriptor_set: Path = DEFAULT_DESCRIPTOR_SET) -> list[Path]:
    """Writes the descriptor set and both bootstrap variants into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    copy = dest / DESCRIPTOR_SET_FILE
    shutil.copyfile(descriptor_set, copy)
    written = [copy]
    for name, tracing in ((CONFIG_FILE, False), (CONFIG_OTEL_FILE, True)):
        path = dest / name
        # Rendered from the copy, so the config and the descriptor set it names cannot differ.
        path.write_text(_dump(render_chart_config(copy, tracing=tracing)))
        written.append(path)
    written.append(openapi.write(copy, dest / OPENAPI_FILE))
    upstreams = dest / UPSTREAMS_FILE
    upstreams.write_text(json.dumps([k8s_name(name) for name in services_in(copy)]) + "\n")
    written.append(upstreams)
    return written


def stale_files(
    chart_files: Path = GATEWAY_FILES_DIR, descriptor_set: Path = DEFAULT_DESCRIPTOR_SET
) -> list[str]:
    """Names of generated files in `chart_files` that differ from a fresh render."""
    with tempfile.TemporaryDirectory() as fresh_dir:
        fresh = Path(fresh_dir)
        stale: list[str] = []
        for path in write_files(fresh, descriptor_set):
            committed = chart_files / path.name
            if not committed.is_file() or committed.read_bytes() != path.read_bytes():
                stale.append(path.name)
        return stale


def substitute(
    text: str,
    *,
    namespace: str,
    cluster_domain: str = "cluster.local",
    cors_origins: tuple[str, ...] = ("http://localhost:5173",),
    otel: tuple[str, int] | None = None,
    trace_sampling_percent: float = 100.0,
    jwt_issuer: str = DEFAULT_JWT_ISSUER,
    admin_cidrs: tuple[str, ...] = DEFAULT_ADMIN_CIDRS,
    read_rate_limit: tuple[int, int] = DEFAULT_READ_RATE_LIMIT,
) -> str:
    """What the chart's template does to the tokens, for tests and tools outside Helm."""
    text = text.replace(NAMESPACE_TOKEN, namespace).replace(CLUSTER_DOMAIN_TOKEN, cluster_domain)
    principals = []
    for cidr in admin_cidrs:
        address, _, length = cidr.partition("/")
        principals.append(
            {"direct_remote_ip": {"address_prefix": address, "prefix_len": int(length)}}
        )
    if not principals:  # nobody: a principal that matches no peer, negated by the policy
        principals.append({"not_id": {"any": True}})
    text = text.replace(json.dumps(ADMIN_CIDRS_TOKEN), json.dumps(principals))
    text = text.replace(json.dumps(JWT_ISSUER_TOKEN), json.dumps(jwt_issuer))
    text = text.replace(json.dumps(READ_BURST_TOKEN), str(read_rate_limit[0]))
    text = text.replace(json.dumps(READ_RATE_TOKEN), str(read_rate_limit[1]))
    origins = json.dumps([{"exact": origin} for origin in cors_origins])
    text = text.replace(json.dumps(CORS_ORIGINS_TOKEN), origins)
    if otel is not None:
        text = text.replace(json.dumps(OTEL_HOST_TOKEN), json.dumps(otel[0]))
        text = text.replace(json.dumps(OTEL_PORT_TOKEN), str(otel[1]))
        text = text.replace(json.dumps(TRACE_SAMPLING_TOKEN), json.dumps(trace_sampling_percent))
    return text
