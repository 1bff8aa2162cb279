"""Every runnable service, by the name used on the command line and in config."""

from __future__ import annotations

import importlib
from typing import Any

from loyalnest.platform.server import ServiceSpec

# name -> module exposing SPEC; imported lazily so one service never loads another's code.
SERVICES: dict[str, str] = {
    "points": "loyalnest.services.points.service",
    "users": "loyalnest.services.users.service",
    "roles": "loyalnest.services.roles.service",
    "auth": "loyalnest.services.auth.service",
    "edge": "loyalnest.services.edge.service",
    "core": "loyalnest.services.core.service",
    "event_tracking": "loyalnest.services.event_tracking.service",
    "gamification": "loyalnest.services.gamification.service",
    "campaign": "loyalnest.services.campaign.service",
    "products": "loyalnest.services.products.service",
    "admin_core": "loyalnest.services.admin_core.service",
    "rfm": "loyalnest.services.rfm.service",
    "referrals": "loyalnest.services.referrals.service",
}


def spec_for(name: str) -> ServiceSpec[Any]:
    try:
        module = SERVICES[name]
    except KeyError:
        known = ", ".join(sorted(SERVICES))
        raise SystemExit(f"unknown service {name!r}; known services: {known}") from None
    spec: ServiceSpec[Any] = importlib.import_module(module).SPEC
    return spec
