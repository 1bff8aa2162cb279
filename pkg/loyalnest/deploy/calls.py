"""Who calls whom, as the chart needs it: generated from the services' code.

Each service declares the services it calls on its `ServiceSpec` (`calls=Calls(...)`,
loyalnest.platform.calls). The chart cannot import Python, so this writes the declarations of
every service in the registry to `charts/loyalnest/files/calls.json` (service -> callees); the
chart renders each component's LOYALNEST_CALL_TARGETS and NetworkPolicy egress (and its
callees' ingress) from it. Components the seed designs but the code does not have yet keep a
hand-written `components.<name>.calls` in values.yaml (checked against the seed's call graph
by tests/deploy); a component may not have both.

The calls of a service's relay process (componentDefaults.relay.separate) are fewer: only its
event loops' for customer pseudonyms, in `files/relay-calls.json`.

`python -m loyalnest.deploy calls [--check]` writes (or checks) the files.
"""

from __future__ import annotations

import json
from pathlib import Path

from loyalnest.deploy.paths import CHART_DIR
from loyalnest.platform.calls import dns_name
from loyalnest.platform.events import pseudonyms
from loyalnest.services.registry import SERVICES, spec_for

CALLS_FILE = CHART_DIR / "files" / "calls.json"
RELAY_CALLS_FILE = CHART_DIR / "files" / "relay-calls.json"


def code_call_graph() -> dict[str, list[str]]:
    """Every registry service (the name `loyalnest serve` takes) -> the components it calls
    (their Kubernetes names), from its code: its declared calls and its event loops'."""
    return {
        service: sorted(
            dns_name(callee)
            for callee in set(spec_for(service).calls.services) | pseudonyms.callees(service)
        )
        for service in sorted(SERVICES)
    }


def graph_files() -> dict[Path, str]:
    """The chart's generated call graphs and their text: the services' and their relays'."""
    return {
        CALLS_FILE: _graph_text(code_call_graph()),
        RELAY_CALLS_FILE: _graph_text(relay_call_graph()),
    }


def _graph_text(graph: dict[str, list[str]]) -> str:
    return json.dumps(graph, indent=2, sort_keys=True) + "\n"


def relay_call_graph() -> dict[str, list[str]]:
    """Every registry service -> the components its relay process (`loyalnest relay`) calls:
    only for customer pseudonyms, the owner and Auth for the token (nothing for the owner,
    whose relay reads its own store). The chart's `<name>-relay` NetworkPolicies follow it."""
    return {
        service: sorted(dns_name(callee) for callee in pseudonyms.callees(service))
        for service in sorted(SERVICES)
    }
