"""Which asyncio event loop a service process runs: uvloop (libuv) by default, the standard
library's loop as the fallback (`LOYALNEST_EVENT_LOOP=asyncio`).

uvloop costs less CPU per call than the selector loop (bench/README.md, issue 15). It is run
through `uvloop.run`, i.e. `asyncio.Runner(loop_factory=uvloop.new_event_loop)`, and never
installed as the global event-loop policy: under uvloop's policy `asyncio.get_event_loop()`
outside a running loop raises instead of creating one (the standard policy creates one in
the main thread), so a library calling it before the loop starts would end the process before
it serves. The loop factory changes the loop of this one `run` and nothing else.

grpc.aio needs nothing more: its completion-queue poller binds to whichever loop first runs
gRPC code (`loop.add_reader` on its wake-up socket), which uvloop implements.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

from prometheus_client import Info

EventLoop = Literal["uvloop", "asyncio"]

T = TypeVar("T")

EVENT_LOOP = Info(
    "loyalnest_event_loop",
    "The asyncio event loop implementation this process serves on (LOYALNEST_EVENT_LOOP).",
)


def run(main: Coroutine[Any, Any, T], event_loop: EventLoop) -> T:
    """Runs `main` to completion on a new loop of the chosen implementation."""
    if event_loop == "uvloop":
        # Imported only when chosen: the fallback never loads libuv.
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def running_loop() -> EventLoop:
    """The implementation of the loop running now (what it is, not what was asked for)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.split(".")[0] == "uvloop" else "asyncio"


def report_running_loop() -> EventLoop:
    """Publishes the running loop's implementation as `loyalnest_event_loop_info{loop=...}`."""
    name = running_loop()
    EVENT_LOOP.info({"loop": name})
    return name
