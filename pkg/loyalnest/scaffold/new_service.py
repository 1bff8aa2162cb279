"""`loyalnest new-service NAME`: a working service, from proto to chart, in one step.

Renders the templates in `templates/` (jinja2) into new files, and adds the service's line to
the files every service is listed in:

    proto/loyalnest/<pkg>/v1/<pkg>.proto        CreateItem + GetItem, REST, access, idempotency
    pkg/loyalnest/services/<pkg>/               service, servicer, domain, store, wire, events,
                                                migrations/<pkg>_0001_items.sql
    cmd/<component>                             the process entry point
    tests/integration/test_<pkg>_service.py     health, reflection, gRPC, REST via Envoy,
                                                isolation (its ISOLATION table)
    services/registry.py                        SERVICES (the local stack follows it)
    charts/loyalnest/values.yaml                components.<component> (a disabled entry from
                                                the seed is enabled, its `calls` dropped)
    deploy/callgraph.py                         BEYOND_SEED, when the seed does not list it
    tests/integration/test_tenant_isolation.py  TABLES_ELSEWHERE
    README.md                                   the Services table

The new service calls no other (`CALLS = Calls()` in its service.py, which shows how to add
one): the chart derives its call targets and NetworkPolicy from that (`make chart`), so its
values entry has no `calls` list; calling no one, it needs no service credential (the chart
and the local stack give one only to callers of Auth) and no grant in SERVICE_GRANTS.

Everything is computed before anything is written: a refused name or an unexpected file
leaves the checkout as it was. Generated code (pkg/loyalnest/gen) is `make gen`'s, the
chart's calls.json, gateway files and golden renders `make chart`'s: the scaffold writes none.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from loyalnest.scaffold.names import ServiceNames

if TYPE_CHECKING:
    import jinja2

TEMPLATES = Path(__file__).parent / "templates"
SERVICE_DIR = "pkg/loyalnest/services/{package}"
# Where a new service's own files go, by template (relative to the repository).
NEW_FILES: dict[str, str] = {
    "proto.proto.j2": "proto/loyalnest/{package}/v1/{package}.proto",
    "service/__init__.py.j2": "pkg/loyalnest/services/{package}/__init__.py",
    "service/service.py.j2": "pkg/loyalnest/services/{package}/service.py",
    "service/servicer.py.j2": "pkg/loyalnest/services/{package}/servicer.py",
    "service/domain.py.j2": "pkg/loyalnest/services/{package}/domain.py",
    "service/store.py.j2": "pkg/loyalnest/services/{package}/store.py",
    "service/wire.py.j2": "pkg/loyalnest/services/{package}/wire.py",
    "service/events.py.j2": "pkg/loyalnest/services/{package}/events.py",
    "service/migration.sql.j2": SERVICE_DIR + "/migrations/{package}_0001_items.sql",
    "cmd.j2": "cmd/{component}",
    "test_service.py.j2": "tests/integration/test_{package}_service.py",
}
EXECUTABLE = frozenset({"cmd.j2"})

REGISTRY = "pkg/loyalnest/services/registry.py"
VALUES = "charts/loyalnest/values.yaml"
CALLGRAPH = "pkg/loyalnest/deploy/callgraph.py"
ISOLATION = "tests/integration/test_tenant_isolation.py"
README = "README.md"
LINE_LENGTH = 100


class ScaffoldError(Exception):
    """The service cannot be created; the message says why (nothing was written)."""


@dataclass
class Plan:
    """Every file to write, with its whole new content."""

    names: ServiceNames
    repo: Path
    files: dict[Path, str] = field(default_factory=dict)
    executable: set[Path] = field(default_factory=set)

    def write(self) -> None:
        for path, content in self.files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            if path in self.executable:
                path.chmod(0o755)

    @property
    def python_files(self) -> list[Path]:
        return sorted(p for p in self.files if p.suffix == ".py")


def default_repo() -> Path:
    """The checkout this package runs from (an editable install, as `make setup` makes)."""
    return Path(__file__).resolve().parents[3]


def plan(name: str, repo: Path) -> Plan:
    """What `new-service NAME` writes into `repo`; raises InvalidName or ScaffoldError."""
    names = ServiceNames.parse(name)
    if not (repo / REGISTRY).is_file() or not (repo / "proto").is_dir():
        raise ScaffoldError(f"{repo} is not a LoyalNest checkout (no {REGISTRY})")
    _refuse_existing(names, repo)
    result = Plan(names, repo)
    environment = _environment()
    for template, target in NEW_FILES.items():
        relative = target.format(package=names.package, component=names.component)
        path = repo / relative
        if path.exists():
            raise ScaffoldError(f"{relative} exists already: remove it or pick another name")
        result.files[path] = environment.get_template(template).render(n=names)
        if template in EXECUTABLE:
            result.executable.add(path)
    values = (repo / VALUES).read_text()
    if names.component not in _chart_components(values):
        # The chart has an entry for every component of the seed: one it lacks is beyond it,
        # and the call graph the chart's calls are checked against must name it (with the
        # callees it may call: none, as its CALLS).
        path = repo / CALLGRAPH
        result.files[path] = _add_beyond_seed(path.read_text(), names)
    result.files[repo / VALUES] = _enable_component(values, names)
    edits = {
        REGISTRY: _add_to_registry,
        ISOLATION: _add_isolation_table,
        README: _add_readme_row,
    }
    for relative, edit in edits.items():
        path = repo / relative
        result.files[path] = edit(path.read_text(), names)
    return result


def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        # A misspelt variable must fail the scaffold, not render as an empty string.
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        # Block and comment tags on a line of their own leave no trace.
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # source code, not HTML
    )


# --- refusing names that are taken --------------------------------------------------------


def _dict_keys(source: str, name: str) -> set[str]:
    """The string keys of the module-level dict literal `name` in `source`."""
    target: ast.expr
    value: ast.expr | None
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id == name and isinstance(value, ast.Dict):
            return {
                key.value
                for key in value.keys
                if isinstance(key, ast.Constant) and isinstance(key.value, str)
            }
    raise ScaffoldError(f"no dict literal {name} found to add the service to")


def _chart_components(values: str) -> dict[str, dict[str, object]]:
    import yaml

    components: dict[str, dict[str, object]] = yaml.safe_load(values)["components"]
    return components


def _refuse_existing(names: ServiceNames, repo: Path) -> None:
    taken = [
        where
        for where, exists in (
            (REGISTRY, names.package in _dict_keys((repo / REGISTRY).read_text(), "SERVICES")),
            (
                f"pkg/loyalnest/services/{names.package}/",
                (repo / "pkg/loyalnest/services" / names.package).exists(),
            ),
            (
                f"proto/loyalnest/{names.package}/",
                (repo / "proto/loyalnest" / names.package).exists(),
            ),
            (
                f"{VALUES} (components.{names.component} is enabled)",
                bool(
                    _chart_components((repo / VALUES).read_text())
                    .get(names.component, {})
                    .get("enabled")
                ),
            ),
        )
        if exists
    ]
    if taken:
        raise ScaffoldError(f"service {names.package!r} exists already: {', '.join(taken)}")


# --- edits of the files every service is listed in ----------------------------------------


def _dict_entry(key: str, value: str) -> list[str]:
    """One entry of a dict literal at module level, wrapped when it would be too long."""
    line = f'    "{key}": {value},\n'
    if len(line) - 1 <= LINE_LENGTH:
        return [line]
    return [f'    "{key}": (\n', f"        {value}\n", "    ),\n"]


def _insert_in_dict(source: str, opening: str, entry: list[str], what: str) -> str:
    """`entry` added as the last item of the dict literal whose first line is `opening`
    (written one item a line, closed by a `}` line of its own)."""
    lines = source.splitlines(keepends=True)
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith(opening))
        end = next(i for i in range(start, len(lines)) if lines[i].rstrip("\n") == "}")
    except StopIteration:
        raise ScaffoldError(
            f"cannot find `{opening}` ... `}}` to add the service to {what}: add it by hand"
        ) from None
    return "".join([*lines[:end], *entry, *lines[end:]])


def _add_to_registry(source: str, names: ServiceNames) -> str:
    # Last: the local stack gives services ports in this order, existing ones keep theirs.
    entry = _dict_entry(names.package, f'"loyalnest.services.{names.package}.service"')
    return _insert_in_dict(source, "SERVICES: dict[str, str] = {", entry, REGISTRY)


def _add_beyond_seed(source: str, names: ServiceNames) -> str:
    entry = _dict_entry(names.component, "set()")
    return _insert_in_dict(source, "BEYOND_SEED: dict[str, set[str]] = {", entry, CALLGRAPH)


def _add_isolation_table(source: str, names: ServiceNames) -> str:
    entry = _dict_entry(
        names.full_service_name, f'"tests.integration.test_{names.package}_service"'
    )
    return _insert_in_dict(source, "TABLES_ELSEWHERE: dict[str, str] = {", entry, ISOLATION)


def _add_readme_row(source: str, names: ServiceNames) -> str:
    lines = source.splitlines(keepends=True)
    try:
        heading = lines.index("## Services\n")
        first = next(i for i in range(heading, len(lines)) if lines[i].startswith("|"))
    except (ValueError, StopIteration):
        raise ScaffoldError(
            f"no table under `## Services` in {README}: add the row by hand"
        ) from None
    end = next((i for i in range(first, len(lines)) if not lines[i].startswith("|")), len(lines))
    base = f"/v1/api/{names.component}/items"
    row = (
        f"| {names.display} | `{names.full_service_name}` |"
        f" `{base}` (POST), `{base}/{{item_id}}` |\n"
    )
    return "".join([*lines[:end], row, *lines[end:]])


def _enable_component(values: str, names: ServiceNames) -> str:
    """components.<component> enabled: the seed's disabled entry if there is one, without its
    `calls` (the chart refuses them for a component with code: they come from its CALLS),
    else a new entry."""
    lines = values.splitlines(keepends=True)
    try:
        section = lines.index("components:\n")
    except ValueError:
        raise ScaffoldError(f"no top-level `components:` in {VALUES}") from None
    section_end = next(
        (i for i in range(section + 1, len(lines)) if lines[i].strip() and lines[i][0] != " "),
        len(lines),
    )
    while not lines[section_end - 1].strip():
        section_end -= 1
    header = f"  {names.component}:\n"
    if header not in lines[section:section_end]:
        edited = [*lines[:section_end], header, "    enabled: true\n", *lines[section_end:]]
    else:
        start = lines.index(header, section)
        end = next(
            (
                i
                for i in range(start + 1, section_end)
                if lines[i].strip() and not lines[i].startswith("   ")
            ),
            section_end,
        )
        block: list[str] = []
        in_calls = False
        for line in lines[start:end]:
            if line.startswith("    calls:"):
                in_calls = True  # the key and its continuation lines (a wrapped flow list)
                continue
            if in_calls and line.startswith("     ") and not line.lstrip().startswith("#"):
                continue
            in_calls = False
            block.append("    enabled: true\n" if line == "    enabled: false\n" else line)
        edited = [*lines[:start], *block, *lines[end:]]
    result = "".join(edited)
    component = _chart_components(result)[names.component]
    if component.get("enabled") is not True or "calls" in component:
        raise ScaffoldError(f"could not enable components.{names.component} in {VALUES}")
    return result


# --- the command --------------------------------------------------------------------------


def _ruff() -> Path | None:
    found = shutil.which("ruff")
    beside = Path(sys.executable).parent / "ruff"
    return Path(found) if found else beside if beside.exists() else None


def format_python(repo: Path, paths: list[Path]) -> bool | None:
    """ruff (the repository's settings) on the files written: long names wrap, imports sort.
    False when ruff reports what it cannot fix, None when it is not installed."""
    ruff = _ruff()
    if ruff is None:
        return None
    files = [str(p) for p in paths]
    subprocess.run([str(ruff), "format", "--quiet", *files], cwd=repo, check=False)
    # What --fix cannot fix is printed; the files are written, so the developer fixes it.
    checked = subprocess.run(
        [str(ruff), "check", "--fix", "--quiet", *files], cwd=repo, check=False
    )
    return checked.returncode == 0


def run(name: str, repo: Path | None = None) -> int:
    """The `loyalnest new-service` command."""
    from loyalnest.scaffold.names import InvalidName

    repo = (repo or default_repo()).resolve()
    try:
        result = plan(name, repo)
    except (InvalidName, ScaffoldError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result.write()
    names = result.names
    for path in sorted(result.files):
        print(f"  {path.relative_to(repo)}")
    formatted = format_python(repo, result.python_files)
    if formatted is None:
        print("ruff not found: run `make fmt` before committing", file=sys.stderr)
    elif not formatted:
        print("error: ruff reports the problems above in the files written", file=sys.stderr)
        return 1
    print(
        f"\n{names.service} is scaffolded. Next:\n"
        "  make gen chart    # generated code, the gateway's chart config, k8s/base, goldens\n"
        f"  .venv/bin/pytest tests/integration/test_{names.package}_service.py\n"
        "  make test lint\n"
        "  .venv/bin/loyalnest up   # serves it through the gateway on 127.0.0.1:8080\n"
        f"It calls no service yet: CALLS in {SERVICE_DIR.format(package=names.package)}/service.py"
        " says how to add one."
    )
    return 0
