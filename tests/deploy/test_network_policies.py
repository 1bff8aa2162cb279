"""NetworkPolicies: default deny, DNS egress, and exactly the seed's call graph."""

from __future__ import annotations

from itertools import permutations
from typing import Any

import pytest
import yaml

from loyalnest.deploy import checks, helm
from loyalnest.deploy.callgraph import SEED, load_seed_call_graph
from loyalnest.deploy.helm import Render
from loyalnest.deploy.paths import CHART_DIR
from tests.deploy.conftest import Objects, find, parse


def _components() -> dict[str, Any]:
    components: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text())[
        "components"
    ]
    return components


@pytest.mark.skipif(not SEED.is_file(), reason=f"seed design not found at {SEED}")
def test_values_call_graph_is_the_seeds() -> None:
    seed = load_seed_call_graph()
    values = {name: set(c.get("calls", [])) for name, c in _components().items()}
    assert values == seed


@pytest.fixture(scope="module")
def everything_enabled() -> Objects:
    # Every component on (their code need not exist to render): the whole graph as policies.
    overrides = {"components": {name: {"enabled": True} for name in _components()}}
    return parse(helm.template(Render(overrides=overrides)))


def _peer_names(rules: list[dict[str, Any]], direction: str, port: int) -> set[str]:
    names: set[str] = set()
    for rule in rules:
        if any(p.get("port") == port for p in rule.get("ports", [])):
            for peer in rule.get(direction) or []:
                labels = peer.get("podSelector", {}).get("matchLabels", {})
                if "app.kubernetes.io/name" in labels:
                    names.add(labels["app.kubernetes.io/name"])
    return names


def test_policies_allow_exactly_the_call_graph(everything_enabled: Objects) -> None:
    objects = everything_enabled
    assert checks.network_policy_problems(objects) == []
    graph = {name: set(c.get("calls", [])) for name, c in _components().items()}
    for caller, callee in permutations(graph, 2):
        ingress = _peer_names(
            find(objects, "NetworkPolicy", callee)["spec"]["ingress"], "from", 50051
        )
        egress = _peer_names(find(objects, "NetworkPolicy", caller)["spec"]["egress"], "to", 50051)
        allowed = callee in graph[caller]
        assert (caller in ingress) == allowed, (caller, callee)
        assert (callee in egress) == allowed, (caller, callee)
        assert "gateway" in ingress  # the edge reaches every service


def test_default_deny_and_dns(rendered: dict[str, Objects]) -> None:
    objects = rendered["default"]
    deny = find(objects, "NetworkPolicy", "default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = find(objects, "NetworkPolicy", "allow-dns-egress")["spec"]
    assert dns["podSelector"] == {}
    assert {(p["protocol"], p["port"]) for p in dns["egress"][0]["ports"]} == {
        ("UDP", 53),
        ("TCP", 53),
    }


def test_disabled_components_are_not_peers(rendered: dict[str, Objects]) -> None:
    # core calls auth, rfm, users: egress only to those enabled by default (a policy naming
    # absent pods would be harmless but misleading).
    components = _components()
    enabled = {
        name for name in components["core"]["calls"] if components[name].get("enabled", False)
    }
    assert "rfm" not in enabled  # a disabled callee, so the test keeps its point
    egress = find(rendered["default"], "NetworkPolicy", "core")["spec"]["egress"]
    assert _peer_names(egress, "to", 50051) == enabled
