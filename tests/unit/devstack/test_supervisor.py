"""The local stack's supervisor: readiness-gated start, restarts with backoff, clean stop."""

from __future__ import annotations

import asyncio
import os
import sys
import time

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


_DRAINS_ONE_SECOND = """
import signal, sys, time
def drain(*_):
    time.sleep(1.0)
    open(sys.argv[1], "w").write(repr(time.time()))
    raise SystemExit(0)
signal.signal(signal.SIGTERM, drain)
time.sleep(60)
"""


async def test_services_stop_together_then_their_backing_servers(tmp_path):
    """Three services draining 1 s each stop in about 1 s, not 3; the broker they drain to
    gets SIGTERM only after they are gone."""
    supervisor = Supervisor(tmp_path, lambda name, message: None)
    broker = tmp_path / "broker.stopped"
    await supervisor.start(
        ProcessSpec(
            "broker",
            [sys.executable, "-c", _DRAINS_ONE_SECOND, str(broker)],
            _always_ready,
            backing=True,
        )
    )
    services = [tmp_path / f"service-{n}.stopped" for n in range(3)]
    for n, marker in enumerate(services):
        await supervisor.start(
            ProcessSpec(
                f"service-{n}",
                [sys.executable, "-c", _DRAINS_ONE_SECOND, str(marker)],
                _always_ready,
            )
        )
    await asyncio.sleep(0.5)  # the children installed their SIGTERM handlers
    started = time.time()
    await supervisor.stop_all()
    services_done = [float(marker.read_text()) for marker in services]
    assert max(services_done) - started < 2.5  # together: ~1 s (one by one: ~3 s)
    # The broker drained after the last service had stopped (it got SIGTERM afterwards).
    assert float(broker.read_text()) - 1.0 >= max(services_done) - 0.05
