"""A small client for the Consul agent HTTP API (only the service endpoints the sync needs).

    PUT /v1/agent/service/register        register (or replace) a service with its check
    GET /v1/agent/service/<id>            200 with the service, 404 when the agent lacks it
    PUT /v1/agent/service/deregister/<id> remove it (and its checks)

The standard library's urllib is enough for three calls; it keeps the sidecar's image free of
another HTTP client.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any


class AgentError(RuntimeError):
    """The agent could not be reached or answered with an unexpected status."""


@dataclass(frozen=True)
class Registration:
    """One service instance (= one pod) and its gRPC health check."""

    service_id: str
    name: str
    address: str
    port: int
    tags: tuple[str, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)
    # grpc.health.v1 service name to check; "" asks for the server's overall health, which
    # the platform keeps NOT_SERVING until the service's dependencies answer.
    grpc_service: str = ""
    check_interval: str = "10s"
    check_timeout: str = "2s"
    # A pod that vanished without deregistering (node loss) is removed after this long.
    deregister_critical_after: str = "1m"

    def payload(self) -> dict[str, Any]:
        target = f"{self.address}:{self.port}"
        if self.grpc_service:
            target = f"{target}/{self.grpc_service}"
        return {
            "ID": self.service_id,
            "Name": self.name,
            "Tags": list(self.tags),
            "Address": self.address,
            "Port": self.port,
            "Meta": dict(self.meta),
            "Check": {
                "CheckID": f"{self.service_id}:grpc",
                "Name": "gRPC health",
                "GRPC": target,
                "GRPCUseTLS": False,
                "Interval": self.check_interval,
                "Timeout": self.check_timeout,
                "DeregisterCriticalServiceAfter": self.deregister_critical_after,
            },
        }

    def matches(self, service: dict[str, Any]) -> bool:
        """Whether the agent's copy (GET /v1/agent/service/<id>) still describes this pod."""
        return (
            service.get("Service") == self.name
            and service.get("Address") == self.address
            and service.get("Port") == self.port
        )


class AgentClient:
    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 5.0) -> None:
        self._base = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self._base}{path}", data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self._token:
            request.add_header("X-Consul-Token", self._token)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise AgentError(f"{method} {self._base}{path}: {exc}") from exc

    def register(self, registration: Registration, status: str | None = None) -> None:
        # The agent runs the gRPC check itself: `status` (the catalog's) does not apply.
        # replace-existing-checks: a re-registration must not keep a check from an older one.
        code, body = self._request(
            "PUT",
            "/v1/agent/service/register?replace-existing-checks=true",
            registration.payload(),
        )
        if code != 200:
            raise AgentError(f"register {registration.service_id}: HTTP {code}: {body[:200]!r}")

    def service(self, service_id: str) -> dict[str, Any] | None:
        """The agent's registration of `service_id`, or None if it has none."""
        status, body = self._request(
            "GET", f"/v1/agent/service/{urllib.parse.quote(service_id, safe='')}"
        )
        if status == 404:
            return None
        if status != 200:
            raise AgentError(f"get {service_id}: HTTP {status}: {body[:200]!r}")
        decoded: dict[str, Any] = json.loads(body)
        return decoded

    def lookup(self, registration: Registration) -> dict[str, Any] | None:
        return self.service(registration.service_id)

    def deregister(self, service_id: str) -> None:
        status, body = self._request(
            "PUT", f"/v1/agent/service/deregister/{urllib.parse.quote(service_id, safe='')}"
        )
        # 404: already gone (the agent restarted meanwhile), which is what we wanted.
        if status not in (200, 404):
            raise AgentError(f"deregister {service_id}: HTTP {status}: {body[:200]!r}")
