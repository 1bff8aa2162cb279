"""Customer pseudonyms are on wherever the chart runs (platform/events/pseudonyms.py, README
"GDPR"): every service Deployment of every values combination sets them, and each service that
handles customer events has the edge and Auth among its call targets and its credential, or
it would fail at start-up."""

from __future__ import annotations

import json

import pytest

from loyalnest.deploy.renders import COMBINATIONS
from loyalnest.platform.events import pseudonyms
from loyalnest.services.registry import SERVICES
from tests.deploy.conftest import Objects


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_every_service_runs_with_customer_pseudonyms_and_can_reach_the_owner(
    rendered: dict[str, Objects], name: str
) -> None:
    checked = set()
    for obj in rendered[name]:
        if obj["kind"] != "Deployment":
            continue
        service = obj["metadata"]["name"].replace("-", "_")
        if service not in SERVICES:
            continue  # the gateway, stand-ins
        (main,) = [
            c
            for c in obj["spec"]["template"]["spec"]["containers"]
            if c["name"] == obj["metadata"]["name"]
        ]
        env = {e["name"]: e for e in main["env"]}
        assert env["LOYALNEST_CUSTOMER_PSEUDONYMS"]["value"] == "true", service
        if service in pseudonyms.CALLERS:
            targets = json.loads(env["LOYALNEST_CALL_TARGETS"]["value"])
            assert pseudonyms.callees(service) <= set(targets), service
            assert targets[pseudonyms.OWNER].startswith("dns:///edge."), service
            if service != "auth":  # Auth makes its own tokens
                assert "secretKeyRef" in env["LOYALNEST_SERVICE_CREDENTIAL"]["valueFrom"]
        checked.add(service)
    assert set(pseudonyms.CALLERS) <= checked
