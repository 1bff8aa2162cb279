"""Free TCP ports for local servers (the dev stack, the tests' servers, the rehearsal).

A port the kernel picks with bind(0) comes from the ephemeral range, the same range it takes
source ports of outgoing connections from: between handing the port out and the server
binding it, any client connection on the machine may take it (CI saw "Failed to bind" that
way). So ports come from just below that range, where the kernel never assigns on its own.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000
_handed_out: set[int] = set()


def _below_ephemeral() -> range:
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32_768  # Linux's default
    return range(_LOWEST, low)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port no server listens on, not handed out before by this process."""
    candidates = _below_ephemeral()
    if len(candidates) >= 1_000:
        for _ in range(200):
            port = random.choice(candidates)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    with socket.socket() as sock:  # no room below the ephemeral range: the kernel's pick
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    _handed_out.add(port)
    return port
