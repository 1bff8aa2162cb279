"""Alerts and dashboards shipped with the chart, checked offline.

- The PrometheusRule as rendered: `promtool check rules` parses every expression, and
  `promtool test rules` makes every alert fire from input series that use only metric names
  the code exports (so an alert on a misspelt or vanished metric cannot pass).
- The dashboards: every query parses (promtool, as recording rules) and names only metrics the
  services define (prometheus_client definitions in pkg/loyalnest) or a real Envoy running the
  chart's gateway config serves on /stats/prometheus.
- Every runbook_url points to a runbook section of the README.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from loyalnest.deploy import dashboards, gateway_chart, helm
from loyalnest.deploy.helm import MONITORING_API, Render
from loyalnest.deploy.paths import REPO, tool
from loyalnest.devstack.ports import free_port
from loyalnest.gateway.envoy_binary import find_envoy
from tests.deploy.conftest import Objects, find, parse
from tests.deploy.test_gateway import _bootstrap

# cert-manager's own metric (its controller exports it), the only one not ours or Envoy's.
EXTERNAL = {"certmanager_certificate_expiration_timestamp_seconds"}
_DEFINITION = re.compile(r"\b(Counter|Gauge|Histogram)\(\s*\"([a-zA-Z_:][a-zA-Z0-9_:]*)\"")
# Metric names in an expression: selectors are written metric{...} (loyalnest.deploy.dashboards).
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{")


def python_metrics() -> set[str]:
    """The series names of every prometheus_client metric defined in pkg/loyalnest."""
    names: set[str] = set()
    for path in (REPO / "pkg" / "loyalnest").rglob("*.py"):
        for kind, name in _DEFINITION.findall(path.read_text()):
            if kind == "Counter":
                names.add(name if name.endswith("_total") else f"{name}_total")
            elif kind == "Histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            else:
                names.add(name)
    return names


@pytest.fixture(scope="module")
def envoy_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    """The metric names Envoy serves with the chart's gateway config (after one request)."""
    tmp_path = tmp_path_factory.mktemp("envoy")
    objects = parse(helm.template(Render()))
    bootstrap, _ = _bootstrap(objects, tmp_path)
    ports = {8080: free_port(), 9902: free_port(), 9901: free_port()}
    for node in gateway_chart._walk(bootstrap):
        address = node.get("socket_address")
        if isinstance(address, dict) and address.get("port_value") in ports:
            address["port_value"] = ports[address["port_value"]]
    config = tmp_path / "envoy.json"
    config.write_text(json.dumps(bootstrap))
    envoy = subprocess.Popen(
        [str(find_envoy()), "--config-path", str(config), "--disable-hot-restart"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{ports[8080]}/v1/api/openapi.json", timeout=2
                ) as response:
                    response.read()
                break
            except OSError:
                assert envoy.poll() is None and time.monotonic() < deadline, "Envoy did not start"
                time.sleep(0.2)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{ports[9901]}/stats/prometheus", timeout=5
        ) as response:
            text = response.read().decode()
        yield {
            line.split("{", 1)[0].split(" ", 1)[0]
            for line in text.splitlines()
            if line and not line.startswith("#")
        }
    finally:
        envoy.terminate()
        envoy.wait(10)


