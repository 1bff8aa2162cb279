"""Free TCP ports for local servers (the dev stack, the tests' servers, the rehearsal).

A port the kernel picks with bind(0) comes from the ephemeral range, the same range it takes
source ports of outgoing connections from: between handing the port out and the server
binding it, any client connection on the machine may take it (CI saw "Failed to bind" that
way). So ports come from just below that range, where the kernel never assigns on its own.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from loyalnest.devstack.servers import port_in_use

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000
# "low-high": where `free_port` draws instead. Processes that hand out ports side by side
# (the test suite's workers) each get a slice of their own: `_handed_out` is per process, so
# without it two could hand out the same port before either binds it.
FREE_PORTS_ENV = "LOYALNEST_FREE_PORTS"
_handed_out: set[int] = set()


def _configured_slice() -> range | None:
    configured = os.environ.get(FREE_PORTS_ENV)
    if not configured:
        return None
    low, _, high = configured.partition("-")
    try:
        ports = range(int(low), int(high) + 1)
    except ValueError:
        ports = range(0)
    if not ports or ports.start < 1 or ports.stop > 65_536:
        raise ValueError(f"{FREE_PORTS_ENV}={configured!r}: expected low-high, ports 1-65535")
    return ports


def _below_ephemeral() -> range:
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32_768  # Linux's default
    return range(_LOWEST, low)


def bindable(port: int) -> bool:
    """Nothing is bound to 127.0.0.1:`port` (no server, no connection using it)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port no server listens on, not handed out before by this process."""
    # A configured slice whatever its width; below the ephemeral range when there is room.
    configured = _configured_slice()
    candidates = configured or _below_ephemeral()
    if configured or len(candidates) >= 1_000:
        for _ in range(200):
            port = random.choice(candidates)
            if port not in _handed_out and bindable(port):
                _handed_out.add(port)
                return port
    with socket.socket() as sock:  # no room below the ephemeral range: the kernel's pick
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    _handed_out.add(port)
    return port


class PortReservations:
    """The local stack's fixed ports, held from the start until the component serving each
    one starts.

    Those ports (50051..., 51051...) lie inside Linux's ephemeral range, from which the kernel
    takes the source port of every outgoing connection: the migrations' and the first
    services' connections to PostgreSQL took one now and then, and the service meant to
    listen there failed with "Failed to bind", or, the connection closed, kept failing for
    the minute its TIME_WAIT lasts. A port bound here (not listening) is never handed out as
    a source port; each is released just before its server starts.
    """

    def __init__(self, say: Callable[[str], None] = print) -> None:
        self._held: dict[int, socket.socket] = {}
        self._say = say

    @property
    def held(self) -> set[int]:
        return set(self._held)

    async def reserve(self, ports: Iterable[int], *, wait_seconds: float = 70.0) -> None:
        """Binds every port. One a closing connection still holds (TIME_WAIT) is waited for,
        up to `wait_seconds`; one a server listens on is left alone (starting its component
        then reports it in use)."""
        waiting = [port for port in ports if not self._hold(port)]
        deadline = time.monotonic() + wait_seconds
        if any(not port_in_use(port) for port in waiting):
            self._say(f"ports {sorted(waiting)} are held by closing connections; waiting")
        while waiting and time.monotonic() < deadline:
            waiting = [p for p in waiting if not port_in_use(p) and not self._hold(p)]
            if waiting:
                await asyncio.sleep(0.5)

    def _hold(self, port: int) -> bool:
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            return False
        self._held[port] = sock
        return True

    def release(self, ports: Iterable[int]) -> None:
        for port in ports:
            sock = self._held.pop(port, None)
            if sock is not None:
                sock.close()

    def release_all(self) -> None:
        self.release(list(self._held))
