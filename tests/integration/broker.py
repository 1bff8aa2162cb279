"""A real Kafka-protocol broker (tansu) for the event tests, started as a child process."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from pathlib import Path

from loyalnest.devstack.postgres import free_port
from loyalnest.devstack.servers import KafkaBroker


class BrokerProcess:
    """tansu on a fixed port that survives stop()/start(), like a restarted broker.

    Memory storage: a restart forgets topics, offsets and groups (see test_events).
    """

    def __init__(self) -> None:
        self.broker = KafkaBroker(free_port())
        self.log_path = Path(tempfile.mkstemp(prefix="loyalnest-tansu-", suffix=".log")[1])
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return self.broker.bootstrap_servers

    def _argv(self) -> list[str]:
        argv = self.broker.argv()
        # If the test process dies hard, the kernel kills the broker too: no orphans.
        setpriv = shutil.which("setpriv")
        return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv

    async def start(self, timeout: float = 15.0) -> None:
        # Popen from the event loop's thread, not a worker thread: a parent-death signal
        # follows the thread that forked, and this one lives as long as the test.
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                self._argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = asyncio.get_running_loop().time() + timeout
        while not await self.broker.ready():
            if self._process.poll() is not None:
                log = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"tansu exited ({self._process.returncode}):\n{log}")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"tansu not ready on {self.bootstrap_servers}")
            await asyncio.sleep(0.05)

    def close(self) -> None:
        """Stops the broker for good and removes its log."""
        self.stop()
        self.log_path.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stops the broker the hard way, like a crash: tansu's graceful stop waits for
        connected clients to leave, which ours (reconnecting) never do."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
