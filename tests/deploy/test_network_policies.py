"""NetworkPolicies and call targets: default deny, DNS egress, and exactly the call graph (the
services' code, the seed's for components without code yet)."""

from __future__ import annotations

import json
from itertools import permutations
from typing import Any

import pytest
import yaml

from loyalnest.deploy import checks, generate, helm
from loyalnest.deploy.callgraph import load_seed_call_graph
from loyalnest.deploy.calls import CALLS_FILE, code_call_graph
from loyalnest.deploy.helm import Render
from loyalnest.deploy.paths import CHART_DIR
from tests.deploy.conftest import Objects, container, env_of, find, parse
from tests.shared import shared_file


def _components() -> dict[str, Any]:
    components: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text())[
        "components"
    ]
    return components


def _service(name: str, component: dict[str, Any]) -> str:
    """The registry name of a component (event-tracking -> event_tracking), as the chart's
    loyalnest.serviceName: calls.json is keyed by it."""
    return str(component.get("service", name.replace("-", "_")))


def _code_graph() -> dict[str, set[str]]:
    """The code's calls of the components the registry has, by component name."""
    code = code_call_graph()
    return {
        name: set(code[_service(name, c)])
        for name, c in _components().items()
        if _service(name, c) in code
    }


def _graph() -> dict[str, set[str]]:
    """What the chart renders: the code's calls for the services the registry has, the
    values' for the components only the seed has."""
    code = _code_graph()
    return {name: code.get(name, set(c.get("calls", []))) for name, c in _components().items()}


def test_the_generated_call_graph_is_the_codes() -> None:
    assert generate.call_graph(check=True) == [], "the services' calls changed: `make chart`"
    assert json.loads(CALLS_FILE.read_text()) == code_call_graph()


def test_code_components_have_no_hand_written_calls() -> None:
    components = _components()
    by_service = {_service(name, c): name for name, c in components.items()}
    for service in code_call_graph():
        assert service in by_service, f"{service} is in the registry but not in values.yaml"
        name = by_service[service]
        assert "calls" not in components[name], f"{name}'s calls come from its code"


def test_the_call_graph_stays_within_the_seeds() -> None:
    """Seed-only components list exactly the seed's edges; the code may call fewer (what is
    wired so far), never more than the seed allows (or BEYOND_SEED documents)."""
    seed = load_seed_call_graph(shared_file("seed", "loyalnest-microservice-design.txt"))
    code = _code_graph()
    assert set(_components()) == set(seed)
    for name, calls in _graph().items():
        if name in code:
            assert calls <= seed[name], (name, calls - seed[name])
        else:
            assert calls == seed[name], name


def test_a_hand_written_list_for_a_code_component_is_refused() -> None:
    overrides = {"components": {"points": {"calls": ["users"]}}}
    with pytest.raises(helm.HelmError, match="come from its code"):
        helm.template(Render(overrides=overrides))


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
    graph = _graph()
    for caller, callee in permutations(graph, 2):
        ingress = _peer_names(
            find(objects, "NetworkPolicy", callee)["spec"]["ingress"], "from", 50051
        )
        egress = _peer_names(find(objects, "NetworkPolicy", caller)["spec"]["egress"], "to", 50051)
        allowed = callee in graph[caller]
        assert (caller in ingress) == allowed, (caller, callee)
        assert (callee in egress) == allowed, (caller, callee)
        assert "gateway" in ingress  # the edge reaches every service


