"""The event loop `loyalnest serve` runs on: uvloop unless LOYALNEST_EVENT_LOOP=asyncio."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from loyalnest.platform import asyncio_loop
from loyalnest.platform.config import ServerSettings


async def _loop_type() -> tuple[type[asyncio.AbstractEventLoop], str]:
    return type(asyncio.get_running_loop()), asyncio_loop.running_loop()


def test_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOYALNEST_EVENT_LOOP", raising=False)
    choice = ServerSettings().event_loop
    assert choice == "uvloop"
    loop_type, reported = asyncio_loop.run(_loop_type(), choice)
    assert issubclass(loop_type, uvloop.Loop)
    assert reported == "uvloop"


def test_asyncio_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOYALNEST_EVENT_LOOP", "asyncio")
    choice = ServerSettings().event_loop
    assert choice == "asyncio"
    loop_type, reported = asyncio_loop.run(_loop_type(), choice)
    assert not issubclass(loop_type, uvloop.Loop)
    assert reported == "asyncio"


def test_an_unknown_loop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOYALNEST_EVENT_LOOP", "trio")
    with pytest.raises(ValueError, match="event_loop"):
        ServerSettings()


def test_uvloop_leaves_the_global_policy_alone() -> None:
    # uvloop runs through a loop factory, never as the process-wide policy: code asking the
    # policy for a loop outside the running one behaves as under plain asyncio.
    before = type(asyncio.get_event_loop_policy())
    asyncio_loop.run(asyncio.sleep(0), "uvloop")
    assert type(asyncio.get_event_loop_policy()) is before
    assert not isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)
