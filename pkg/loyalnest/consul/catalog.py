"""A small client for the Consul servers' catalog HTTP API, for agentless Consul.

consul-k8s has run without client agents by default since Consul 1.14: there is no agent at the
node's address to register with. The sidecar then writes to the servers' catalog itself:

    PUT /v1/catalog/register     the node (a virtual one), the service and its check's status
    GET /v1/catalog/service/<n>  the instances of service <n> (to see ours is still there)
    PUT /v1/catalog/deregister   remove our service instance (and its check) from the node

Nothing runs a catalog check: its Status is whatever was last written. So the sidecar probes
its own pod's gRPC health (over the pod's loopback, no NetworkPolicy involved) and writes the
status when it changes; no Consul server ever connects to the pod.

ACLs: the token needs `service:write` on the service and `node:write` on the virtual node; a
missing permission is HTTP 403 "Permission denied", raised as ConsulPermissionDenied so the
sidecar says so rather than retrying silently. The token is read from a file (a mounted Secret)
on every request, so a rotated token is used without restarting the pod.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from loyalnest.consul.agent import AgentError, Registration

PASSING = "passing"
CRITICAL = "critical"


class ConsulPermissionDenied(AgentError):
    """HTTP 403: the ACL token is missing, unknown or lacks a permission the call needs."""


class CatalogClient:
    def __init__(
        self,
        base_url: str,
        *,
        node: str,
        node_address: str = "127.0.0.1",
        token: str | None = None,
        token_file: Path | None = None,
        ca_file: Path | None = None,
        timeout: float = 5.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self.node = node
        self._node_address = node_address
        self._token = token
        self._token_file = token_file
        self._timeout = timeout
        # https with the servers' CA (consul-k8s: the <release>-consul-ca-cert Secret's tls.crt);
        # without a CA file, the system's trust store.
        self._context: ssl.SSLContext | None = None
        if self._base.startswith("https://"):
            self._context = ssl.create_default_context(
                cafile=str(ca_file) if ca_file is not None else None
            )

    def _current_token(self) -> str | None:
        if self._token_file is not None:
            try:
                return self._token_file.read_text().strip() or None
            except OSError as exc:
                raise AgentError(f"ACL token file {self._token_file}: {exc}") from exc
        return self._token

    def _request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self._base}{path}", data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        token = self._current_token()
        if token:
            request.add_header("X-Consul-Token", token)
        try:
            with urllib.request.urlopen(
                request, timeout=self._timeout, context=self._context
            ) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise AgentError(f"{method} {self._base}{path}: {exc}") from exc
        if status == 403:
            raise ConsulPermissionDenied(
                f"{method} {path}: HTTP 403 {text[:200]!r}: the ACL token needs service:write "
                f"on the service and node:write on node {self.node!r}"
            )
        return status, text

    def payload(self, registration: Registration, status: str) -> dict[str, Any]:
        """The catalog registration: the virtual node, our service instance, its check."""
        return {
            "Node": self.node,
            "Address": self._node_address,
            "NodeMeta": {"external-source": "kubernetes"},
            # Leave the node's other fields (and the other pods' services) as they are.
            "SkipNodeUpdate": True,
            "Service": {
                "ID": registration.service_id,
                "Service": registration.name,
                "Tags": list(registration.tags),
                "Address": registration.address,
                "Port": registration.port,
                "Meta": dict(registration.meta),
            },
            "Check": {
                "Node": self.node,
                "CheckID": f"{registration.service_id}:grpc",
                "Name": "gRPC health (reported by loyalnest consul-sync)",
                "Status": status,
                "ServiceID": registration.service_id,
                "Output": f"grpc.health.v1 of {registration.address}:{registration.port}: {status}",
            },
        }

    def register(self, registration: Registration, status: str | None = None) -> None:
        body = self.payload(registration, status or CRITICAL)
        code, text = self._request("PUT", "/v1/catalog/register", body)
        if code != 200:
            raise AgentError(f"register {registration.service_id}: HTTP {code}: {text[:200]!r}")

    def lookup(self, registration: Registration) -> dict[str, Any] | None:
        """Our instance as the catalog has it, in the agent API's shape (Service, Address,
        Port) so Registration.matches applies; None when the catalog lacks it."""
        name = urllib.parse.quote(registration.name, safe="")
        code, text = self._request("GET", f"/v1/catalog/service/{name}")
        if code != 200:
            raise AgentError(f"get {registration.name}: HTTP {code}: {text[:200]!r}")
        for entry in json.loads(text):
            if entry.get("Node") == self.node and entry.get("ServiceID") == registration.service_id:
                return {
                    "ID": entry["ServiceID"],
                    "Service": entry.get("ServiceName"),
                    "Address": entry.get("ServiceAddress"),
                    "Port": entry.get("ServicePort"),
                }
        return None

    def deregister(self, service_id: str) -> None:
        code, text = self._request(
            "PUT", "/v1/catalog/deregister", {"Node": self.node, "ServiceID": service_id}
        )
        if code != 200:
            raise AgentError(f"deregister {service_id}: HTTP {code}: {text[:200]!r}")