def _rule_groups(overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    objects = parse(
        helm.template(Render(overrides=overrides or {}, api_versions=(MONITORING_API,)))
    )
    groups: list[dict[str, Any]] = find(objects, "PrometheusRule", "loyalnest")["spec"]["groups"]
    return groups


WATCHED = {"monitoring": {"certManagerCertificates": ["gateway-tls"]}}


def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": _rule_groups(WATCHED)}))
    result = subprocess.run(
        [str(tool("promtool")), "check", "rules", str(rules)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_rules_without_the_operators_api() -> None:
    assert not [o for o in parse(helm.template(Render())) if o["kind"] == "PrometheusRule"]


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {"series": f"{name}{{{inner}}}", "values": values}


NS = {"namespace": "loyalnest"}
RPC = {**NS, "grpc_service": "loyalnest.points.v1.PointsService", "grpc_method": "EarnPoints"}
UNARY = {**RPC, "grpc_type": "unary"}


def _alert_cases() -> list[tuple[str, list[dict[str, str]], str, dict[str, str]]]:
    """(alert, input series, when it must be firing, labels it fires with)."""
    ok = _series("grpc_server_handled_total", {**UNARY, "grpc_code": "OK"}, "0+60x500")
    # 30 of 690 calls a minute (4 %) fail on the server's side: above both burn-rate
    # thresholds of a 99.9 % SLO (1.44 %, 0.6 %).
    failing = _series("grpc_server_handled_total", {**UNARY, "grpc_code": "INTERNAL"}, "0+30x500")
    # Client errors never spend the budget: a flood of INVALID_ARGUMENT must not page.
    client = _series(
        "grpc_server_handled_total", {**UNARY, "grpc_code": "INVALID_ARGUMENT"}, "0+600x500"
    )
    by_rpc = {"grpc_service": RPC["grpc_service"], "grpc_method": RPC["grpc_method"]}
    slow = [
        _series("grpc_server_handling_seconds_bucket", {**UNARY, "le": le}, values)
        for le, values in (("0.1", "0+1x100"), ("1", "0+1x100"), ("+Inf", "0+100x100"))
    ]
    lag = {**NS, "group": "points", "topic": "webhook.received", "partition": "0"}
    dead = {**NS, "group": "points", "topic": "webhook.received", "event_type": "orders/paid"}
    return [
        ("LoyalNestRPCErrorBudgetBurnFast", [ok, failing, client], "70m", by_rpc),
        ("LoyalNestRPCErrorBudgetBurnSlow", [ok, failing, client], "400m", by_rpc),
        ("LoyalNestRPCLatencyHigh", slow, "30m", by_rpc),
        (
            "LoyalNestConsumerLagHigh",
            [_series("loyalnest_consumer_lag", lag, "5000x60")],
            "20m",
            {"group": "points", "topic": "webhook.received"},
        ),
        (
            "LoyalNestOutboxStuck",
            [
                _series(
                    "loyalnest_outbox_oldest_pending_seconds", {**NS, "schema": "points"}, "0+60x60"
                )
            ],
            "20m",
            {"schema": "points"},
        ),
        (
            "LoyalNestDeadLettersGrowing",
            [
                _series(
                    "loyalnest_events_processed_total",
                    {**dead, "outcome": "dead_lettered"},
                    "0+1x60",
                )
            ],
            "30m",
            {"group": "points", "topic": "webhook.received"},
        ),
        (
            "LoyalNestWebhooksDeadLettered",
            [
                _series(
                    "loyalnest_webhooks_total",
                    {**NS, "topic": "orders/paid", "outcome": "dead_lettered"},
                    "0+1x60",
                )
            ],
            "30m",
            {"topic": "orders/paid"},
        ),
        (
            "LoyalNestGatewayCertificateExpiring",
            [
                _series(
                    "envoy_server_days_until_first_cert_expiring",
                    {**NS, "pod": "gateway-0"},
                    "5x200",
                )
            ],
            "90m",
            {"pod": "gateway-0"},
        ),
        (
            "LoyalNestCertificateExpiring",
            [
                _series(
                    "certmanager_certificate_expiration_timestamp_seconds",
                    {"exported_namespace": "loyalnest", "name": "gateway-tls"},
                    f"{3 * 86400}x200",
                )
            ],
            "90m",
            {"name": "gateway-tls"},
        ),
    ]


def test_every_alert_fires_from_exported_metrics(tmp_path: Path, envoy_metrics: set[str]) -> None:
    groups = _rule_groups(WATCHED)
    alerts = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    cases = _alert_cases()
    assert {name for name, *_ in cases} == set(alerts), "an alert without a firing test"
    known = python_metrics() | envoy_metrics | EXTERNAL
    tests = []
    for name, series, at, labels in cases:
        for s in series:
            metric = s["series"].split("{", 1)[0]
            assert metric in known, f"{name}: {metric} is exported by nothing"
        rule = alerts[name]
        tests.append(
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": at,
                        "alertname": name,
                        "exp_alerts": [
                            {
                                "exp_labels": {**labels, **rule["labels"]},
                                "exp_annotations": None,
                            }
                        ],
                    }
                ],
            }
        )
    # Annotations are templates of the firing values (their syntax is promtool check's):
    # compare the labels only, on a copy of the rules without them.
    for test in tests:
        for case in test["alert_rule_test"]:
            for expected in case["exp_alerts"]:
                del expected["exp_annotations"]
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    result = subprocess.run(
        [str(tool("promtool")), "test", "rules", "tests.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_stay_quiet_when_all_is_well(tmp_path: Path) -> None:
    """Healthy traffic (client errors included), no lag, an empty outbox: nothing fires."""
    groups = _rule_groups()
    series = [
        _series("grpc_server_handled_total", {**UNARY, "grpc_code": "OK"}, "0+60x500"),
        _series("grpc_server_handled_total", {**UNARY, "grpc_code": "NOT_FOUND"}, "0+60x500"),
        _series(
            "loyalnest_consumer_lag", {**NS, "group": "g", "topic": "t", "partition": "0"}, "3x500"
        ),
        _series("loyalnest_outbox_oldest_pending_seconds", {**NS, "schema": "points"}, "0x500"),
    ]
    alerts = [r["alert"] for g in groups for r in g["rules"] if "alert" in r]
    tests = [
        {
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": "400m", "alertname": name, "exp_alerts": []} for name in alerts
            ],
        }
    ]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    result = subprocess.run(
        [str(tool("promtool")), "test", "rules", "tests.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _github_anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_alert_links_a_runbook_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    anchors = {
        _github_anchor(line.lstrip("#")) for line in readme.splitlines() if line.startswith("#")
    }
    for group in _rule_groups(WATCHED):
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            url = rule["annotations"]["runbook_url"]
            assert url.startswith("README.md#runbook-"), url
            assert url.split("#", 1)[1] in anchors, f"{rule['alert']}: no README section {url}"


# ----------------------------------------------------------------------------- dashboards


def test_dashboards_are_generated() -> None:
    for path, text in dashboards.texts().items():
        assert path.is_file() and path.read_text() == text, "run `make chart`"


def test_dashboards_ship_as_configmaps_for_grafanas_sidecar() -> None:
    objects = parse(helm.template(Render()))
    maps = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")
    ]
    assert {m["metadata"]["name"] for m in maps} == {
        f"{d.uid}-dashboard" for d in dashboards.DASHBOARDS
    }
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["annotations"]["grafana_folder"] == "LoyalNest"
        (text,) = config_map["data"].values()
        assert json.loads(text)["uid"] in config_map["metadata"]["name"]


def _grafana_to_promql(expr: str) -> str:
    """A dashboard query as Prometheus sees it once Grafana put in its variables."""
    return (
        expr.replace("$__rate_interval", "5m")
        .replace("$namespace", "loyalnest")
        .replace("$service", ".*")
    )


def test_dashboard_queries_parse_and_name_exported_metrics(
    tmp_path: Path, envoy_metrics: set[str]
) -> None:
    known = python_metrics() | envoy_metrics
    rules = []
    for dashboard in dashboards.DASHBOARDS:
        rendered = dashboards.render(dashboard)
        for i, expr in enumerate(dashboards.expressions(rendered)):
            names = set(_SELECTOR.findall(expr))
            assert names, f"{dashboard.uid}: no metric in {expr}"
            assert names <= known, f"{dashboard.uid}: {sorted(names - known)} exported by nothing"
            rules.append(
                {
                    "record": f"dashboard:{dashboard.uid.replace('-', '_')}:{i}",
                    "expr": _grafana_to_promql(expr),
                }
            )
        # Variables' queries name exported metrics too.
        for variable in rendered["templating"]["list"]:
            if variable["type"] == "query":
                metric = re.match(
                    r"label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)", variable["definition"]
                )
                assert metric and metric.group(1) in known, variable["definition"]
    path = tmp_path / "dashboards.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [str(tool("promtool")), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The panels the issue asks for: RED per service and RPC, consumer lag, outbox backlog,
    # webhook intake, rate-limit decisions.
    everything = " ".join(
        e for d in dashboards.DASHBOARDS for e in dashboards.expressions(dashboards.render(d))
    )
    for metric in (
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket",
        "loyalnest_consumer_lag",
        "loyalnest_outbox_backlog",
        "loyalnest_webhooks_total",
        "loyalnest_rate_limit_decisions_total",
        "envoy_http_downstream_rq_xx",
    ):
        assert f"{metric}{{" in everything, metric


# ----------------------------------------------------------------------------- otel collector


def _collector_config(objects: Objects) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(
        find(objects, "ConfigMap", "otel-collector")["data"]["config.yaml"]
    )
    return config


def _assert_pipelines_resolve(config: dict[str, Any]) -> None:
    """Every component a pipeline names is defined (the collector refuses to start otherwise)."""
    for pipeline in config["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for name in pipeline.get(kind, []):
                assert name in config[kind], f"{kind}: {name} is not defined"


def test_the_in_chart_collector_receives_every_trace(rendered: dict[str, Objects]) -> None:
    """otelCollector.enabled: services and Envoy send OTLP to it (no host to set), it exports
    to the configured backend, and the policies let exactly that through. Off by default."""
    assert not [o for o in rendered["default"] if o["metadata"]["name"] == "otel-collector"]
    objects = rendered["otel-collector"]
    config = _collector_config(objects)
    _assert_pipelines_resolve(config)
    assert config["exporters"]["otlp"]["endpoint"] == "tempo-distributor.observability.svc:4317"
    host = "otel-collector.loyalnest.svc.cluster.local"
    for name in ("points", "auth"):
        env = {
            e["name"]: e.get("value")
            for e in find(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0][
                "env"
            ]
        }
        assert env["LOYALNEST_OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://{host}:4317"
        egress = find(objects, "NetworkPolicy", name)["spec"]["egress"]
        assert any(
            peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
            == "otel-collector"
            and {"protocol": "TCP", "port": 4317} in rule["ports"]
            for rule in egress
            for peer in rule["to"]
        ), name
    bootstrap = json.loads(find(objects, "ConfigMap", "gateway")["data"]["envoy.json"])
    clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
    endpoint = clusters["opentelemetry_collector"]["load_assignment"]["endpoints"][0]
    assert endpoint["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] == {
        "address": host,
        "port_value": 4317,
    }
    policy = find(objects, "NetworkPolicy", "otel-collector")["spec"]
    assert policy["egress"] == [
        {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "observability"}
                    }
                }
            ],
            "ports": [{"protocol": "TCP", "port": 4317}],
        }
    ]
    # Without an exporter endpoint: the debug exporter, and no egress at all.
    alone = parse(helm.template(Render(overrides={"otelCollector": {"enabled": True}})))
    config = _collector_config(alone)
    _assert_pipelines_resolve(config)
    assert set(config["exporters"]) == {"debug"}
    assert "egress" not in find(alone, "NetworkPolicy", "otel-collector")["spec"]
