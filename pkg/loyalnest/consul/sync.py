"""The `loyalnest consul-sync` sidecar loop.

    loyalnest consul-sync --service-name points --address $(POD_IP) --port 50051 \\
        --consul-addr http://$(HOST_IP):8500                      # a client agent on the node
    loyalnest consul-sync ... --mode catalog --consul-addr https://consul-server.consul:8501 \\
        --token-file /etc/consul-token/token --ca-file /etc/consul-ca/tls.crt   # agentless

Agent mode: the agent runs a gRPC health check against the pod. Catalog mode (agentless Consul,
the consul-k8s default since 1.14): the sidecar probes its own pod's health over loopback and
writes the check's status to the servers' catalog when it changes (loyalnest.consul.catalog).

Every `--resync-interval` it asks the agent whether it still has this pod's registration and
registers it again when not: an agent restarted without persisted state forgets its services,
and an agent that was down is simply retried. On SIGTERM (the pod is terminating) it deregisters
at once, so consumers outside the cluster stop picking this pod while the service drains, and
exits. Being a plain (not init) container, it gets SIGTERM together with the service.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from loyalnest.consul.agent import AgentClient, AgentError, Registration
from loyalnest.consul.catalog import CatalogClient, ConsulPermissionDenied
from loyalnest.consul.health import GrpcHealthProbe

log = logging.getLogger("loyalnest.consul")


class Registry(Protocol):
    """Where the registration lives: a node's agent (AgentClient) or the servers' catalog
    (CatalogClient)."""

    def lookup(self, registration: Registration) -> dict[str, Any] | None: ...

    def register(self, registration: Registration, status: str | None = None) -> None: ...

    def deregister(self, service_id: str) -> None: ...


class CatalogSync:
    def __init__(
        self,
        client: Registry,
        registration: Registration,
        *,
        resync_interval: float = 10.0,
        max_backoff: float = 30.0,
        health: Callable[[], str] | None = None,
    ) -> None:
        self._client = client
        self._registration = registration
        # Catalog mode: the pod's health as the check status to write (None: the agent checks).
        self._health = health
        self._written_status: str | None = None
        self._interval = resync_interval
        self._max_backoff = max(max_backoff, resync_interval)
        self._stop = threading.Event()
        self.registrations = 0  # how often we (re-)registered; for logs and tests

    def stop(self) -> None:
        self._stop.set()

    def sync_once(self) -> bool:
        """Registers the service unless Consul already has it as it should be (in catalog mode:
        with the check status the pod's health gives now). Returns True when it registered."""
        status = self._health() if self._health is not None else None
        current = self._client.lookup(self._registration)
        if current is None:
            reason = "Consul had no registration"
        elif not self._registration.matches(current):
            reason = "registration differed"
        elif status != self._written_status:
            reason = f"health is now {status}"
        else:
            return False
        self._client.register(self._registration, status)
        self._written_status = status
        self.registrations += 1
        log.info(
            "registered %s (%s:%d) in Consul: %s",
            self._registration.service_id,
            self._registration.address,
            self._registration.port,
            reason,
        )
        return True

    def run(self) -> None:
        """Until stop(): keep the registration; then deregister (best effort)."""
        delay = self._interval
        agent_down = False
        while not self._stop.is_set():
            try:
                self.sync_once()
            except ConsulPermissionDenied as exc:
                # Not an outage: nothing changes until the token does (it is re-read from its
                # file on every attempt). Said at error level, once per episode.
                if not agent_down:
                    log.error("Consul refused the ACL token, will retry: %s", exc)
                agent_down = True
                delay = min(delay * 2, self._max_backoff)
            except AgentError as exc:
                # Back off while Consul is away; log the outage once, not every attempt.
                if not agent_down:
                    log.warning("Consul unavailable, will retry: %s", exc)
                agent_down = True
                delay = min(delay * 2, self._max_backoff)
            else:
                if agent_down:
                    log.info("Consul reachable again")
                agent_down = False
                delay = self._interval
            self._stop.wait(delay)
        try:
            self._client.deregister(self._registration.service_id)
            log.info("deregistered %s from Consul", self._registration.service_id)
        except AgentError as exc:
            # The check's DeregisterCriticalServiceAfter removes it eventually.
            log.warning("could not deregister %s: %s", self._registration.service_id, exc)


def _key_value(value: str) -> tuple[str, str]:
    key, sep, item = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key, item


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--service-name", required=True, help="Consul service name, e.g. points")
    parser.add_argument(
        "--service-id", help="unique per pod (default: <service-name>-<hostname>, the pod name)"
    )
    parser.add_argument(
        "--address", default=env("POD_IP"), help="address Consul's check and consumers use"
    )
    parser.add_argument("--port", type=int, default=50051, help="the service's gRPC port")
    parser.add_argument("--grpc-service", default="", help="grpc.health.v1 name to check")
    parser.add_argument("--tag", action="append", default=[], dest="tags")
    parser.add_argument("--meta", action="append", default=[], type=_key_value)
    parser.add_argument(
        "--consul-addr",
        default=env("CONSUL_HTTP_ADDR", "http://127.0.0.1:8500"),
        help="agent (or, --mode catalog, servers') HTTP API base URL ($CONSUL_HTTP_ADDR)",
    )
    parser.add_argument(
        "--mode",
        choices=("agent", "catalog"),
        default="agent",
        help="agent: a client agent on the node runs the gRPC check; catalog: agentless, "
        "register in the servers' catalog and report this pod's health",
    )
    parser.add_argument(
        "--node",
        default="loyalnest-k8s",
        help="catalog mode: the virtual Consul node the instances are registered on",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        default=env("CONSUL_HTTP_TOKEN_FILE") or None,
        help="ACL token file, re-read on every request ($CONSUL_HTTP_TOKEN_FILE); "
        "else $CONSUL_HTTP_TOKEN",
    )
    parser.add_argument(
        "--ca-file",
        type=Path,
        default=env("CONSUL_CACERT") or None,
        help="CA bundle for an https Consul address ($CONSUL_CACERT)",
    )
    parser.add_argument("--check-interval", default="10s")
    parser.add_argument("--check-timeout", default="2s")
    parser.add_argument("--deregister-critical-after", default="1m")
    parser.add_argument("--resync-interval", type=float, default=10.0, help="seconds")


def _install_signal_handlers(stop: Callable[[], None]) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("received %s; deregistering", signal.Signals(signum).name)
        stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s consul-sync %(message)s"
    )
    if not args.address:
        log.error("no --address (and $POD_IP is unset)")
        return 2
    registration = Registration(
        service_id=args.service_id or f"{args.service_name}-{socket.gethostname()}",
        name=args.service_name,
        address=args.address,
        port=args.port,
        tags=tuple(args.tags),
        meta=dict(args.meta),
        grpc_service=args.grpc_service,
        check_interval=args.check_interval,
        check_timeout=args.check_timeout,
        deregister_critical_after=args.deregister_critical_after,
    )
    # The ACL token comes from a file or the environment (a Secret), never from the command
    # line, which `ps` and the pod spec would show.
    token = os.environ.get("CONSUL_HTTP_TOKEN") or None
    client: Registry
    probe: GrpcHealthProbe | None = None
    if args.mode == "catalog":
        client = CatalogClient(
            args.consul_addr,
            node=args.node,
            token=token,
            token_file=args.token_file,
            ca_file=args.ca_file,
        )
        # The service in this pod, over loopback: the same port, another interface.
        probe = GrpcHealthProbe(f"127.0.0.1:{args.port}", args.grpc_service)
    else:
        client = AgentClient(args.consul_addr, token=token)
    sync = CatalogSync(client, registration, resync_interval=args.resync_interval, health=probe)
    _install_signal_handlers(sync.stop)
    try:
        sync.run()
    finally:
        if probe is not None:
            probe.close()
    return 0


def configure_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds the `consul-sync` subcommand to the `loyalnest` CLI."""
    parser = commands.add_parser(
        "consul-sync",
        help="sidecar: keep this pod's service registered in Consul (agent or catalog)",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
