"""The `loyalnest consul-sync` sidecar loop.

    loyalnest consul-sync --service-name points --address $(POD_IP) --port 50051 \\
        --consul-addr http://$(HOST_IP):8500

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
from types import FrameType

from loyalnest.consul.agent import AgentClient, AgentError, Registration

log = logging.getLogger("loyalnest.consul")


class CatalogSync:
    def __init__(
        self,
        client: AgentClient,
        registration: Registration,
        *,
        resync_interval: float = 10.0,
        max_backoff: float = 30.0,
    ) -> None:
        self._client = client
        self._registration = registration
        self._interval = resync_interval
        self._max_backoff = max(max_backoff, resync_interval)
        self._stop = threading.Event()
        self.registrations = 0  # how often we (re-)registered; for logs and tests

    def stop(self) -> None:
        self._stop.set()

    def sync_once(self) -> bool:
        """Registers the service unless the agent already has it as it should be.
        Returns True when it registered."""
        current = self._client.service(self._registration.service_id)
        if current is not None and self._registration.matches(current):
            return False
        self._client.register(self._registration)
        self.registrations += 1
        reason = "agent had no registration" if current is None else "registration differed"
        log.info(
            "registered %s (%s) in Consul: %s",
            self._registration.service_id,
            self._registration.payload()["Check"]["GRPC"],
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
            except AgentError as exc:
                # Back off while the agent is away; log the outage once, not every attempt.
                if not agent_down:
                    log.warning("Consul agent unavailable, will retry: %s", exc)
                agent_down = True
                delay = min(delay * 2, self._max_backoff)
            else:
                if agent_down:
                    log.info("Consul agent reachable again")
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
        help="agent HTTP API base URL ($CONSUL_HTTP_ADDR)",
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
    # The ACL token comes from the environment (a Secret), never from the command line,
    # which `ps` and the pod spec would show.
    client = AgentClient(args.consul_addr, token=os.environ.get("CONSUL_HTTP_TOKEN") or None)
    sync = CatalogSync(client, registration, resync_interval=args.resync_interval)
    _install_signal_handlers(sync.stop)
    sync.run()
    return 0


def configure_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds the `consul-sync` subcommand to the `loyalnest` CLI."""
    parser = commands.add_parser(
        "consul-sync", help="sidecar: keep this pod's service registered in a Consul agent"
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
