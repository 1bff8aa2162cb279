"""A component's outbox relay in pods of its own (componentDefaults.relay.separate): the
`<name>-relay` Deployment runs `loyalnest relay`, the service's pods stop relaying, and the
NetworkPolicies and the ServiceMonitor cover the relay pods. The external-backends render
turns it on for the edge and Referrals (the rehearsal runs those pods); the default keeps
every relay inside its service."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loyalnest.deploy import checks, generate, helm
from loyalnest.deploy.calls import RELAY_CALLS_FILE, relay_call_graph
from loyalnest.deploy.helm import Render
from tests.deploy.conftest import Objects, container, env_of, find

RELAYED = {"edge": 1, "referrals": 2}  # external-backends-values.yaml: component -> replicas


def _rule_peers(rules: list[dict[str, Any]], direction: str, port: int) -> set[str]:
    """The app.kubernetes.io/name of every pod peer of the rules that open `port`."""
    return {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        for rule in rules
        if any(p.get("port") == port for p in rule.get("ports", []))
        for peer in rule.get(direction) or []
        if "app.kubernetes.io/name" in peer.get("podSelector", {}).get("matchLabels", {})
    }


def test_a_separate_relay_runs_loyalnest_relay_and_the_service_stops_relaying(
    rendered: dict[str, Objects],
) -> None:
    objects = rendered["external-backends"]
    assert checks.all_problems(objects) == []
    for name, replicas in RELAYED.items():
        relay = find(objects, "Deployment", f"{name}-relay")
        assert relay["spec"]["replicas"] == replicas
        relay_container = container(objects, "Deployment", f"{name}-relay", "relay")
        assert relay_container["command"] == ["loyalnest", "relay", name]
        service_env = env_of(container(objects, "Deployment", name, name))
        assert service_env["LOYALNEST_OUTBOX_RELAY_IN_PROCESS"] == "false"
        relay_env = env_of(relay_container)
        # The same database, broker, callees and pseudonyms setting as the service's pods.
        for setting in (
            "LOYALNEST_DATABASE_URL",
            "LOYALNEST_KAFKA_BOOTSTRAP_SERVERS",
            "LOYALNEST_KAFKA_PRODUCER",
            "LOYALNEST_CUSTOMER_PSEUDONYMS",
            "LOYALNEST_CALL_TARGETS",
        ):
            assert relay_env.get(setting) == service_env.get(setting), (name, setting)
        service = find(objects, "Service", f"{name}-relay")
        assert {p["name"] for p in service["spec"]["ports"]} == {"grpc", "metrics"}
    others = [
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-relay")
    ]
    assert sorted(others) == sorted(f"{name}-relay" for name in RELAYED)
    points_env = env_of(container(objects, "Deployment", "points", "points"))
    assert "LOYALNEST_OUTBOX_RELAY_IN_PROCESS" not in points_env


def test_by_default_every_service_relays_its_own_outbox(rendered: dict[str, Objects]) -> None:
    for name in ("default", "kind", "prod"):
        for obj in rendered[name]:
            assert not obj["metadata"]["name"].endswith("-relay"), (name, obj["metadata"])
            if obj["kind"] == "Deployment":
                for c in obj["spec"]["template"]["spec"]["containers"]:
                    assert "LOYALNEST_OUTBOX_RELAY_IN_PROCESS" not in env_of(c), name


def test_relay_pods_reach_what_their_service_calls_and_take_no_calls(
    rendered: dict[str, Objects],
) -> None:
    assert generate.call_graph(check=True) == [], "the services' calls changed: `make chart`"
    assert json.loads(RELAY_CALLS_FILE.read_text()) == relay_call_graph()
    objects = rendered["external-backends"]
    policy = find(objects, "NetworkPolicy", "referrals-relay")["spec"]
    # Referrals' relay asks the edge for customer pseudonyms, with a token from Auth; it
    # calls nothing else Referrals calls (Points).
    assert _rule_peers(policy["egress"], "to", 50051) == {"auth", "edge"}
    assert _rule_peers(policy["egress"], "to", 9092) == set()  # brokers are ipBlocks here
    assert any({"protocol": "TCP", "port": 9092} in rule["ports"] for rule in policy["egress"]), (
        "no egress to the brokers"
    )
    assert [port["port"] for rule in policy["ingress"] for port in rule["ports"]] == [9464]
    edge_ingress = find(objects, "NetworkPolicy", "edge")["spec"]["ingress"]
    assert "referrals-relay" in _rule_peers(edge_ingress, "from", 50051)
    points_ingress = find(objects, "NetworkPolicy", "points")["spec"]["ingress"]
    assert "referrals-relay" not in _rule_peers(points_ingress, "from", 50051)
    # The edge's relay reads the pseudonyms from its own database: it calls no one.
    edge_relay = find(objects, "NetworkPolicy", "edge-relay")["spec"]
    assert _rule_peers(edge_relay["egress"], "to", 50051) == set()
    auth_ingress = find(objects, "NetworkPolicy", "auth")["spec"]["ingress"]
    assert "edge-relay" not in _rule_peers(auth_ingress, "from", 50051)
    assert "referrals-relay" in _rule_peers(auth_ingress, "from", 50051)


def test_relay_metrics_are_scraped_and_in_chart_backends_admit_relays(
    rendered: dict[str, Objects],
) -> None:
    objects = rendered["all-features"]
    monitor = find(objects, "ServiceMonitor", "loyalnest-services")
    relay_service = find(objects, "Service", "edge-relay")
    assert checks.selector_matches(monitor["spec"]["selector"], relay_service["metadata"]["labels"])
    relay_pod_labels = checks.pod_labels(find(objects, "Deployment", "edge-relay"))
    for backend in ("postgres", "kafka"):
        ingress = find(objects, "NetworkPolicy", backend)["spec"]["ingress"]
        assert any(
            checks.selector_matches(peer["podSelector"], relay_pod_labels)
            for rule in ingress
            for peer in rule["from"]
        ), backend


@pytest.mark.parametrize(
    ("component", "expected"),
    [
        ({"points": {"env": {"LOYALNEST_POINTS_LEDGER_STORE": "mongo"}}}, "MongoDB ledger"),
        ({"users": {"migrations": False}}, "no PostgreSQL schema"),
    ],
)
def test_a_relay_with_no_postgresql_outbox_is_refused(
    component: dict[str, dict[str, Any]], expected: str
) -> None:
    ((name, settings),) = component.items()
    overrides = {"components": {name: {**settings, "relay": {"separate": True}}}}
    with pytest.raises(helm.HelmError, match=expected):
        helm.template(Render(overrides=overrides))