def test_call_targets_are_the_callees_headless_services(everything_enabled: Objects) -> None:
    """LOYALNEST_CALL_TARGETS of each component names exactly its callees, each as the DNS
    name of the callee's headless Service (every pod's address, for round robin)."""
    headless = {
        o["metadata"]["name"]
        for o in everything_enabled
        if o["kind"] == "Service" and o["spec"].get("clusterIP") == "None"
    }
    for name, callees in _graph().items():
        env = env_of(container(everything_enabled, "Deployment", name, name))
        if not callees:
            assert "LOYALNEST_CALL_TARGETS" not in env, name
            continue
        targets = json.loads(env["LOYALNEST_CALL_TARGETS"])
        assert set(targets) == {c.replace("-", "_") for c in callees}, name
        for callee in callees:
            assert callee in headless
            expected = f"dns:///{callee}.loyalnest.svc.cluster.local:50051"
            assert targets[callee.replace("-", "_")] == expected


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_default_deny_and_dns_cover_the_releases_pods_only(rendered: dict[str, Objects]) -> None:
    """Every pod the chart runs is denied by default and may resolve names; a pod of another
    workload in the namespace is left alone (a namespace-wide deny broke whatever else ran
    there)."""
    for name in ("default", "all-features"):
        objects = rendered[name]
        deny = find(objects, "NetworkPolicy", "default-deny")["spec"]
        assert deny["policyTypes"] == ["Ingress", "Egress"]
        dns = find(objects, "NetworkPolicy", "allow-dns-egress")["spec"]
        assert {(p["protocol"], p["port"]) for p in dns["egress"][0]["ports"]} == {
            ("UDP", 53),
            ("TCP", 53),
        }
        pods = [
            o["spec"]["template"]["metadata"]["labels"]
            for o in objects
            if o["kind"] in ("Deployment", "StatefulSet")
        ]
        assert pods
        for labels in pods:
            assert _selects(deny["podSelector"], labels), labels
            assert _selects(dns["podSelector"], labels), labels
        foreign = {
            "app.kubernetes.io/name": "billing-worker",
            "app.kubernetes.io/instance": "other",
        }
        assert not _selects(deny["podSelector"], foreign)
        assert not _selects(dns["podSelector"], foreign)


def test_disabled_components_are_not_peers() -> None:
    # A component enabled alone while one of its callees is disabled: egress only to the
    # callees that are enabled (a policy naming absent pods would be harmless but misleading).
    # admin-features has no code yet (the seed's calls list) and every service it calls is
    # enabled now, so it is given one more callee, a disabled component without code.
    components = _components()
    caller = "admin-features"
    assert not components[caller].get("enabled")
    calls = [*components[caller]["calls"], "widgets"]
    overrides = {
        "components": {
            caller: {"enabled": True, "calls": calls},
            "widgets": {"enabled": False, "calls": []},
        }
    }
    objects = parse(helm.template(Render(overrides=overrides)))
    egress = find(objects, "NetworkPolicy", caller)["spec"]["egress"]
    enabled = {name for name in components[caller]["calls"] if components[name]["enabled"]}
    assert enabled and _peer_names(egress, "to", 50051) == enabled


def test_the_callers_of_shopify_may_reach_it_over_https(rendered: dict[str, Objects]) -> None:
    """OAuth token exchange (auth), discount codes (points), Billing (core), campaigns'
    discounts (campaign) and the catalogue sync (products) go to Shopify on 443; wherever
    policies are enforced, a policy without that egress times every one out."""
    objects = rendered["default"]
    for name in ("auth", "points", "core", "campaign", "products"):
        egress = find(objects, "NetworkPolicy", name)["spec"]["egress"]
        https = [rule for rule in egress if {"protocol": "TCP", "port": 443} in rule["ports"]]
        assert https, name
        (block,) = https[0]["to"]
        assert block["ipBlock"]["cidr"] == "0.0.0.0/0"
        assert "10.0.0.0/8" in block["ipBlock"]["except"]  # not the cluster's own pods
    for name in ("users", "roles", "edge"):
        egress = find(objects, "NetworkPolicy", name)["spec"]["egress"]
        assert not any({"protocol": "TCP", "port": 443} in r.get("ports", []) for r in egress)


def test_shopifys_redirect_url_is_a_chart_value() -> None:
    from loyalnest.deploy import helm
    from loyalnest.deploy.helm import Render
    from tests.deploy.conftest import container, env_of, parse

    url = "https://app.example.com/auth/callback"
    objects = parse(helm.template(Render(overrides={"auth": {"shopifyRedirectUrl": url}})))
    assert (
        env_of(container(objects, "Deployment", "auth", "auth"))["LOYALNEST_SHOPIFY_REDIRECT_URL"]
        == url
    )
    for name in ("points", "core"):
        assert "LOYALNEST_SHOPIFY_REDIRECT_URL" not in env_of(
            container(objects, "Deployment", name, name)
        )


# -- ports and peers of DNS and the external backends (blocker 6) -------------------------------


def _ports(rule: dict[str, Any]) -> set[tuple[str, int]]:
    return {(p["protocol"], p["port"]) for p in rule["ports"]}


