"""Who calls whom, read from the seed design ("Calls:" and "Called By:" of each service).

The chart's NetworkPolicies allow gRPC from a component only to the components it calls: what
a service's code declares (loyalnest.deploy.calls), or for a component without code yet
`components.<name>.calls` in values.yaml. Tests keep the code's calls within this graph and the
values' lists equal to it, so the policy cannot silently diverge from the design.

The seed's two views disagree in places (Core lists RFM among its callers, RFM's own "Calls"
omit Core), so the graph is their union: with a default-deny policy a missing edge breaks a
call, an extra one only permits it. The gateway and the frontend are left out: the gateway may
reach every component anyway (it routes the whole API), and the frontend only talks to the
gateway.
"""

from __future__ import annotations

import re
from pathlib import Path

from loyalnest.deploy.paths import REPO

SEED = REPO.parent / "shared" / "seed" / "loyalnest-microservice-design.txt"

# How the seed names each service (headings, "Called By" lists) -> the component name.
ALIASES: dict[str, str] = {
    "core": "core",
    "auth": "auth",
    "api-gateway": "gateway",
    "points": "points",
    "referrals": "referrals",
    "users-service": "users",
    "users": "users",
    "roles-service": "roles",
    "roles": "roles",
    "rfm-service": "rfm",
    "rfm": "rfm",
    "event tracking": "event-tracking",
    "admincore": "admin-core",
    "adminfeatures": "admin-features",
    "campaign": "campaign",
    "gamification": "gamification",
    "frontend": "frontend",
    "products": "products",
}
EDGE = frozenset({"gateway", "frontend"})

_HEADING = re.compile(r"^(\d{1,2})\.\s+(.+?)(?:\s+Service)?\s*$")
_CALLS = re.compile(r"Calls\W*:(.*?)(?:Called By|\n\S|\n\s*-\s*\*?\*?Interactions|$)", re.S)
_CALLED_BY = re.compile(r"Called By\W*:([^\n]*)")
_GRPC_PACKAGE = re.compile(r"/([a-z_]+)\.v1/")


def _sections(text: str) -> dict[str, str]:
    """Component name -> its section of the "Microservices" part of the seed."""
    body = text.split("Service Discovery", 1)[0]
    sections: dict[str, str] = {}
    current: str | None = None
    for line in body.splitlines():
        heading = _HEADING.match(line)
        if heading and heading.group(2).lower() in ALIASES:
            current = ALIASES[heading.group(2).lower()]
            sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return sections


def _names_in(text: str) -> set[str]:
    found: set[str] = set()
    lowered = text.lower()
    for alias, name in ALIASES.items():
        if re.search(rf"(?<![\w-]){re.escape(alias)}(?![\w-])", lowered):
            found.add(name)
    return found


def seed_call_graph(text: str) -> dict[str, set[str]]:
    """caller -> callees among the backend components (gateway and frontend excluded)."""
    sections = _sections(text)
    graph: dict[str, set[str]] = {name: set() for name in sections if name not in EDGE}
    for name, section in sections.items():
        if name in EDGE:
            continue
        for calls in _CALLS.findall(section):
            for package in _GRPC_PACKAGE.findall(calls):
                callee = package.replace("_", "-")
                if callee != name and callee not in EDGE:
                    graph[name].add(callee)
        for called_by in _CALLED_BY.findall(section):
            for caller in _names_in(called_by) - EDGE - {name}:
                graph.setdefault(caller, set()).add(name)
    return graph


# Components of ours the seed does not list, with the components they may call. `edge` is the
# API-Gateway's Python half (webhook ingress, Envoy's rate-limit service): only the gateway
# calls it; it asks Auth whether a webhook's shop is an installed merchant (ValidateMerchant),
# as the seed's API-Gateway would. `loyalnest new-service` adds the services it creates, with
# the callees they declare (none: add the ones a new service's `Calls` gains).
BEYOND_SEED: dict[str, set[str]] = {
    "edge": {"auth"},
    # The seed's Referrals calls (auth, core, users), and Points: referrers' rewards are
    # credited with EarnPoints (the seed has no consumer of referral.completed that credits).
    "referrals": {"auth", "core", "users", "points"},
}


def personal_data_edges() -> dict[str, set[str]]:
    """AdminCore calls every personal-data holder (GDPR, loyalnest.platform.personal_data),
    services the seed's AdminCore does not list."""
    from loyalnest.platform import personal_data

    caller = personal_data.CALLER.replace("_", "-")
    return {caller: {holder.replace("_", "-") for holder in personal_data.HOLDERS}}


def pseudonym_edges() -> dict[str, set[str]]:
    """Every service whose events carry customers asks the edge for their pseudonyms, with
    a service token from Auth (platform/events/pseudonyms.py): edges the seed does not list."""
    from loyalnest.platform.events import pseudonyms

    return {
        caller.replace("_", "-"): {c.replace("_", "-") for c in pseudonyms.callees(caller)}
        for caller in pseudonyms.CALLERS
    }


def load_seed_call_graph(path: Path = SEED) -> dict[str, set[str]]:
    """The seed's graph plus BEYOND_SEED, the personal-data and the pseudonym edges: what the
    chart's NetworkPolicies must allow."""
    graph = {**seed_call_graph(path.read_text()), **BEYOND_SEED}
    for caller, callees in (*personal_data_edges().items(), *pseudonym_edges().items()):
        graph[caller] = graph.get(caller, set()) | callees
    return graph
