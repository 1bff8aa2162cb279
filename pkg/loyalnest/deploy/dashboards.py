"""The Grafana dashboards the chart ships (charts/loyalnest/files/dashboards/*.json).

Written here rather than by hand: a dashboard is mostly repetition (datasource, grid positions,
variables), and every query names only metrics the services and Envoy export (tests/deploy/
test_monitoring.py checks each name against the code's metric definitions and a running Envoy,
and each expression with promtool). `make chart` regenerates them; the chart ships each as a
ConfigMap labelled for Grafana's dashboard sidecar (monitoring.dashboards).

Queries write every selector with braces (`metric{...}`): the checks read metric names as the
identifiers before `{`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loyalnest.deploy.paths import CHART_DIR

DASHBOARDS_DIR = CHART_DIR / "files" / "dashboards"
NS = 'namespace="$namespace"'
API = f'{NS},grpc_service=~"loyalnest\\\\..*"'
SERVER_ERRORS = 'grpc_code=~"UNKNOWN|INTERNAL|UNAVAILABLE|DATA_LOSS|DEADLINE_EXCEEDED"'


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[tuple[str, str], ...]  # (expr, legend)
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    # Extra template variables (name, query) after datasource and namespace.
    variables: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def _variable(name: str, query: str, *, multi: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "includeAll": multi,
        "multi": multi,
        "allValue": ".*" if multi else None,
        "current": {},
        "sort": 1,
    }


def render(dashboard: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    next_id = 1
    for row in dashboard.rows:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        for index, panel in enumerate(row.panels):
            x = (index % 3) * 8
            if index and index % 3 == 0:
                y += 8
            panels.append(
                {
                    "id": next_id,
                    "type": panel.kind,
                    "title": panel.title,
                    "description": panel.description,
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "gridPos": {"h": 8, "w": 8, "x": x, "y": y},
                    "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                    "options": {"legend": {"displayMode": "table", "placement": "bottom"}},
                    "targets": [
                        {
                            "refId": chr(ord("A") + i),
                            "expr": expr,
                            "legendFormat": legend,
                            "datasource": {"type": "prometheus", "uid": "${datasource}"},
                        }
                        for i, (expr, legend) in enumerate(panel.queries)
                    ],
                }
            )
            next_id += 1
        y += 8
    variables = [
        {
            "name": "datasource",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        },
        _variable("namespace", "label_values(grpc_server_handled_total, namespace)", multi=False),
        *(_variable(name, query) for name, query in dashboard.variables),
    ]
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["loyalnest"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables},
        "panels": panels,
    }


def _rate(metric: str, selector: str, by: str) -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}[$__rate_interval]))"


_RPC = f'{API},grpc_service=~"$service"'
_BY_RPC = "grpc_service, grpc_method"

SERVICES = Dashboard(
    uid="loyalnest-services",
    title="LoyalNest / Services (RED)",
    description="Rate, errors and duration of every service's gRPC methods (grpc_server_*), "
    "and the gateway's requests (Envoy).",
    variables=(
        (
            "service",
            f'label_values(grpc_server_handled_total{{{NS},grpc_service=~"loyalnest\\\\..*"}}, '
            "grpc_service)",
        ),
    ),
    rows=(
        Row(
            "Per service",
            (
                Panel(
                    "Requests per second",
                    (
                        (
                            _rate("grpc_server_handled_total", _RPC, "grpc_service"),
                            "{{grpc_service}}",
                        ),
                    ),
                    unit="reqps",
                ),
                Panel(
                    "Server-error ratio",
                    (
                        (
                            _rate(
                                "grpc_server_handled_total",
                                f"{_RPC},{SERVER_ERRORS}",
                                "grpc_service",
                            )
                            + " / "
                            + _rate("grpc_server_handled_total", _RPC, "grpc_service"),
                            "{{grpc_service}}",
                        ),
                    ),
                    unit="percentunit",
                    description="UNKNOWN, INTERNAL, UNAVAILABLE, DATA_LOSS, DEADLINE_EXCEEDED: "
                    "what spends the availability SLO's budget.",
                ),
                Panel(
                    "p99 latency (unary)",
                    (
                        (
                            "histogram_quantile(0.99, "
                            + _rate(
                                "grpc_server_handling_seconds_bucket",
                                f'{_RPC},grpc_type="unary"',
                                "grpc_service, le",
                            )
                            + ")",
                            "{{grpc_service}}",
                        ),
                    ),
                    unit="s",
                ),
            ),
        ),
        Row(
            "Per RPC",
            (
                Panel(
                    "Requests per second by status",
                    (
                        (
                            _rate("grpc_server_handled_total", _RPC, f"{_BY_RPC}, grpc_code"),
                            "{{grpc_method}} {{grpc_code}}",
                        ),
                    ),
                    unit="reqps",
                ),
                Panel(
                    "Server errors per second",
                    (
                        (
                            _rate(
                                "grpc_server_handled_total",
                                f"{_RPC},{SERVER_ERRORS}",
                                f"{_BY_RPC}, grpc_code",
                            ),
                            "{{grpc_method}} {{grpc_code}}",
                        ),
                    ),
                    unit="reqps",
                ),
                Panel(
                    "p50 / p99 latency (unary)",
                    tuple(
                        (
                            f"histogram_quantile({q}, "
                            + _rate(
                                "grpc_server_handling_seconds_bucket",
                                f'{_RPC},grpc_type="unary"',
                                f"{_BY_RPC}, le",
                            )
                            + ")",
                            f"{{{{grpc_method}}}} p{int(q * 100)}",
                        )
                        for q in (0.5, 0.99)
                    ),
                    unit="s",
                ),
            ),
        ),
        Row(
            "Gateway (Envoy)",
            (
                Panel(
                    "Requests per second by response class",
                    (
                        (
                            _rate(
                                "envoy_http_downstream_rq_xx",
                                f'{NS},envoy_http_conn_manager_prefix="loyalnest_gateway"',
                                "envoy_response_code_class",
                            ),
                            "{{envoy_response_code_class}}xx",
                        ),
                    ),
                    unit="reqps",
                ),
                Panel(
                    "Upstream requests per second by service",
                    (
                        (
                            _rate(
                                "envoy_cluster_upstream_rq_total",
                                NS,
                                "envoy_cluster_name",
                            ),
                            "{{envoy_cluster_name}}",
                        ),
                    ),
                    unit="reqps",
                ),
                Panel(
                    "Downstream p99 latency",
                    (
                        (
                            "histogram_quantile(0.99, "
                            + _rate(
                                "envoy_http_downstream_rq_time_bucket",
                                f'{NS},envoy_http_conn_manager_prefix="loyalnest_gateway"',
                                "le",
                            )
                            + ")",
                            "p99",
                        ),
                    ),
                    unit="ms",
                ),
            ),
        ),
    ),
)

EVENTS = Dashboard(
    uid="loyalnest-events",
    title="LoyalNest / Events (Kafka, outbox, ledger)",
    description="Consumer lag, outbox backlog and age, dead letters, event delivery time, and the "
    "points ledger's anomalies.",
    rows=(
        Row(
            "Consumers",
            (
                Panel(
                    "Consumer lag (records)",
                    (
                        (
                            f"sum by (group, topic) (loyalnest_consumer_lag{{{NS}}})",
                            "{{group}} {{topic}}",
                        ),
                    ),
                ),
                Panel(
                    "Events processed per second by outcome",
                    (
                        (
                            _rate("loyalnest_events_processed_total", NS, "group, outcome"),
                            "{{group}} {{outcome}}",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Failed attempts per second by kind",
                    (
                        (
                            _rate("loyalnest_events_failed_total", NS, "group, kind"),
                            "{{group}} {{kind}}",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Dead-lettered (15 min)",
                    (
                        (
                            "sum by (group, topic) (increase(loyalnest_events_processed_total"
                            f'{{{NS},outcome="dead_lettered"}}[15m]))',
                            "{{group}} {{topic}}",
                        ),
                    ),
                ),
                Panel(
                    "Event delivery p99 (occurred_at to committed)",
                    (
                        (
                            "histogram_quantile(0.99, "
                            + _rate("loyalnest_event_delivery_seconds_bucket", NS, "group, le")
                            + ")",
                            "{{group}}",
                        ),
                    ),
                    unit="s",
                ),
            ),
        ),
        Row(
            "Outbox",
            (
                Panel(
                    "Outbox backlog (rows)",
                    ((f"max by (schema) (loyalnest_outbox_backlog{{{NS}}})", "{{schema}}"),),
                ),
                Panel(
                    "Oldest unpublished event",
                    (
                        (
                            f"max by (schema) (loyalnest_outbox_oldest_pending_seconds{{{NS}}})",
                            "{{schema}}",
                        ),
                    ),
                    unit="s",
                ),
                Panel(
                    "Published / failed batches per second",
                    (
                        (_rate("loyalnest_outbox_published_total", NS, "schema"), "{{schema}}"),
                        (
                            _rate("loyalnest_outbox_publish_failures_total", NS, "schema"),
                            "{{schema}} failed",
                        ),
                    ),
                    unit="ops",
                ),
            ),
        ),
        Row(
            "Points ledger",
            (
                Panel(
                    "Orders recorded per second by outcome",
                    ((_rate("loyalnest_points_orders_total", NS, "outcome"), "{{outcome}}"),),
                    unit="ops",
                ),
                Panel(
                    "Points refunds could not take back (1 h)",
                    (
                        (
                            "sum (increase(loyalnest_points_order_reversal_shortfall_points_total"
                            f"{{{NS}}}[1h]))",
                            "points",
                        ),
                    ),
                    description="A refund or cancellation of points the customer had already "
                    "spent: each is a liability the merchant carries.",
                ),
                Panel(
                    "Open StreamPoints calls",
                    ((f"sum by (pod) (loyalnest_points_streams_open{{{NS}}})", "{{pod}}"),),
                ),
            ),
        ),
    ),
)

EDGE = Dashboard(
    uid="loyalnest-edge",
    title="LoyalNest / Edge (webhooks, rate limits)",
    description="Shopify webhook intake and the gateway's rate-limit decisions (edge service).",
    rows=(
        Row(
            "Webhook intake",
            (
                Panel(
                    "Deliveries per second by outcome",
                    ((_rate("loyalnest_webhooks_total", NS, "outcome"), "{{outcome}}"),),
                    unit="ops",
                ),
                Panel(
                    "Deliveries per second by topic",
                    ((_rate("loyalnest_webhooks_total", NS, "topic"), "{{topic}}"),),
                    unit="ops",
                ),
                Panel(
                    "Delivery lag p99 (Shopify trigger to edge)",
                    (
                        (
                            "histogram_quantile(0.99, "
                            + _rate(
                                "loyalnest_webhook_delivery_lag_seconds_bucket", NS, "topic, le"
                            )
                            + ")",
                            "{{topic}}",
                        ),
                    ),
                    unit="s",
                ),
                Panel(
                    "Stale deliveries per second",
                    ((_rate("loyalnest_webhooks_stale_total", NS, "topic"), "{{topic}}"),),
                    unit="ops",
                ),
            ),
        ),
        Row(
            "Rate limits",
            (
                Panel(
                    "Decisions per second",
                    (
                        (
                            _rate("loyalnest_rate_limit_decisions_total", NS, "plan, decision"),
                            "{{plan}} {{decision}}",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Over-limit share",
                    (
                        (
                            _rate(
                                "loyalnest_rate_limit_decisions_total",
                                f'{NS},decision="over_limit"',
                                "plan",
                            )
                            + " / "
                            + _rate("loyalnest_rate_limit_decisions_total", NS, "plan"),
                            "{{plan}}",
                        ),
                    ),
                    unit="percentunit",
                ),
                Panel(
                    "Checks Redis could not answer",
                    (
                        (
                            _rate("loyalnest_rate_limit_redis_failures_total", NS, "decision"),
                            "{{decision}}",
                        ),
                    ),
                    unit="ops",
                ),
            ),
        ),
    ),
)

DASHBOARDS = (SERVICES, EVENTS, EDGE)


def texts() -> dict[Path, str]:
    return {
        DASHBOARDS_DIR / f"{d.uid}.json": json.dumps(render(d), indent=2) + "\n" for d in DASHBOARDS
    }


def expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a rendered dashboard (panel targets)."""
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
