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
# Names no real service takes, so these tests pass after any `new-service`.
NEW = "sample-widgets"
LONG = "abcdefghijk-lmnopqrstuvw"  # the longest accepted, 24 characters


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
    result = plan(NEW, REPO)
    written = {path.relative_to(REPO).as_posix() for path in result.files}
    service = "pkg/loyalnest/services/sample_widgets"
    assert {
        "proto/loyalnest/sample_widgets/v1/sample_widgets.proto",
        *(
            f"{service}/{module}.py"
            for module in ("__init__", "service", "servicer", "domain", "store", "wire", "events")
        ),
        f"{service}/migrations/sample_widgets_0001_items.sql",
        "cmd/sample-widgets",
        "tests/integration/test_sample_widgets_service.py",
        REGISTRY,
        VALUES,
        CALLGRAPH,  # not in the seed: beyond it
        "tests/integration/test_tenant_isolation.py",
        "README.md",
    } == written
    assert not any((REPO / path).exists() for path in written if "sample" in path)
    for path, content in result.files.items():
        if path.suffix == ".py":
            ast.parse(content, str(path))
    # Last: the local stack gives ports in registry order, existing services keep theirs.
    (services,) = [
        node.value
        for node in ast.parse(result.files[REPO / REGISTRY]).body
        if isinstance(node, ast.AnnAssign) and ast.unparse(node.target) == "SERVICES"
    ]
    assert isinstance(services, ast.Dict)
    assert ast.literal_eval(services.keys[-1]) == "sample_widgets"  # type: ignore[arg-type]
    component = yaml.safe_load(result.files[REPO / VALUES])["components"]["sample-widgets"]
    # No `calls` (the chart takes them from its code) and no credential: it calls no one.
    assert component == {"enabled": True}
    service_py = result.files[REPO / service / "service.py"]
    assert "CALLS = Calls()" in service_py and "calls=CALLS," in service_py
    assert '"sample-widgets": set(),' in result.files[REPO / CALLGRAPH]
    assert not any("SWAP" in content for content in result.files.values())
    proto = result.files[REPO / "proto/loyalnest/sample_widgets/v1/sample_widgets.proto"]
    for expected in (
        "package loyalnest.sample_widgets.v1;",
        "service SampleWidgetsService {",
        'permission: "sample_widgets:write"',
        'permission: "sample_widgets:read"',
        "option idempotency_level = IDEMPOTENT;",
        "option idempotency_level = NO_SIDE_EFFECTS;",
        'post: "/v1/api/sample-widgets/items"',
        'get: "/v1/api/sample-widgets/items/{item_id}"',
        "string idempotency_key = 2",
    ):
        assert expected in proto


def _seed_components_without_code() -> list[str]:
    components = yaml.safe_load((REPO / VALUES).read_text())["components"]
    return sorted(name for name, c in components.items() if not c.get("enabled"))


@pytest.mark.parametrize("name", _seed_components_without_code() or ["(none left)"])
def test_a_seed_component_is_enabled_without_its_calls(name: str) -> None:
    """The chart's disabled entry of a seed service becomes the service's: enabled, without
    the seed's `calls` (from now on its code's, which the chart refuses to see doubled), the
    rest of the chart as it was; the seed needs no BEYOND_SEED line."""
    if name == "(none left)":
        pytest.skip("every component of the chart is a service already")
    values = yaml.safe_load((REPO / VALUES).read_text())["components"]
    result = plan(name, REPO)
    after = yaml.safe_load(result.files[REPO / VALUES])["components"]
    assert after[name] == {
        **{k: v for k, v in values[name].items() if k != "calls"},
        "enabled": True,
    }
    assert {k: v for k, v in after.items() if k != name} == {
        k: v for k, v in values.items() if k != name
    }
    assert REPO / CALLGRAPH not in result.files


def test_long_names_stay_within_the_line_length() -> None:
    result = plan(LONG, REPO)
    isolation = result.files[REPO / "tests/integration/test_tenant_isolation.py"]
    assert max(len(line) for line in isolation.splitlines()) <= 100
    ast.parse(isolation)
