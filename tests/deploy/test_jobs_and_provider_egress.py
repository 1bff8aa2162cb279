"""The scheduled jobs (points-expire, points-tiers, rfm-rescore) and HTTPS egress to outside
providers (PostHog for Event Tracking; notify's Klaviyo/Postscript/SES the same way)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loyalnest.deploy import helm
from loyalnest.deploy.helm import Render
from tests.deploy.conftest import Objects, find, parse

CRONJOBS = {
    # CronJob -> (command, the NetworkPolicy that selects its pods)
    "points-expire": (["loyalnest", "points", "expire"], "points-expire"),
    "points-tiers": (["loyalnest", "points", "tiers"], "points-tiers"),
    "rfm-rescore": (["loyalnest", "rfm", "rescore"], "cronjob"),
}
INTERNET = {
    "ipBlock": {
        "cidr": "0.0.0.0/0",
        "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"],
    }
}


def _pod(cronjob: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    return spec


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return all(labels.get(k) == v for k, v in wanted.items())


@pytest.mark.parametrize("name", ["default", "external-backends"])
def test_cronjobs_render_with_env_secrets_and_policies(
    rendered: dict[str, Objects], name: str
) -> None:
    objects = rendered[name]
    cronjobs = {o["metadata"]["name"]: o for o in objects if o["kind"] == "CronJob"}
    assert set(CRONJOBS) <= set(cronjobs), sorted(cronjobs)
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    for job, (command, policy_name) in CRONJOBS.items():
        cronjob = cronjobs[job]
        assert cronjob["spec"]["concurrencyPolicy"] == "Forbid", job
        pod = _pod(cronjob)
        (main,) = pod["spec"]["containers"]
        assert main["command"] == command, job
        env = {e["name"]: e for e in main["env"]}
        database = env["LOYALNEST_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert "optional" not in database, job
        assert "LOYALNEST_KAFKA_BOOTSTRAP_SERVERS" in env
        # No tokens, no secrets beyond the backends': a job calls no service.
        assert "LOYALNEST_SERVICE_CREDENTIAL" not in env, job
        assert "LOYALNEST_JWT_JWKS_PATH" not in env, job
        # Its pods are selected by a policy giving them the databases (egress only).
        policy = find(objects, "NetworkPolicy", policy_name)
        assert _selects(policy, pod["metadata"]["labels"]), job
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert not policy["spec"].get("ingress"), job
        ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
        assert 5432 in ports, (job, ports)
        # ... and no policy opens a way to Shopify or any provider for them.
        for other in policies:
            if _selects(other, pod["metadata"]["labels"]):
                for rule in other["spec"].get("egress", []):
                    assert {"protocol": "TCP", "port": 443} not in rule.get("ports", []), job


def test_points_jobs_need_the_mongo_ledger_they_read(rendered: dict[str, Objects]) -> None:
    """On the Mongo ledger (the chart's default), points-expire/-tiers cannot run without the
    Secret's mongo-url: required, as for the points pods (not the optional key of the others)."""
    for job in ("points-expire", "points-tiers"):
        (main,) = _pod(find(rendered["default"], "CronJob", job))["spec"]["containers"]
        env = {e["name"]: e for e in main["env"]}
        assert env["LOYALNEST_POINTS_LEDGER_STORE"]["value"] == "mongo"
        assert "optional" not in env["LOYALNEST_MONGO_URL"]["valueFrom"]["secretKeyRef"], job
    (rescore,) = _pod(find(rendered["default"], "CronJob", "rfm-rescore"))["spec"]["containers"]
    env = {e["name"]: e for e in rescore["env"]}
    assert env["LOYALNEST_MONGO_URL"]["valueFrom"]["secretKeyRef"]["optional"] is True


def _https_rules(objects: Objects, component: str) -> list[dict[str, Any]]:
    policy = find(objects, "NetworkPolicy", component)
    return [
        rule
        for rule in policy["spec"]["egress"]
        if rule.get("ports") == [{"protocol": "TCP", "port": 443}]
    ]


def test_event_tracking_reaches_posthog_and_only_it(rendered: dict[str, Objects]) -> None:
    objects = rendered["default"]
    assert _https_rules(objects, "event-tracking") == [
        {"to": [INTERNET], "ports": [{"protocol": "TCP", "port": 443}]}
    ]
    # Referrals reaches its invite providers (and Shopify); services that ship nothing outside
    # get no HTTPS egress at all.
    referrals = _https_rules(objects, "referrals")
    assert {"to": [INTERNET], "ports": [{"protocol": "TCP", "port": 443}]} in referrals
    for quiet in ("rfm", "gamification", "roles", "users"):
        assert _https_rules(objects, quiet) == [], quiet


def test_a_new_provider_is_one_entry_and_a_component_list() -> None:
    """The documented generic way (values.yaml networkPolicy.providerEgressTo): a provider by
    name with its peers, and the components that list it get HTTPS egress to exactly those."""
    twilio = [{"ipBlock": {"cidr": "203.0.113.0/24"}}]
    proxy = [{"namespaceSelector": {"matchLabels": {"name": "egress"}}}]
    objects = parse(
        helm.template(
            Render(
                overrides={
                    "networkPolicy": {"providerEgressTo": {"twilio": twilio, "posthog": proxy}},
                    "components": {"users": {"providerEgress": ["twilio"]}},
                }
            )
        )
    )
    assert [rule["to"] for rule in _https_rules(objects, "users")] == [twilio]
    assert [rule["to"] for rule in _https_rules(objects, "event-tracking")] == [proxy]
    assert _https_rules(objects, "roles") == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # A name no entry defines would silently allow nothing: refused.
        ({"components": {"users": {"providerEgress": ["twilio"]}}}, "does not define"),
        # Peers are required for a provider (an empty list would block it without a word).
        ({"networkPolicy": {"providerEgressTo": {"klaviyo": []}}}, "schema"),
    ],
)
def test_provider_egress_mistakes_are_refused(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(helm.HelmError, match=expected):
        helm.template(Render(overrides=overrides))


def test_the_occasions_job_reaches_users_and_auth_only(rendered: dict[str, Objects]) -> None:
    """`loyalnest points occasions` calls Users (birthdays) with Points' service token from
    Auth: Points' call targets and credential, egress to exactly those pods, and their
    policies admit it (the other jobs call no service: see above)."""
    objects = rendered["default"]
    cronjob = find(objects, "CronJob", "points-occasions")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = _pod(cronjob)
    (main,) = pod["spec"]["containers"]
    assert main["command"] == ["loyalnest", "points", "occasions"]
    env = {e["name"]: e for e in main["env"]}
    assert set(json.loads(env["LOYALNEST_CALL_TARGETS"]["value"])) == {"auth", "users"}
    credential = env["LOYALNEST_SERVICE_CREDENTIAL"]["valueFrom"]["secretKeyRef"]
    assert credential["key"] == "points-service-credential"
    labels = pod["metadata"]["labels"]
    policy = find(objects, "NetworkPolicy", "points-occasions")
    assert _selects(policy, labels)
    grpc_peers = [
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        for rule in policy["spec"]["egress"]
        if {"protocol": "TCP", "port": 50051} in rule.get("ports", [])
        for peer in rule["to"]
    ]
    assert sorted(grpc_peers) == ["auth", "users"]
    for callee in ("auth", "users"):
        ingress = find(objects, "NetworkPolicy", callee)["spec"]["ingress"]
        admitted = [
            peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
            for rule in ingress
            for peer in rule.get("from", [])
            if "podSelector" in peer
        ]
        assert "points-occasions" in admitted, callee
    # Not a caller of anyone else: no other service admits it.
    for other in ("core", "roles", "referrals"):
        ingress = find(objects, "NetworkPolicy", other)["spec"]["ingress"]
        assert "points-occasions" not in json.dumps(ingress), other
