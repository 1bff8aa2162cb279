"""Runs the local stack's processes: health-gated start, restart with backoff, clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loyalnest.devstack.ports import PortReservations
from loyalnest.devstack.servers import port_in_use

READY_TIMEOUT_SECONDS = 60.0
# A process that stayed up this long starts its backoff afresh after the next crash.
STABLE_AFTER_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 20.0
MAX_BACKOFF_SECONDS = 30.0


def restart_delay(attempt: int) -> float:
    """0.5 s, 1 s, 2 s, ... capped: a crash loop neither spins nor waits long once fixed."""
    return float(min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** (attempt - 1)))


class ComponentError(RuntimeError):
    """A component could not start; names the component and the reason."""

    def __init__(self, component: str, reason: str) -> None:
        super().__init__(f"{component}: {reason}")
        self.component = component
        self.reason = reason


@dataclass
class ProcessSpec:
    name: str
    argv: Sequence[str]
    ready: Callable[[], Awaitable[bool]]
    ports: Sequence[int] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    # Extra facts shown by `status` (addresses, URLs).
    info: Mapping[str, str] = field(default_factory=dict)
    # A server the others use (database, broker, an outside API's stand-in): stopped after
    # all the others, so their drains still reach it.
    backing: bool = False


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(f"      {line}" for line in text[-lines:])


class SupervisedProcess:
    """One child process, restarted with exponential backoff whenever it exits unasked."""

    def __init__(self, spec: ProcessSpec, log_dir: Path, report: Callable[[str, str], None]):
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log"
        self.restarts = 0
        self._report = report
        self._process: asyncio.subprocess.Process | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def _spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *self.spec.argv,
                env={**os.environ, **self.spec.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                # Own process group: Ctrl-C reaches the supervisor only, which stops
                # children in order instead of all at once.
                start_new_session=True,
            )

    async def start(self) -> None:
        for port in self.spec.ports:
            if port_in_use(port):
                raise ComponentError(self.spec.name, f"port {port} is already in use")
        await self._spawn()
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not await self.spec.ready():
            assert self._process is not None
            if self._process.returncode is not None:
                raise ComponentError(
                    self.spec.name,
                    f"exited with code {self._process.returncode} during start-up; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}",
                )
            if time.monotonic() > deadline:
                raise ComponentError(
                    self.spec.name,
                    f"not ready within {READY_TIMEOUT_SECONDS:.0f} s; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}",
                )
            await asyncio.sleep(0.2)
        self._watcher = asyncio.create_task(self._watch(), name=f"watch-{self.spec.name}")

    async def _watch(self) -> None:
        attempt = 0
        while True:
            assert self._process is not None
            started = time.monotonic()
            code = await self._process.wait()
            if self._stopping.is_set():
                return
            attempt = 1 if time.monotonic() - started > STABLE_AFTER_SECONDS else attempt + 1
            delay = restart_delay(attempt)
            self.restarts += 1
            self._report(
                self.spec.name,
                f"exited with code {code}; restart #{self.restarts} in {delay:.1f} s",
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
                return
            await self._spawn()
            self._report(self.spec.name, f"restarted (pid {self.pid})")

    async def stop(self) -> None:
        self._stopping.set()
        if self._watcher:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


class Supervisor:
    """Starts processes in order, each gated on readiness. Stops the mesh's own processes
    (services, gateway) together, then the backing servers one by one in reverse order: each
    service drains within its own grace, and one after the other that added up to ~45 s."""

    def __init__(
        self,
        log_dir: Path,
        report: Callable[[str, str], None],
        reservations: PortReservations | None = None,
    ) -> None:
        """`reservations`: ports held until the process that serves them starts."""
        self.log_dir = log_dir
        self.report = report
        self.reservations = reservations
        self.processes: list[SupervisedProcess] = []

    async def start(self, spec: ProcessSpec) -> SupervisedProcess:
        if self.reservations is not None:
            self.reservations.release(spec.ports)
        process = SupervisedProcess(spec, self.log_dir, self.report)
        self.processes.append(process)
        self.report(spec.name, "starting")
        await process.start()
        self.report(spec.name, "ready")
        return process

    async def start_group(self, specs: Sequence[ProcessSpec]) -> None:
        """Starts independent processes (e.g. one service's workers) concurrently."""
        results = await asyncio.gather(*(self.start(s) for s in specs), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def stop_all(self) -> None:
        own = [p for p in self.processes if not p.spec.backing]
        await asyncio.gather(*(self._stop(process) for process in own))
        for process in reversed([p for p in self.processes if p.spec.backing]):
            await self._stop(process)
        self.processes.clear()

    async def _stop(self, process: SupervisedProcess) -> None:
        await process.stop()
        self.report(process.spec.name, "stopped")
