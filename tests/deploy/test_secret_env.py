"""Sensitive settings of the Auth and Users services (field-encryption and blind-index keys,
the Shopify app's credentials) reach their pods only through secretKeyRef: the chart never has
a plain value for them, so a release cannot leak them into its manifests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from loyalnest.deploy import helm
from loyalnest.deploy.helm import Render
from loyalnest.deploy.paths import CHART_DIR
from loyalnest.deploy.renders import COMBINATIONS
from tests.deploy.conftest import Objects, container, parse

# Names as the settings classes read them (LOYALNEST_ + field name), with the default keys of
# secrets.existingSecret.
SECRET_ENV: dict[str, dict[str, str]] = {
    "auth": {
        "LOYALNEST_AUTH_SERVICE_CREDENTIAL_KEY": "auth-service-credential-key",
        "LOYALNEST_AUTH_ENCRYPTION_KEY": "auth-encryption-key",
        "LOYALNEST_AUTH_BLIND_INDEX_KEY": "auth-blind-index-key",
        "LOYALNEST_SHOPIFY_API_KEY": "shopify-api-key",
        "LOYALNEST_SHOPIFY_API_SECRET": "shopify-api-secret",
    },
    "users": {
        "LOYALNEST_USERS_ENCRYPTION_KEY": "users-encryption-key",
        "LOYALNEST_USERS_BLIND_INDEX_KEY": "users-blind-index-key",
    },
    "core": {
        "LOYALNEST_CORE_ENCRYPTION_KEY": "core-encryption-key",
        "LOYALNEST_CORE_BLIND_INDEX_KEY": "core-blind-index-key",
        "LOYALNEST_SERVICE_CREDENTIAL": "core-service-credential",
    },
    "points": {"LOYALNEST_SERVICE_CREDENTIAL": "points-service-credential"},
    "edge": {
        "LOYALNEST_SHOPIFY_API_SECRET": "shopify-api-secret",
        "LOYALNEST_SERVICE_CREDENTIAL": "edge-service-credential",
        "LOYALNEST_EDGE_ENCRYPTION_KEY": "edge-encryption-key",
    },
    "admin-core": {
        "LOYALNEST_SERVICE_CREDENTIAL": "admin-core-service-credential",
        "LOYALNEST_ADMIN_CORE_ENCRYPTION_KEY": "admin-core-encryption-key",
        "LOYALNEST_ADMIN_CORE_BLIND_INDEX_KEY": "admin-core-blind-index-key",
    },
}
SENSITIVE = {name for names in SECRET_ENV.values() for name in names}


def _values(name: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    for values_file in COMBINATIONS[name].values_files:
        override = yaml.safe_load(Path(values_file).read_text()) or {}
        values["secrets"].update(override.get("secrets", {}))
        for component, settings in (override.get("components") or {}).items():
            values["components"].setdefault(component, {}).update(settings)
    return values


def _env_entries(objects: Objects) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for obj in objects:
        spec = obj.get("spec", {})
        pod = spec.get("jobTemplate", {}).get("spec", spec).get("template", {}).get("spec", {})
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            entries.extend(c.get("env", []))
    return entries


def test_settings_classes_read_these_names() -> None:
    from loyalnest.services.registry import spec_for

    for component in SECRET_ENV:
        settings = spec_for(component.replace("-", "_")).settings_type
        fields = {f"LOYALNEST_{field.upper()}" for field in settings.model_fields}
        assert set(SECRET_ENV[component]) <= fields, component


def test_the_callers_of_auth_get_a_credential_and_its_target(
    rendered: dict[str, Objects],
) -> None:
    """Service identity: a service that calls Auth (where service tokens come from) reads its
    credential from a Secret and finds Auth among its call targets; a service that does not
    call Auth holds no credential (it could not use it: its NetworkPolicy has no way there);
    Auth holds only the master key."""
    from loyalnest.platform.auth.service_identity import SERVICE_GRANTS

    objects = rendered["default"]
    values = _values("default")
    callers = 0
    for component, settings in values["components"].items():
        if not settings.get("enabled"):
            continue
        env = {e["name"]: e for e in container(objects, "Deployment", component, component)["env"]}
        targets = json.loads(env.get("LOYALNEST_CALL_TARGETS", {}).get("value", "{}"))
        if component == "auth":
            assert "LOYALNEST_SERVICE_CREDENTIAL" not in env
            assert "LOYALNEST_AUTH_SERVICE_CREDENTIAL_KEY" in env
            continue
        if "auth" not in targets:
            assert "LOYALNEST_SERVICE_CREDENTIAL" not in env, component
            continue
        callers += 1
        # Grants are keyed by registry name (event_tracking), components by k8s name.
        service = settings.get("service", component.replace("-", "_"))
        assert service in SERVICE_GRANTS, component  # Auth issues it tokens
        assert "secretKeyRef" in env["LOYALNEST_SERVICE_CREDENTIAL"]["valueFrom"]
        assert targets["auth"] == "dns:///auth.loyalnest.svc.cluster.local:50051"
    assert callers >= 2  # points and edge


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_auth_and_users_read_sensitive_settings_from_secret_key_refs(
    rendered: dict[str, Objects], name: str
) -> None:
    values = _values(name)
    secret = values["secrets"]["existingSecret"]
    checked = 0
    for component, expected in SECRET_ENV.items():
        if not values["components"][component].get("enabled"):
            continue
        main = container(rendered[name], "Deployment", component, component)
        env = {e["name"]: e for e in main["env"]}
        for env_name, key in expected.items():
            assert env[env_name] == {
                "name": env_name,
                "valueFrom": {"secretKeyRef": {"name": secret, "key": key}},
            }, (component, env_name)
        checked += 1
    assert checked, "auth and users are on in every combination"
    # No plaintext anywhere: not in another container, not as a plain env value.
    for entry in _env_entries(rendered[name]):
        if entry["name"] in SENSITIVE:
            assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], entry
    assert not [o for o in rendered[name] if o["kind"] == "Secret"]


def test_secret_env_overrides_secret_and_key() -> None:
    objects = parse(
        helm.template(
            Render(
                overrides={
                    "components": {
                        "users": {
                            "secretEnv": {
                                "LOYALNEST_USERS_ENCRYPTION_KEY": {
                                    "secret": "users-pii",
                                    "key": "encryption-key",
                                }
                            }
                        }
                    }
                }
            )
        )
    )
    env = {e["name"]: e for e in container(objects, "Deployment", "users", "users")["env"]}
    assert env["LOYALNEST_USERS_ENCRYPTION_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "users-pii", "key": "encryption-key"}
    }
    # The entries not overridden keep their defaults (maps merge).
    assert env["LOYALNEST_USERS_BLIND_INDEX_KEY"]["valueFrom"]["secretKeyRef"]["key"] == (
        "users-blind-index-key"
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # A plaintext value is not a secretEnv entry (strict schema) ...
        (
            {
                "components": {
                    "auth": {"secretEnv": {"LOYALNEST_SHOPIFY_API_SECRET": {"value": "x"}}}
                }
            },
            "schema",
        ),
        ({"components": {"auth": {"secretEnv": {"LOYALNEST_X": {"secret": "s"}}}}}, "schema"),
        # ... and the same name in env and secretEnv is refused, not silently doubled.
        (
            {"components": {"auth": {"env": {"LOYALNEST_AUTH_ENCRYPTION_KEY": "plaintext"}}}},
            "both env and secretEnv",
        ),
    ],
)
def test_plaintext_secret_env_is_refused(overrides: dict[str, object], expected: str) -> None:
    with pytest.raises(helm.HelmError, match=expected):
        helm.template(Render(overrides=overrides))


def test_the_readme_lists_every_secret_key_of_the_chart() -> None:
    """README "Operate on Kubernetes": the Secret's keys listed, and given in the example
    `kubectl create secret`, are exactly those of values.yaml's secretEnv entries."""
    import re

    from loyalnest.deploy.paths import REPO

    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    keys = {
        ref["key"]
        for settings in [values["componentDefaults"], *values["components"].values()]
        if settings.get("enabled", True)
        for ref in (settings.get("secretEnv") or {}).values()
    }
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Operate on Kubernetes") :]
    listed = set(re.findall(r"^- `([-a-z<>]+)`", section, re.M))
    listed |= set(re.findall(r"^- `[-a-z]+`, `([-a-z]+)`", section, re.M))
    listed |= set(re.findall(r"and `([-a-z]+)`\n", section))
    listed |= set(re.findall(r"\) and `([-a-z]+)`", section))
    created = set(re.findall(r"--from-literal=([-a-z]+)=", section))
    credentials = {k for k in keys if k.endswith("-service-credential")}
    loop = re.search(r"for s in ([ a-z_]+); do", section)
    assert loop is not None
    created |= {f"{s.replace('_', '-')}-service-credential" for s in loop.group(1).split()}
    assert keys - credentials <= listed, keys - credentials - listed
    assert keys <= created, keys - created
