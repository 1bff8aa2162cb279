"""The names one service goes by, derived from what `loyalnest new-service NAME` is given.

event-tracking -> package event_tracking (Python, registry, schema, permissions),
                  component event-tracking (Kubernetes, chart, REST paths, cmd/),
                  proto package loyalnest.event_tracking.v1, EventTrackingService
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

# Lower case words joined by - or _: every derived name must be a Python identifier, a
# PostgreSQL schema, a DNS label (Deployment, Service) and a permission domain.
_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
# Permission domains are at most 32 characters (roles.domain.PERMISSION_RE), the chart appends
# suffixes such as "-clusterip" and "-migrate" to the component's 63-character DNS label.
MAX_LENGTH = 24
# Packages under proto/loyalnest/ and pkg/loyalnest/ that are not services, and chart names
# taken by something else than a component.
RESERVED = frozenset(
    {"events", "options", "gen", "platform", "services", "scaffold", "gateway", "reflection"}
)


class InvalidName(ValueError):
    """NAME cannot be a service name; the message says why."""


@dataclass(frozen=True)
class ServiceNames:
    package: str  # event_tracking
    component: str  # event-tracking
    title: str  # EventTracking

    @classmethod
    def parse(cls, name: str) -> ServiceNames:
        raw = name.strip()
        if not _NAME_RE.match(raw):
            raise InvalidName(
                f"invalid service name {name!r}: use lower case letters and digits, words "
                "separated by - or _, starting with a letter (e.g. widgets, event-tracking)"
            )
        package = raw.replace("-", "_")
        if len(package) > MAX_LENGTH:
            raise InvalidName(f"invalid service name {name!r}: at most {MAX_LENGTH} characters")
        if package in RESERVED or keyword.iskeyword(package):
            raise InvalidName(f"invalid service name {name!r}: {package!r} is reserved")
        words = package.split("_")
        return cls(
            package=package,
            component="-".join(words),
            title="".join(word.capitalize() for word in words),
        )

    @property
    def proto_package(self) -> str:
        return f"loyalnest.{self.package}.v1"

    @property
    def service(self) -> str:
        return f"{self.title}Service"

    @property
    def full_service_name(self) -> str:
        return f"{self.proto_package}.{self.service}"

    @property
    def read_permission(self) -> str:
        # Permission domains are registry names: service tokens' audiences are derived from
        # them (platform.auth.service_identity.token_audiences).
        return f"{self.package}:read"

    @property
    def write_permission(self) -> str:
        return f"{self.package}:write"

    @property
    def display(self) -> str:
        """How the README's Services table names it, e.g. "Event Tracking"."""
        return " ".join(word.capitalize() for word in self.package.split("_"))
