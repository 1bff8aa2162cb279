"""The checks bite: a typo in values, a broken selector and a missing probe port each fail."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest

from loyalnest.deploy import checks, helm
from loyalnest.deploy.helm import Render
from tests.deploy.conftest import Objects, container, find


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # A misspelt key is not silently ignored (values.schema.json: additionalProperties).
        ({"componentDefaults": {"replica": 3}}, "replica"),
        ({"components": {"points": {"enabled": True, "enviroment": {}}}}, "enviroment"),
        ({"gateway": {"servce": {"type": "NodePort"}}}, "servce"),
        # Wrong types and values too.
        ({"gateway": {"service": {"type": "Ingress"}}}, "/gateway/service/type"),
        ({"componentDefaults": {"resources": {"limits": {"memory": "512MB"}}}}, "512MB"),
        ({"components": {"Points": {"enabled": True}}}, "Points"),
        ({"components": {"edge": {"relay": {"seperate": True}}}}, "seperate"),
    ],
)
def test_values_typo_fails_lint_and_install(overrides: dict[str, object], expected: str) -> None:
    render = Render(overrides=overrides)
    with pytest.raises(helm.HelmError, match=expected):
        helm.lint(render)
    # `helm install`/`template` validate against the same schema.
    with pytest.raises(helm.HelmError, match="schema"):
        helm.template(render)


def test_broken_selector_is_caught(rendered: dict[str, Objects]) -> None:
    objects = copy.deepcopy(rendered["default"])
    assert checks.selector_problems(objects) == []
    deployment = find(objects, "Deployment", "points")
    deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "pointz"
    problems = checks.selector_problems(objects)
    assert any("Deployment/points: selector" in p for p in problems), problems


def test_service_selecting_no_pod_is_caught(rendered: dict[str, Objects]) -> None:
    objects = copy.deepcopy(rendered["default"])
    find(objects, "Service", "points")["spec"]["selector"]["app.kubernetes.io/instance"] = "x"
    problems = checks.selector_problems(objects)
    assert any("Service/points: selector" in p for p in problems), problems


def test_network_policy_peer_that_selects_nothing_is_caught(rendered: dict[str, Objects]) -> None:
    objects = copy.deepcopy(rendered["default"])
    policy = find(objects, "NetworkPolicy", "points")
    policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"][
        "app.kubernetes.io/name"
    ] = "gatway"
    problems = checks.network_policy_problems(objects)
    assert any("NetworkPolicy/points: peer" in p for p in problems), problems


def test_missing_probe_port_is_caught(rendered: dict[str, Objects]) -> None:
    objects = copy.deepcopy(rendered["default"])
    assert checks.probe_problems(objects) == []
    main = container(objects, "Deployment", "points", "points")
    main["readinessProbe"]["grpc"]["port"] = 50052
    problems = checks.probe_problems(objects)
    assert any("readinessProbe: port 50052 is not declared" in p for p in problems), problems


def test_renamed_container_port_breaks_named_probe_and_service(
    rendered: dict[str, Objects],
) -> None:
    objects = copy.deepcopy(rendered["default"])
    main = container(objects, "Deployment", "points", "points")
    main["ports"] = [p for p in main["ports"] if p["name"] != "grpc"]
    problems = checks.probe_problems(objects)
    # livenessProbe.tcpSocket.port: grpc, and both Services' targetPort: grpc.
    assert any("livenessProbe: port name 'grpc' is not declared" in p for p in problems)
    assert any("Service/points port grpc" in p for p in problems), problems


def test_unparseable_quantity_and_request_over_limit_are_caught(
    rendered: dict[str, Objects],
) -> None:
    objects = copy.deepcopy(rendered["default"])
    resources = container(objects, "Deployment", "points", "points")["resources"]
    resources["limits"]["memory"] = "512MB"
    resources["requests"]["cpu"] = "2"
    problems = checks.quantity_problems(objects)
    assert any("not a quantity: '512MB'" in p for p in problems), problems
    assert any("cpu request 2 > limit 1" in p for p in problems), problems


def test_short_grace_period_is_caught(rendered: dict[str, Objects]) -> None:
    objects = copy.deepcopy(rendered["default"])
    find(objects, "Deployment", "points")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ] = 10
    assert checks.grace_problems(objects)


def test_insecure_container_is_caught(rendered: dict[str, Objects]) -> None:
    objects = copy.deepcopy(rendered["default"])
    context = container(objects, "Deployment", "points", "points")["securityContext"]
    context["readOnlyRootFilesystem"] = False
    context["capabilities"] = {"drop": []}
    problems = checks.security_problems(objects)
    assert len([p for p in problems if "Deployment/points container points" in p]) == 2


def test_unknown_field_fails_kubernetes_validate_strict(rendered: dict[str, Objects]) -> None:
    deployment = copy.deepcopy(find(rendered["default"], "Deployment", "points"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.30", strict=True)
