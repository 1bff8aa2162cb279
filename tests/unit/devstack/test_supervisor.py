"""The local stack's supervisor: readiness-gated start, restarts with backoff, clean stop."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from loyalnest.devstack.supervisor import (
    ComponentError,
    ProcessSpec,
    Supervisor,
    restart_delay,
)


def test_restart_delay_doubles_and_is_capped():
    assert [restart_delay(n) for n in range(1, 5)] == [0.5, 1.0, 2.0, 4.0]
    assert restart_delay(50) == 30.0


async def _always_ready() -> bool:
    return True


async def test_a_crashing_process_is_restarted_and_counted(tmp_path):
    events: list[tuple[str, str]] = []
    restarted_twice = asyncio.Event()

    def report(name: str, message: str) -> None:
        events.append((name, message))
        if sum(m.startswith("restarted") for _, m in events) >= 2:
            restarted_twice.set()

    supervisor = Supervisor(tmp_path, report)
    process = await supervisor.start(
        ProcessSpec(
            "crasher", [sys.executable, "-c", "import time; time.sleep(0.2)"], _always_ready
        )
    )
    first_pid = process.pid
    await asyncio.wait_for(restarted_twice.wait(), 10)
    await supervisor.stop_all()
    assert process.restarts >= 2
    assert process.pid != first_pid
    assert any("restart #1" in message for _, message in events)
    assert ("crasher", "stopped") in events


async def test_stop_terminates_the_process(tmp_path):
    supervisor = Supervisor(tmp_path, lambda name, message: None)
    process = await supervisor.start(
        ProcessSpec("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], _always_ready)
    )
    pid = process.pid
    assert pid is not None
    await supervisor.stop_all()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_exit_during_start_up_names_the_component(tmp_path):
    async def never_ready() -> bool:
        return False

    supervisor = Supervisor(tmp_path, lambda name, message: None)
    with pytest.raises(ComponentError) as caught:
        await supervisor.start(
            ProcessSpec("broken", [sys.executable, "-c", "raise SystemExit(3)"], never_ready)
        )
    assert caught.value.component == "broken"
    assert "exited with code 3" in caught.value.reason
    await supervisor.stop_all()
