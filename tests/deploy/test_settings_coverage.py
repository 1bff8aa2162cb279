"""Every setting a service reads that has no safe production default comes from the chart.

Derived from the pydantic settings classes themselves (`spec_for(service).settings_type`), so a
service that grows a key, a secret or a URL defaulting to the developer's machine fails here
until the chart provides it (or an exemption below says why it need not):

- a required field (no default): the pod would not start;
- a secret (SecretStr): from a Secret (secretKeyRef), never a plain value;
- a default pointing at this machine (127.0.0.1, localhost): wrong in any pod.
"""

from __future__ import annotations

import json

import pytest
from pydantic.fields import FieldInfo

from loyalnest.deploy.paths import CHART_DIR
from tests.deploy.conftest import Objects, container

# (component or "*", env name) -> why the chart need not set it.
EXEMPT: dict[tuple[str, str], str] = {
    ("auth", "LOYALNEST_SHOPIFY_REDIRECT_URL"): (
        "the app's own URL, which only the operator knows: auth.shopifyRedirectUrl"
    ),
}
# Rotation lists: empty until a rotation, then set by the operator (README, key rotation).
ROTATION_SUFFIXES = ("_PREVIOUS_KEYS", "_PREVIOUS_SECRETS")


def _calls() -> dict[str, list[str]]:
    calls: dict[str, list[str]] = json.loads((CHART_DIR / "files" / "calls.json").read_text())
    return calls


def _sensitive(field: FieldInfo) -> bool:
    return "SecretStr" in repr(field.annotation)


def _unsafe_default(field: FieldInfo) -> bool:
    if field.is_required():
        return True
    default = field.get_default(call_default_factory=True)
    return isinstance(default, str) and ("127.0.0.1" in default or "localhost" in default)


def _exempt(component: str, service: str, env_name: str) -> str | None:
    if env_name.endswith(ROTATION_SUFFIXES):
        return "rotation only"
    if env_name == "LOYALNEST_SERVICE_CREDENTIAL" and "auth" not in _calls().get(service, []):
        # test_secret_env: only the callers of Auth hold one (no way to use it otherwise).
        return "calls no Auth"
    return EXEMPT.get((component, env_name)) or EXEMPT.get(("*", env_name))


def needed(component: str, service: str) -> dict[str, bool]:
    """The env names the chart must set for `component`: name -> whether it is a secret."""
    from loyalnest.services.registry import spec_for

    settings = spec_for(service).settings_type
    names: dict[str, bool] = {}
    for field_name, field in settings.model_fields.items():
        env_name = f"LOYALNEST_{field_name.upper()}"
        if not (_sensitive(field) or _unsafe_default(field)):
            continue
        if _exempt(component, service, env_name):
            continue
        names[env_name] = _sensitive(field)
    return names


def _enabled(objects: Objects) -> dict[str, str]:
    """Enabled components of a render -> their registry name (the `serve` argument)."""
    found = {}
    for obj in objects:
        if obj["kind"] != "Deployment" or obj["metadata"]["name"] == "gateway":
            continue
        args = obj["spec"]["template"]["spec"]["containers"][0].get("args") or []
        command = obj["spec"]["template"]["spec"]["containers"][0].get("command") or []
        argv = [*command, *args]
        if "serve" in argv:
            found[obj["metadata"]["name"]] = argv[argv.index("serve") + 1]
    return found


@pytest.mark.parametrize("name", ["default", "kind", "external-backends"])
def test_settings_without_a_safe_default_come_from_the_chart(
    rendered: dict[str, Objects], name: str
) -> None:
    objects = rendered[name]
    enabled = _enabled(objects)
    assert len(enabled) >= 13, enabled  # every service the registry has, admin-features aside
    missing: list[str] = []
    for component, service in sorted(enabled.items()):
        env = {e["name"]: e for e in container(objects, "Deployment", component, component)["env"]}
        for env_name, secret in needed(component, service).items():
            entry = env.get(env_name)
            if entry is None:
                missing.append(f"{component}: {env_name}")
            elif secret and "secretKeyRef" not in entry.get("valueFrom", {}):
                missing.append(f"{component}: {env_name} is a secret, not from a Secret")
    assert not missing, "settings the chart does not provide:\n" + "\n".join(missing)


def test_the_check_sees_what_it_should() -> None:
    """The derivation finds the settings it exists for (it would pass vacuously otherwise)."""
    event_tracking = needed("event-tracking", "event_tracking")
    assert event_tracking["LOYALNEST_EVENT_TRACKING_PSEUDONYM_KEY"] is True
    assert event_tracking["LOYALNEST_POSTHOG_API_KEY"] is True
    assert event_tracking["LOYALNEST_PAGE_TOKEN_KEY"] is True
    assert event_tracking["LOYALNEST_DATABASE_URL"] is False  # a localhost default
    # Calls Auth only for its token for the edge's customer pseudonyms (its event loops).
    assert "LOYALNEST_SERVICE_CREDENTIAL" in event_tracking
    assert "LOYALNEST_SERVICE_CREDENTIAL" not in needed("users", "users")  # calls no Auth
    assert needed("edge", "edge")["LOYALNEST_SHOPIFY_API_SECRET"] is True  # required
    assert needed("points", "points")["LOYALNEST_POINTS_DISCOUNT_CODE_KEY"] is True
    assert "LOYALNEST_USERS_ENCRYPTION_PREVIOUS_KEYS" not in needed("users", "users")