def test_dns_ports_and_peers_are_values() -> None:
    """OpenShift's DNS answers on 5353; NodeLocal DNSCache on 169.254.20.10, a node address
    no pod selector matches: both are expressible, and the default stays kube-dns on 53."""
    node_local = {"ipBlock": {"cidr": "169.254.20.10/32"}}
    kube_dns = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["networkPolicy"]["dnsPeers"]
    overrides = {"networkPolicy": {"dnsPorts": [53, 5353], "dnsPeers": [*kube_dns, node_local]}}
    (rule,) = find(
        parse(helm.template(Render(overrides=overrides))), "NetworkPolicy", "allow-dns-egress"
    )["spec"]["egress"]
    assert _ports(rule) == {("UDP", 53), ("TCP", 53), ("UDP", 5353), ("TCP", 5353)}
    assert node_local in rule["to"] and kube_dns[0] in rule["to"]


# A production Secret as an SRE writes it: PgBouncer, a TLS Redis, a Mongo replica set.
PROD_SECRET = {
    "database-url": "postgresql://loyalnest:pw@pgbouncer.db.internal:6432/loyalnest",
    "redis-url": "rediss://:pw@cache.internal:6380/0",
    "mongo-url": "mongodb://u:pw@m-1.internal:27017,m-2.internal:27018/?replicaSet=rs0",
}
# MSK: TLS on 9094, IAM on 9098.
MSK = "b-1.msk.internal:9094,b-2.msk.internal:9098"


def test_backend_ports_come_from_the_configured_backends() -> None:
    """With the defaults, the check sees that a PgBouncer/TLS Redis/MSK setup is cut off; with
    the ports of its URLs in the values and MSK's bootstrap servers, every pod reaches them and
    nothing else: no hard-coded 5432/6379/9092 is left open beside them."""
    default = parse(
        helm.template(Render(overrides={"backends": {"kafka": {"bootstrapServers": MSK}}}))
    )
    problems = checks.backend_egress_problems(default, PROD_SECRET)
    assert any("database-url port 6432" in p for p in problems)
    assert any("redis-url port 6380" in p for p in problems)
    assert any("mongo-url port 27018" in p for p in problems)
    assert any("Job/core-migrate" in p for p in problems)  # the migration Jobs too
    assert not any("kafka" in p for p in problems)  # derived from bootstrapServers already

    overrides = {
        "backends": {"kafka": {"bootstrapServers": MSK}},
        "networkPolicy": {
            "backends": {
                "postgres": {"ports": [6432]},
                "redis": {"ports": [6380]},
                "mongo": {"ports": [27017, 27018]},
            }
        },
    }
    objects = parse(helm.template(Render(overrides=overrides)))
    assert checks.backend_egress_problems(objects, PROD_SECRET) == []
    egress = find(objects, "NetworkPolicy", "points")["spec"]["egress"]
    (external,) = [r for r in egress if r["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0"}}]]
    assert {p for _, p in _ports(external)} == {6432, 6380, 27017, 27018, 9094, 9098}


def test_a_backend_in_the_cluster_is_a_pod_peer_not_an_ipblock() -> None:
    """On Cilium an ipBlock never matches a pod: a PgBouncer running in another namespace is
    reached through a namespaceSelector/podSelector peer, for its own port only; the other
    backends keep the CIDR default."""
    pgbouncer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "databases"}},
        "podSelector": {"matchLabels": {"app": "pgbouncer"}},
    }
    overrides = {"networkPolicy": {"backends": {"postgres": {"ports": [6432], "to": [pgbouncer]}}}}
    objects = parse(helm.template(Render(overrides=overrides)))
    assert checks.network_policy_problems(objects) == []
    for name in ("points", "migrate"):
        egress = find(objects, "NetworkPolicy", name)["spec"]["egress"]
        (to_pgbouncer,) = [r for r in egress if r["to"] == [pgbouncer]]
        assert _ports(to_pgbouncer) == {("TCP", 6432)}
        (cidr,) = [r for r in egress if r["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0"}}]]
        assert {p for _, p in _ports(cidr)} == {27017, 6379, 9092}


def test_kafka_bootstrap_servers_without_a_port_are_refused() -> None:
    overrides = {"backends": {"kafka": {"bootstrapServers": "b-1.internal:9092,broker2"}}}
    with pytest.raises(helm.HelmError, match=r"broker2.* has no :port"):
        helm.template(Render(overrides=overrides))


def test_url_ports() -> None:
    assert checks.url_ports("postgresql://u:p@h/db") == {5432}
    assert checks.url_ports("postgresql://u:p@h1:5433,h2/db?sslmode=require") == {5433, 5432}
    assert checks.url_ports("mongodb+srv://u:p@cluster.example.net/db") == {27017}
    assert checks.url_ports("rediss://:p@h:6380/0") == {6380}
    assert checks.url_ports("kafka://[::1]:9092,b:9094") == {9092, 9094}
