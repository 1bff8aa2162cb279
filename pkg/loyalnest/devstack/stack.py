"""`loyalnest up`: the local stack as separate processes on 127.0.0.1.

Starts PostgreSQL, then each service's worker processes, gating each step on health, and
stops everything it started on Ctrl-C/SIGTERM or when a step fails.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loyalnest.devstack.postgres import LocalPostgres, PostgresError, traversable_by_others
from loyalnest.services.registry import SERVICES

DATABASE = "loyalnest"
HEALTH_TIMEOUT_SECONDS = 60.0


class StackError(RuntimeError):
    def __init__(self, component: str, reason: str) -> None:
        super().__init__(f"{component}: {reason}")
        self.component = component


@dataclass
class Worker:
    service: str
    index: int
    grpc_port: int
    metrics_port: int
    process: asyncio.subprocess.Process | None = None

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


def default_state_dir() -> Path:
    state = Path.cwd() / ".loyalnest"
    if os.geteuid() != 0 or traversable_by_others(Path.cwd()):
        return state
    # As root the postgres user must reach the data directory; a clone under /root cannot.
    digest = hashlib.sha256(str(Path.cwd()).encode()).hexdigest()[:10]
    return Path("/var/tmp") / f"loyalnest-{digest}"


def _progress(component: str, message: str) -> None:
    print(f"  {component:<14} {message}", flush=True)


async def _wait_serving(worker: Worker) -> None:
    deadline = asyncio.get_running_loop().time() + HEALTH_TIMEOUT_SECONDS
    async with grpc.aio.insecure_channel(worker.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if worker.process and worker.process.returncode is not None:
                raise StackError(worker.name, f"exited with code {worker.process.returncode}")
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise StackError(worker.name, "not SERVING within 60 s (see its log)")
            await asyncio.sleep(0.25)


async def _start_worker(worker: Worker, database_url: str, log_dir: Path) -> None:
    env = {
        **os.environ,
        "LOYALNEST_HOST": "127.0.0.1",
        "LOYALNEST_GRPC_PORT": str(worker.grpc_port),
        "LOYALNEST_METRICS_PORT": str(worker.metrics_port),
        "LOYALNEST_DATABASE_URL": database_url,
    }
    log = (log_dir / f"{worker.name}.log").open("ab")
    worker.process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "loyalnest.cli",
        "serve",
        worker.service,
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    await _wait_serving(worker)


async def _stop_workers(workers: list[Worker]) -> None:
    running = [w for w in workers if w.process and w.process.returncode is None]
    for worker in running:
        assert worker.process is not None
        worker.process.send_signal(signal.SIGTERM)
    for worker in running:
        assert worker.process is not None
        try:
            await asyncio.wait_for(worker.process.wait(), 20)
        except TimeoutError:
            worker.process.kill()
            await worker.process.wait()
        _progress(worker.name, "stopped")


def _print_endpoints(postgres: LocalPostgres, workers: list[Worker]) -> None:
    print("\nLoyalNest local stack is up (Ctrl-C stops it):\n")
    print(f"  {'component':<14} {'gRPC':<22} metrics")
    print(f"  {'postgres':<14} {postgres.url(DATABASE)}")
    for w in workers:
        print(f"  {w.name:<14} {w.address:<22} http://127.0.0.1:{w.metrics_port}/metrics")
    print(
        "\n  try: grpcurl -plaintext -H 'x-loyalnest-merchant-id: demo' -d "
        '\'{"customer_id":"c1","points":10,"idempotency_key":"k1"}\' '
        f"{workers[0].address} loyalnest.points.v1.PointsService/EarnPoints\n",
        flush=True,
    )


async def _run(args: argparse.Namespace) -> int:
    state = Path(args.state_dir) if args.state_dir else default_state_dir()
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o755)
    log_dir = state / "logs"
    log_dir.mkdir(exist_ok=True)
    postgres = LocalPostgres(state / "postgres" / "data", args.postgres_port)
    workers = [
        Worker(service, i, args.base_port + n, args.base_port + 1000 + n)
        for n, (service, i) in enumerate(
            (service, i) for service in SERVICES for i in range(args.workers)
        )
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"Starting LoyalNest (state in {state})", flush=True)
    try:
        try:
            _progress("postgres", f"starting on 127.0.0.1:{args.postgres_port}")
            await asyncio.to_thread(postgres.start)
            await asyncio.to_thread(postgres.create_database, DATABASE)
        except PostgresError as exc:
            raise StackError("postgres", str(exc)) from exc
        _progress("postgres", "ready")
        for worker in workers:
            _progress(worker.name, f"starting on {worker.address}")
            await _start_worker(worker, postgres.url(DATABASE), log_dir)
            _progress(worker.name, "SERVING")
        _print_endpoints(postgres, workers)
        await stop.wait()
        print("\nStopping...", flush=True)
        return 0
    except StackError as exc:
        print(f"\nerror: {exc.component} failed to start: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        await _stop_workers(workers)
        await asyncio.to_thread(postgres.stop)
        _progress("postgres", "stopped")


def run_stack(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
