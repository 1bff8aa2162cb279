"""A stand-in for the Consul servers' catalog HTTP API (agentless Consul), for the sidecar's
catalog mode. Not Consul: it implements the documented request shapes and answers of the three
endpoints the sidecar uses, so the sidecar's side of the contract is tested, not Consul's.

    PUT /v1/catalog/register    Node and Address required; Service.Service required; a Check
                                names its Node, a Status of passing|warning|critical and a
                                ServiceID registered on that node. ACL: node:write on the
                                node and service:write on the service.
    GET /v1/catalog/service/<n> the instances of <n> (Node, ServiceID, ServiceName,
                                ServiceAddress, ServicePort, ...). ACL: service:read.
    PUT /v1/catalog/deregister  Node required; with ServiceID removes that instance and its
                                checks. ACL: node:write and service:write.

ACLs as Consul with default-deny: X-Consul-Token names a token; an unknown token is 403
"ACL not found", a missing permission 403 "Permission denied". Served over HTTPS with a CA made
for the test (the servers' CA a consul-k8s install puts in <release>-consul-ca-cert).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Consul Agent CA (stand-in)")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server.dc1.consul")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("server.dc1.consul"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass
class Token:
    """The rules of an ACL token, as (resource, name) pairs: ("node", "loyalnest-k8s") for
    node:write on it, ("service", "points") for service:write."""

    write: set[tuple[str, str]] = field(default_factory=set)


class ConsulCatalogStandIn:
    def __init__(self, directory: Path, tokens: dict[str, Token]) -> None:
        self.tokens = tokens
        # node -> {"Address": ..., "Services": {id: service}, "Checks": {id: check}}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, Any] | None, str | None]] = []
        self.lock = threading.Lock()
        self.ca_file, cert, key = make_ca_and_server_cert(directory)
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _reply(self, status: int, body: object) -> None:
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                token = self.headers.get("X-Consul-Token")
                with standin.lock:
                    standin.requests.append((self.command, self.path, body, token))
                    status, reply = standin.answer(self.command, self.path, body, token)
                self._reply(status, reply)

            do_GET = _handle  # noqa: N815 (BaseHTTPRequestHandler's naming)
            do_PUT = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _denied(self, token: str | None, *needs: tuple[str, str]) -> tuple[int, str] | None:
        if token is None:
            rules = Token()  # the anonymous token: nothing, with default-deny
        elif token not in self.tokens:
            return 403, "ACL not found"
        else:
            rules = self.tokens[token]
        if any(need not in rules.write for need in needs):
            return 403, "Permission denied"
        return None

    def answer(
        self, method: str, path: str, body: dict[str, Any] | None, token: str | None
    ) -> tuple[int, Any]:
        path = path.split("?", 1)[0]
        if method == "PUT" and path == "/v1/catalog/register":
            return self._register(body or {}, token)
        if method == "PUT" and path == "/v1/catalog/deregister":
            return self._deregister(body or {}, token)
        if method == "GET" and path.startswith("/v1/catalog/service/"):
            name = path.rsplit("/", 1)[1]
            if token is not None and token not in self.tokens:
                return 403, "ACL not found"
            return 200, [
                {
                    "Node": node,
                    "Address": data["Address"],
                    "ServiceID": service["ID"],
                    "ServiceName": service["Service"],
                    "ServiceAddress": service.get("Address", ""),
                    "ServicePort": service.get("Port", 0),
                    "ServiceTags": service.get("Tags") or [],
                    "ServiceMeta": service.get("Meta") or {},
                }
                for node, data in self.nodes.items()
                for service in data["Services"].values()
                if service["Service"] == name
            ]
        return 405, "method not allowed"

    def _register(self, body: dict[str, Any], token: str | None) -> tuple[int, Any]:
        node, address = body.get("Node"), body.get("Address")
        if not node:
            return 400, "Must provide node"
        if not address:
            return 400, "Must provide address"
        service = body.get("Service")
        needs = [("node", node)]
        if service is not None:
            if not service.get("Service"):
                return 400, "Must provide service name"
            needs.append(("service", service["Service"]))
        denied = self._denied(token, *needs)
        if denied:
            return denied
        check = body.get("Check")
        entry = self.nodes.setdefault(node, {"Address": address, "Services": {}, "Checks": {}})
        if not body.get("SkipNodeUpdate"):
            entry["Address"] = address
        if service is not None:
            service = {**service, "ID": service.get("ID") or service["Service"]}
            entry["Services"][service["ID"]] = service
        if check is not None:
            if check.get("Node", node) != node:
                return 400, "Check node does not match the registered node"
            if check.get("Status", "critical") not in ("passing", "warning", "critical"):
                return 400, f"Invalid check status: {check.get('Status')!r}"
            if check.get("ServiceID") and check["ServiceID"] not in entry["Services"]:
                return 400, f"Unknown service ID {check['ServiceID']!r} for check"
            entry["Checks"][check.get("CheckID") or check.get("Name")] = check
        return 200, True

    def _deregister(self, body: dict[str, Any], token: str | None) -> tuple[int, Any]:
        node = body.get("Node")
        if not node:
            return 400, "Must provide node"
        entry = self.nodes.get(node)
        service_id = body.get("ServiceID")
        service = (entry or {}).get("Services", {}).get(service_id) if service_id else None
        needs = [("node", node)] + ([("service", service["Service"])] if service else [])
        denied = self._denied(token, *needs)
        if denied:
            return denied
        if entry is not None and service_id:
            entry["Services"].pop(service_id, None)
            entry["Checks"] = {
                k: c for k, c in entry["Checks"].items() if c.get("ServiceID") != service_id
            }
        return 200, True

    def instance(self, node: str, service_id: str) -> tuple[dict[str, Any], str] | None:
        """A registered instance and its check's status."""
        with self.lock:
            entry = self.nodes.get(node, {})
            service = entry.get("Services", {}).get(service_id)
            if service is None:
                return None
            statuses = [
                c["Status"] for c in entry["Checks"].values() if c.get("ServiceID") == service_id
            ]
            return service, (statuses[0] if statuses else "")
