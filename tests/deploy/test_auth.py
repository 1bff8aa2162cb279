"""Access tokens in the chart: every service pod gets the public JWKS (a ConfigMap the operator
publishes; the gateway fetches Auth's published JWKS itself), only the Auth service gets the
private keyset, and a release without a JWKS ConfigMap does not render."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from loyalnest.deploy import checks, gateway_chart, helm
from loyalnest.deploy.helm import Render
from loyalnest.deploy.paths import CHART_DIR, tool
from loyalnest.deploy.renders import COMBINATIONS
from tests.deploy.conftest import Objects, container, env_of, find, parse

JWKS_DIR = "/etc/loyalnest/jwks"
JWKS_PATH = f"{JWKS_DIR}/jwks.json"
SIGNING_KEYS_PATH = "/etc/loyalnest/signing-keys/signing-keys.json"
DEFAULT_VALUES = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
# Every component of values.yaml on: the JWKS must reach each one, not only the defaults.
ALL_COMPONENTS = Render(
    overrides={"components": {name: {"enabled": True} for name in DEFAULT_VALUES["components"]}}
)


@pytest.fixture(scope="module")
def all_components() -> Objects:
    return parse(helm.template(ALL_COMPONENTS))


def _service_deployments(objects: Objects) -> list[dict[str, Any]]:
    return [
        o
        for o in objects
        if o["kind"] == "Deployment"
        and o["spec"]["template"]["spec"]["containers"][0].get("command", [])[:2]
        == ["loyalnest", "serve"]
    ]


def _volume(deployment: dict[str, Any], name: str) -> dict[str, Any] | None:
    for volume in deployment["spec"]["template"]["spec"].get("volumes", []):
        if volume["name"] == name:
            return dict(volume)
    return None


def _assert_mounts_jwks(
    deployment: dict[str, Any], main: dict[str, Any], config_map: str = "loyalnest-jwks"
) -> None:
    name = deployment["metadata"]["name"]
    mounts = [m for m in main.get("volumeMounts", []) if m["mountPath"] == JWKS_DIR]
    assert len(mounts) == 1, f"{name}: no JWKS mount"
    # A directory mount, read-only: a subPath mount would never see a published rotation.
    assert mounts[0]["readOnly"] is True and "subPath" not in mounts[0], name
    volume = _volume(deployment, mounts[0]["name"])
    assert volume is not None, name
    assert volume["configMap"] == {
        "name": config_map,
        "items": [{"key": "jwks.json", "path": "jwks.json"}],
    }, name


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_every_service_deployment_mounts_the_jwks_and_sets_token_env(
    rendered: dict[str, Objects], name: str
) -> None:
    deployments = _service_deployments(rendered[name])
    assert deployments
    for deployment in deployments:
        main = deployment["spec"]["template"]["spec"]["containers"][0]
        env = env_of(main)
        assert env["LOYALNEST_JWT_JWKS_PATH"] == JWKS_PATH
        assert env["LOYALNEST_JWT_ISSUER"] == "loyalnest-auth"
        assert env["LOYALNEST_JWT_AUDIENCE"] == "loyalnest"
        assert "LOYALNEST_REDIS_URL" in env
        _assert_mounts_jwks(deployment, main)
    assert checks.jwks_problems(rendered[name]) == []


def test_every_component_gets_the_jwks_not_only_the_enabled_defaults(
    all_components: Objects,
) -> None:
    deployments = {d["metadata"]["name"]: d for d in _service_deployments(all_components)}
    assert set(deployments) == set(DEFAULT_VALUES["components"])
    for deployment in deployments.values():
        main = deployment["spec"]["template"]["spec"]["containers"][0]
        assert env_of(main)["LOYALNEST_JWT_JWKS_PATH"] == JWKS_PATH
        _assert_mounts_jwks(deployment, main)
    assert checks.jwks_problems(all_components) == []


def test_only_the_auth_service_gets_the_signing_keys(all_components: Objects) -> None:
    for obj in all_components:
        spec = checks.pod_spec(obj)
        if spec is None:
            continue
        secret_volumes = [v for v in spec.get("volumes", []) if "secret" in v]
        env = {k for c in checks.containers(spec) for k in env_of(c)}
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] == "auth":
            assert secret_volumes == [
                {
                    "name": "signing-keys",
                    "secret": {
                        "secretName": "loyalnest-signing-keys",
                        "items": [{"key": "signing-keys.json", "path": "signing-keys.json"}],
                        "defaultMode": 0o440,
                    },
                }
            ]
            main = container(all_components, "Deployment", "auth", "auth")
            assert env_of(main)["LOYALNEST_AUTH_SIGNING_KEYS_PATH"] == SIGNING_KEYS_PATH
            mount = [m for m in main["volumeMounts"] if m["name"] == "signing-keys"]
            assert mount == [
                {
                    "name": "signing-keys",
                    "mountPath": "/etc/loyalnest/signing-keys",
                    "readOnly": True,
                }
            ]
        elif obj["metadata"].get("annotations", {}).get("helm.sh/hook") == "test":
            # `helm test`'s Job mints its one short-lived token from them while it runs (and is
            # deleted once it passed); no workload of the release holds them.
            assert obj["metadata"]["name"] == "gateway-test"
            assert [v["secret"]["secretName"] for v in secret_volumes] == ["loyalnest-signing-keys"]
        else:
            assert secret_volumes == [], checks.name_of(obj)
            assert "LOYALNEST_AUTH_SIGNING_KEYS_PATH" not in env, checks.name_of(obj)


def test_migration_jobs_do_not_reference_the_jwks(rendered: dict[str, Objects]) -> None:
    # `loyalnest migrate` verifies no tokens; a path to a file the Job does not mount would
    # only mislead.
    job = find(rendered["default"], "Job", "core-migrate")
    assert "LOYALNEST_JWT_JWKS_PATH" not in env_of(job["spec"]["template"]["spec"]["containers"][0])


def test_issuer_audience_and_configmap_come_from_values() -> None:
    objects = parse(
        helm.template(
            Render(
                overrides={
                    "auth": {
                        "jwks": {"existingConfigMap": "shop-public-keys"},
                        "issuer": "https://auth.loyalnest.example",
                        "audience": "loyalnest-prod",
                    }
                }
            )
        )
    )
    main = container(objects, "Deployment", "points", "points")
    env = env_of(main)
    assert env["LOYALNEST_JWT_ISSUER"] == "https://auth.loyalnest.example"
    assert env["LOYALNEST_JWT_AUDIENCE"] == "loyalnest-prod"
    _assert_mounts_jwks(find(objects, "Deployment", "points"), main, "shop-public-keys")
    bootstrap = json.loads(find(objects, "ConfigMap", "gateway")["data"]["envoy.json"])
    provider = _jwt_filter(bootstrap)["typed_config"]["providers"]["loyalnest"]
    assert provider["issuer"] == "https://auth.loyalnest.example"
    assert checks.config_checksum_problems(objects, provided={"shop-public-keys"}) == []
    # The checks know only the default name: a ConfigMap nobody provides is still reported.
    assert checks.config_checksum_problems(objects) != []


def test_redis_url_from_the_secret_or_the_in_chart_valkey(rendered: dict[str, Objects]) -> None:
    external = env_of(container(rendered["external-backends"], "Deployment", "points", "points"))
    assert external["LOYALNEST_REDIS_URL"] == {
        "secretKeyRef": {"name": "loyalnest-prod-backends", "key": "redis-url", "optional": True}
    }
    dev = env_of(container(rendered["all-features"], "Deployment", "points", "points"))
    assert dev["LOYALNEST_REDIS_URL"] == "redis://redis.loyalnest.svc.cluster.local:6379/0"


# ----------------------------------------------------------------------------- required


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (None, "existingConfigMap"),  # null deletes the key: `required`
        ("", "existingConfigMap"),  # minLength
        ("Not_A_Name", "existingConfigMap"),  # a Kubernetes object name
    ],
)
def test_missing_jwks_configmap_fails_lint_and_install(override: str | None, expected: str) -> None:
    render = Render(overrides={"auth": {"jwks": {"existingConfigMap": override}}})
    with pytest.raises(helm.HelmError, match=expected):
        helm.lint(render)
    with pytest.raises(helm.HelmError, match="schema"):
        helm.template(render)


def test_missing_jwks_configmap_fails_even_without_the_schema(tmp_path: Path) -> None:
    # `--skip-schema-validation` bypasses values.schema.json; the template still refuses.
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"auth": {"jwks": {"existingConfigMap": ""}}}))
    result = subprocess.run(
        [
            str(tool("helm")),
            "template",
            "loyalnest",
            str(CHART_DIR),
            "--skip-schema-validation",
            "--values",
            str(values),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "auth.jwks.existingConfigMap must name the ConfigMap with the public JWKS" in (
        result.stderr
    )


def test_a_service_without_its_jwks_is_caught(rendered: dict[str, Objects]) -> None:
    objects = copy.deepcopy(rendered["default"])
    main = container(objects, "Deployment", "points", "points")
    main["volumeMounts"] = [m for m in main["volumeMounts"] if m["mountPath"] != JWKS_DIR]
    assert any(
        "nothing is mounted at /etc/loyalnest/jwks" in p for p in checks.all_problems(objects)
    )
    objects = copy.deepcopy(rendered["default"])
    main = container(objects, "Deployment", "points", "points")
    for mount in main["volumeMounts"]:
        if mount["mountPath"] == JWKS_DIR:
            mount["subPath"] = "jwks.json"
    assert any("subPath" in p for p in checks.jwks_problems(objects))
    objects = copy.deepcopy(rendered["default"])
    main = container(objects, "Deployment", "points", "points")
    main["env"] = [e for e in main["env"] if e["name"] != "LOYALNEST_JWT_JWKS_PATH"]
    assert any("LOYALNEST_JWT_JWKS_PATH is not set" in p for p in checks.jwks_problems(objects))


# ----------------------------------------------------------------------------- gateway


def _jwt_filter(bootstrap: dict[str, Any]) -> dict[str, Any]:
    listeners = {x["name"]: x for x in bootstrap["static_resources"]["listeners"]}
    manager = listeners["loyalnest_http"]["filter_chains"][0]["filters"][0]["typed_config"]
    filters = manager["http_filters"]
    names = [f["name"] for f in filters]
    jwt = names.index("envoy.filters.http.jwt_authn")
    # After the transcoder (it sees /pkg.Service/Method for every protocol), before the router.
    assert (
        names.index("envoy.filters.http.grpc_json_transcoder")
        < jwt
        < names.index("envoy.filters.http.router")
    )
    return dict(filters[jwt])


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_gateway_requires_a_token_on_everything_but_the_public_rpcs(
    rendered: dict[str, Objects], name: str
) -> None:
    objects = rendered[name]
    if not any(o["kind"] == "Deployment" and o["metadata"]["name"] == "gateway" for o in objects):
        # This combination disables the gateway: none of its config may be rendered either.
        assert not [o for o in objects if o["metadata"]["name"].startswith("gateway")]
        return
    bootstrap = json.loads(find(objects, "ConfigMap", "gateway")["data"]["envoy.json"])
    config = _jwt_filter(bootstrap)["typed_config"]
    provider = config["providers"]["loyalnest"]
    assert provider["issuer"] == "loyalnest-auth"
    # Auth's published JWKS through the gateway's own listener, refetched in the background:
    # a rotation needs no restart (tests/integration/test_gateway_jwks_reload.py).
    remote = provider["remote_jwks"]
    assert remote["http_uri"]["uri"] == "http://127.0.0.1:8080/v1/api/auth/jwks"
    assert remote["async_fetch"]["fast_listener"] is True and remote["cache_duration"] == "30s"
    clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
    endpoint = clusters[remote["http_uri"]["cluster"]]["load_assignment"]["endpoints"][0]
    assert endpoint["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 8080,
    }
    assert "local_jwks" not in provider
    assert provider["from_headers"] == [{"name": "authorization", "value_prefix": "Bearer "}]
    rules = config["rules"]
    # The catch-all comes last and requires the provider; every rule before it is an exception.
    assert rules[-1] == {"match": {"prefix": "/"}, "requires": {"provider_name": "loyalnest"}}
    assert all("requires" not in rule for rule in rules[:-1])
    exceptions = {rule["match"].get("path") or rule["match"].get("prefix") for rule in rules[:-1]}
    assert "/grpc.health.v1.Health/" in exceptions
    # Of Points, only the integrations' signed activities (they carry their own HMAC).
    assert [p for p in exceptions if p.startswith("/loyalnest.points.")] == [
        "/loyalnest.points.v1.PointsService/RecordSignedActivity"
    ]
    # So the gateway needs no JWKS of its own: no ConfigMap mount, nothing to checksum.
    gateway = find(objects, "Deployment", "gateway")["spec"]["template"]
    assert "jwks" not in {v["name"] for v in gateway["spec"]["volumes"]}
    assert "checksum/jwks" not in gateway["metadata"]["annotations"]
    for c in gateway["spec"]["containers"]:
        assert not any("jwks" in m["mountPath"] for m in c.get("volumeMounts", [])), c["name"]


def test_gateway_files_carry_the_issuer_as_a_token() -> None:
    text = (gateway_chart.GATEWAY_FILES_DIR / gateway_chart.CONFIG_FILE).read_text()
    assert json.dumps(gateway_chart.JWT_ISSUER_TOKEN) in text
    substituted = gateway_chart.substitute(text, namespace="shop", jwt_issuer="https://i.example")
    assert "${" not in substituted
    provider = _jwt_filter(json.loads(substituted))["typed_config"]["providers"]["loyalnest"]
    assert provider["issuer"] == "https://i.example"


def test_kind_setup_publishes_the_keys_the_chart_mounts() -> None:
    script = (CHART_DIR.parent.parent / "tools" / "kind-up.sh").read_text()
    jwks = DEFAULT_VALUES["auth"]["jwks"]["existingConfigMap"]
    signing_keys = DEFAULT_VALUES["auth"]["signingKeys"]["existingSecret"]
    assert f"create configmap {jwks}" in script and "--from-file=jwks.json=" in script
    assert f"create secret generic {signing_keys}" in script
    assert "--from-file=signing-keys.json=" in script
    assert "x-loyalnest-merchant-id" not in script


def test_readme_calls_the_cluster_with_a_token() -> None:
    readme = (CHART_DIR.parent.parent / "README.md").read_text()
    section = readme.split("## Operate on Kubernetes", 1)[1].split("\n## ", 1)[0]
    assert "x-loyalnest-merchant-id" not in section
    assert 'curl -s -H "authorization: Bearer $TOKEN"' in section
    assert "loyalnest token --keyset signing-keys.json --merchant demo-shop --force" in section
    assert "create configmap loyalnest-jwks --from-file=jwks.json=" in section


def test_auth_believes_the_forwarded_address_of_the_gateways_pods(
    rendered: dict[str, Objects],
) -> None:
    """The admin sign-in lockout counts per client address: behind the gateway, Auth must take
    the address from X-Forwarded-For of pod addresses, or every client shares the gateway's
    address and one client's wrong guesses lock everyone's sign-in."""
    from ipaddress import ip_address

    from pydantic import TypeAdapter

    from loyalnest.services.auth.service import AuthSettings

    env = env_of(container(rendered["default"], "Deployment", "auth", "auth"))
    field = AuthSettings.model_fields["auth_trusted_proxy_cidrs"]
    cidrs = TypeAdapter(field.annotation).validate_json(env["LOYALNEST_AUTH_TRUSTED_PROXY_CIDRS"])
    for gateway_pod in ("10.244.1.7", "172.17.0.5", "192.168.3.9"):  # kind, docker, others
        assert any(ip_address(gateway_pod) in cidr for cidr in cidrs), gateway_pod
    assert not any(ip_address("203.0.113.9") in cidr for cidr in cidrs)  # a public client
