"""The backends Secret `tools/kind-up.sh` creates covers every key the kind render reads."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from loyalnest.deploy import helm
from loyalnest.deploy.dev_secret import (
    MASTER_KEY,
    SECRET_NAME,
    UnknownSecretKey,
    complete,
    required_keys,
)
from loyalnest.deploy.paths import REPO
from loyalnest.deploy.renders import COMBINATIONS
from loyalnest.platform.auth.service_identity import service_credential
from tests.deploy.conftest import Objects


def test_every_key_the_kind_render_reads_gets_a_value(rendered: dict[str, Objects]) -> None:
    required = required_keys(rendered["kind"])
    # The credentials of the callers of Auth are among them (they were missing before).
    assert {MASTER_KEY, "points-service-credential", "edge-service-credential"} <= required
    values = complete(required, {})
    assert required <= set(values)
    master = base64.b64decode(values[MASTER_KEY])
    for key in required:
        if key.endswith("-service-credential"):
            service = key.removesuffix("-service-credential").replace("-", "_")
            assert values[key] == service_credential(master, service), key
        if key.endswith(("-encryption-key", "-blind-index-key")):
            assert len(base64.b64decode(values[key])) == 32, key
    assert values["postgres-password"] in values["database-url"]


def test_existing_values_are_kept_and_credentials_follow_the_kept_master_key(
    rendered: dict[str, Objects],
) -> None:
    required = required_keys(rendered["kind"])
    first = complete(required, {})
    # An older Secret: its master key and encryption keys, but no service credentials.
    older = {k: v for k, v in first.items() if not k.endswith("-service-credential")}
    again = complete(required, older)
    assert again == first


def test_a_key_without_a_development_value_is_refused() -> None:
    with pytest.raises(UnknownSecretKey, match="stripe-key"):
        complete({"stripe-key"}, {})


def test_the_command_prints_a_secret_for_kubectl_apply(tmp_path: Path) -> None:
    render = tmp_path / "rendered.yaml"
    render.write_text(helm.template(COMBINATIONS["kind"]))
    existing = tmp_path / "existing.json"
    existing.write_text(
        json.dumps({"data": {"auth-encryption-key": base64.b64encode(b"kept").decode()}})
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "loyalnest.deploy.dev_secret",
            str(render),
            "--existing",
            str(existing),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    secret = yaml.safe_load(result.stdout)
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == SECRET_NAME
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["auth-encryption-key"] == "kept"
    objects = [obj for obj in yaml.safe_load_all(render.read_text()) if obj]
    assert required_keys(objects) <= set(data)


def test_kind_up_creates_the_secret_from_the_render() -> None:
    script = (REPO / "tools" / "kind-up.sh").read_text()
    assert "loyalnest.deploy.dev_secret" in script
    assert "--from-literal" not in script  # no hand-written key list any more
