"""Every service keeps the shape README's "Anatomy of a service" describes: the same files,
extra modules only for the domain sub-areas named there, and no import cycles inside it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "pkg" / "loyalnest" / "services"
EVERY_SERVICE = {"__init__", "service", "servicer", "domain", "events", "wire"}
# Services that consume events; the others have no consumers.py.
CONSUMING = {
    "admin_core",
    "auth",
    "campaign",
    "core",
    "edge",
    "event_tracking",
    "gamification",
    "points",
    "products",
    "referrals",
    "rfm",
    "roles",
    "users",
}
# The domain sub-modules README names, per service (a service not named has none).
SUB_MODULES = {
    "auth": {
        "sessions",
        "keys",
        "credentials",
        "shopify",
        "shop_tokens",
        "staff_sessions",
        "role_permissions",
    },
    "admin_core": {"gdpr", "audit_log"},
    "core": {"billing"},
    "event_tracking": {"shipping", "person_deletion"},
    "gamification": {"leaderboards"},
    "campaign": {"shopify", "lifecycle", "eligibility", "reconcile"},
    "products": {"sync"},
    "referrals": {"crediting", "discounts", "invites", "sending", "shops", "status_feed"},
    "edge": {"webhooks", "signing", "dead_letters", "pseudonyms"},
    "points": {
        "earning",
        "orders",
        "ledger",
        "rewards",
        "discounts",
        "offline_sync",
        "expiry",
        "rules",
        "tiers",
        "tier_policy",
        "liability",
        "simulation",
        "occasions",
        "integrations",
    },
    "rfm": {"nightly"},
    "roles": set(),
    "users": set(),
}
# Every service package, those `loyalnest new-service` adds included.
NAMES = sorted(p.name for p in SERVICES.iterdir() if (p / "service.py").is_file())


def _modules(service: Path) -> dict[str, Path]:
    """Dotted module name (inside the service) -> file, `store/` modules as store.<name>."""
    modules = {}
    for path in service.rglob("*.py"):
        parts = path.relative_to(service).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)] = (
            path
        )
    return modules


def _imports(path: Path, package: str, names: set[str]) -> set[str]:
    """The modules of the same service `path` imports (TYPE_CHECKING imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            candidates = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        for candidate in candidates:
            inside = candidate.removeprefix(f"{package}.")
            if candidate.startswith(f"{package}.") and inside in names:
                found.add(inside)
    return found


def test_every_named_service_exists() -> None:
    assert set(SUB_MODULES) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_service_has_the_files_of_the_shape(name: str) -> None:
    modules = _modules(SERVICES / name)
    tops = {module.split(".")[0] for module in modules}
    required = EVERY_SERVICE | {"store"} | ({"consumers"} if name in CONSUMING else set())
    assert required <= tops, f"missing: {sorted(required - tops)}"
    assert (SERVICES / name / "migrations").is_dir()
    extra = tops - required - SUB_MODULES.get(name, set())
    assert not extra, f"not in the shape nor a named domain sub-module: {sorted(extra)}"


@pytest.mark.parametrize("name", NAMES)
def test_no_import_cycle_inside_the_service(name: str) -> None:
    modules = _modules(SERVICES / name)
    package = f"loyalnest.services.{name}"
    graph = {m: _imports(path, package, set(modules)) - {m} for m, path in modules.items()}

    def cycle_from(module: str, path: list[str]) -> list[str] | None:
        for imported in sorted(graph[module]):
            if imported in path:
                return [*path[path.index(imported) :], imported]
            found = cycle_from(imported, [*path, imported])
            if found:
                return found
        return None

    for module in sorted(graph):
        cycle = cycle_from(module, [module])
        assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize("name", NAMES)
def test_no_service_imports_another_service(name: str) -> None:
    """What two services share lives in the platform (e.g. platform/earning_rules.py, which
    Core and Points both check rules with), never in one of them."""
    own = f"loyalnest.services.{name}"
    foreign = set()
    for path in (SERVICES / name).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                if target.startswith("loyalnest.services.") and not (
                    target == own or target.startswith(f"{own}.")
                ):
                    foreign.add(f"{path.relative_to(SERVICES)}: {target}")
    assert not foreign, sorted(foreign)
