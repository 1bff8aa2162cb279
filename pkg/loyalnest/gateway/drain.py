"""The gateway pod's preStop hook: start Envoy's graceful drain, then wait it out.

    python -m loyalnest.gateway.drain --admin=127.0.0.1:9901 --wait=15

Envoy closes its listeners at once on SIGTERM, cutting calls in flight. Asked first through its
admin interface (POST /drain_listeners?graceful), it keeps accepting new connections for
--drain-time-s while it discourages reuse (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY), so
clients move to other pods as the endpoint removal reaches them; then it stops the listeners.
Envoy's image has no HTTP client, so the pod's Python container sends the request (the admin
interface listens on the pod's 127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request


def start_drain(admin: str, timeout: float = 2.0) -> None:
    """POST /drain_listeners?graceful to Envoy's admin interface at host:port."""
    request = urllib.request.Request(
        f"http://{admin}/drain_listeners?graceful", data=b"", method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if response.status != 200:
            raise RuntimeError(f"drain_listeners: HTTP {response.status}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin", default="127.0.0.1:9901", help="Envoy admin host:port")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait afterwards")
    args = parser.parse_args(argv)
    status = 0
    try:
        start_drain(args.admin)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        # Still wait: the pod's termination proceeds either way, and the sleep alone still
        # lets the endpoint removal propagate before SIGTERM.
        print(f"could not start Envoy's drain: {exc}", file=sys.stderr)
        status = 1
    time.sleep(args.wait)
    return status


if __name__ == "__main__":
    sys.exit(main())
