"""`loyalnest new-service`: names, refusals, and what it would write (planned against this
checkout, never written: tests/integration/test_scaffold.py writes into a copy)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from loyalnest.scaffold.names import InvalidName, ServiceNames
from loyalnest.scaffold.new_service import CALLGRAPH, REGISTRY, VALUES, ScaffoldError, plan

REPO = Path(__file__).resolve().parents[2]


def test_names_of_a_two_word_service() -> None:
    names = ServiceNames.parse("event-tracking")
    assert names == ServiceNames.parse("event_tracking")
    assert (names.package, names.component, names.title) == (
        "event_tracking",
        "event-tracking",
        "EventTracking",
    )
    assert names.full_service_name == "loyalnest.event_tracking.v1.EventTrackingService"
    assert (names.read_permission, names.write_permission) == (
        "event_tracking:read",
        "event_tracking:write",
    )


@pytest.mark.parametrize(
    "name",
    ["Widgets", "9lives", "a--b", "with space", "trailing-", "import", "events", "x" * 25, ""],
)
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidName, match="invalid service name"):
        ServiceNames.parse(name)


@pytest.mark.parametrize("name", ["roles", "points", "core"])
def test_existing_services_are_refused(name: str) -> None:
    with pytest.raises(ScaffoldError, match="exists already"):
        plan(name, REPO)


def test_a_new_service_touches_every_list_and_writes_nothing_yet() -> None:
    result = plan("widgets", REPO)
    written = {path.relative_to(REPO).as_posix() for path in result.files}
    assert {
        "proto/loyalnest/widgets/v1/widgets.proto",
        "pkg/loyalnest/services/widgets/__init__.py",
        "pkg/loyalnest/services/widgets/service.py",
        "pkg/loyalnest/services/widgets/servicer.py",
        "pkg/loyalnest/services/widgets/domain.py",
        "pkg/loyalnest/services/widgets/store.py",
        "pkg/loyalnest/services/widgets/wire.py",
        "pkg/loyalnest/services/widgets/events.py",
        "pkg/loyalnest/services/widgets/migrations/widgets_0001_items.sql",
        "cmd/widgets",
        "tests/integration/test_widgets_service.py",
        REGISTRY,
        VALUES,
        CALLGRAPH,  # not in the seed: beyond it
        "pkg/loyalnest/platform/auth/service_identity.py",
        "tests/integration/test_tenant_isolation.py",
        "README.md",
    } == written
    assert not any((REPO / path).exists() for path in written if "widgets" in path)
    for path, content in result.files.items():
        if path.suffix == ".py":
            ast.parse(content, str(path))
    registry = result.files[REPO / REGISTRY]
    # Last: the local stack's existing services keep their ports.
    assert registry.index('"core"') < registry.index('"widgets": "loyalnest.services.widgets')
    component = yaml.safe_load(result.files[REPO / VALUES])["components"]["widgets"]
    assert component == {
        "enabled": True,
        "calls": [],
        "secretEnv": {"LOYALNEST_SERVICE_CREDENTIAL": {"key": "widgets-service-credential"}},
    }
    proto = result.files[REPO / "proto/loyalnest/widgets/v1/widgets.proto"]
    for expected in (
        "package loyalnest.widgets.v1;",
        "service WidgetsService {",
        'permission: "widgets:write"',
        'permission: "widgets:read"',
        "option idempotency_level = IDEMPOTENT;",
        "option idempotency_level = NO_SIDE_EFFECTS;",
        'post: "/v1/api/widgets/items"',
        'get: "/v1/api/widgets/items/{item_id}"',
        "string idempotency_key = 2",
    ):
        assert expected in proto


def test_a_seed_component_is_enabled_with_its_calls() -> None:
    """The chart's disabled entry of a seed service becomes the service's: enabled, its
    `calls` as the seed has them, its credential added; the seed needs no BEYOND_SEED line."""
    before = yaml.safe_load((REPO / VALUES).read_text())["components"]["rfm"]
    result = plan("rfm", REPO)
    after = yaml.safe_load(result.files[REPO / VALUES])["components"]["rfm"]
    assert after == {
        **before,
        "enabled": True,
        "secretEnv": {"LOYALNEST_SERVICE_CREDENTIAL": {"key": "rfm-service-credential"}},
    }
    assert REPO / CALLGRAPH not in result.files
    rest = yaml.safe_load(result.files[REPO / VALUES])
    assert (
        rest["components"]["points"]
        == yaml.safe_load((REPO / VALUES).read_text())["components"]["points"]
    )


def test_long_names_stay_within_the_line_length() -> None:
    result = plan("abcdefghijk-lmnopqrstuvw", REPO)
    isolation = result.files[REPO / "tests/integration/test_tenant_isolation.py"]
    assert max(len(line) for line in isolation.splitlines()) <= 100
    ast.parse(isolation)
