"""Fuzzing the REST surface: every service, real PostgreSQL and Valkey, behind a real Envoy,
driven by schemathesis from the OpenAPI document the gateway serves.

`rest_stack` starts the stack on the caller's event loop; `fuzz` (blocking: run it in a
thread, so the loop keeps serving) sends generated requests to every operation with a token
holding every permission an RPC declares, and checks each response:

- schemathesis: no 5xx, status code / content type / headers / body as documented (the
  google.rpc.Status schema for errors), invalid input rejected with a 4xx;
- ours: no stack trace or Python exception text in a body; nothing written (no row inserted
  or deleted in any service table) by a request that got a 4xx.

Requests are sent one at a time, so a change in the row counts belongs to the request just
made. Failures are collected (not raised at the first one) and reported together.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import multiprocessing
import os
import re
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import hypothesis
import psycopg
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode, checks
from schemathesis.core.failures import FailureGroup

from loyalnest.devstack.postgres import free_port
from loyalnest.gateway import GatewayConfig, Upstream, openapi
from loyalnest.gateway.descriptors import load_descriptor_set
from loyalnest.gateway.edge import EdgePolicy, JwtProvider, PublicRateLimit
from loyalnest.gateway.envoy_config import upstreams_from_descriptor_set
from loyalnest.gateway.reflection import DEFAULT_DESCRIPTOR_SET
from loyalnest.gen.options.v1 import access_pb2
from loyalnest.platform.config import ServiceSettings
from loyalnest.services.edge.domain import PlanRateLimit
from loyalnest.services.registry import SERVICES, spec_for
from tests.auth import JWKS_PATH, KEYSET_PATH, token
from tests.integration.conftest import service_settings_for_tests, serving
from tests.integration.shopify_standin import API_KEY, API_SECRET, ShopifyStandIn
from tests.integration.test_gateway_validate import Gateway, running_gateway

REPO = Path(__file__).resolve().parents[2]
# Processes generating cases (generation is most of the cost; CPython 3.11 cannot compile
# schemathesis' validators in several threads at once); requests still go out one at a time.
GENERATORS = 2
FUZZ_LOCK = 0x10A1_F022


def _server_streams() -> frozenset[str]:
    """Every server-streaming RPC of the mesh, from the descriptor set."""
    files = load_descriptor_set(DEFAULT_DESCRIPTOR_SET).file
    return frozenset(
        f"{file.package}.{service.name}.{method.name}"
        for file in files
        for service in file.service
        for method in service.method
        if method.server_streaming
    )


# Never fuzzed: a server stream stays open until the client leaves (schemathesis would wait
# for the whole body), so the server-streaming RPCs are left to their own tests.
SKIPPED_OPERATIONS = _server_streams()
# A Python traceback, or an exception's repr, in a response body: internals leaking.
STACK_TRACE_RE = re.compile(
    r"Traceback \(most recent call last\)|File \"[^\"]+\.py\", line \d+|"
    r"\b(?:psycopg|asyncpg|sqlalchemy|pydantic_core)\.[A-Za-z_.]*(?:Error|Exception)\b"
)


def every_permission() -> list[str]:
    """Every permission an RPC of the descriptor set declares: the fuzzer's token may call
    every operation, so requests get past authorisation into the handlers."""
    found: set[str] = set()
    for file in load_descriptor_set(DEFAULT_DESCRIPTOR_SET).file:
        for service in file.service:
            for method in service.method:
                options: Any = method.options
                if options.HasExtension(access_pb2.access):
                    permission = options.Extensions[access_pb2.access].permission
                    if permission:
                        found.add(permission)
    return sorted(found)


def _settings(
    name: str, database_url: str, redis_url: str, shopify_url: str, keys: tuple[Path, Path]
) -> Any:
    jwks_path, keyset_path = keys
    key = lambda: base64.b64encode(os.urandom(32)).decode()  # noqa: E731
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "users_encryption_key": key(),
        "users_blind_index_key": key(),
        "core_encryption_key": key(),
        "core_blind_index_key": key(),
        "auth_signing_keys_path": keyset_path,
        "jwt_jwks_path": jwks_path,
        "auth_encryption_key": key(),
        "auth_blind_index_key": key(),
        "shopify_api_key": API_KEY,
        "shopify_api_secret": API_SECRET,
        "shopify_base_url": shopify_url,
        "shopify_redirect_url": "http://localhost:5173/auth/callback",
        # The fuzzer's one merchant calls each endpoint hundreds of times in a minute.
        "rate_limit_plans": {"free": PlanRateLimit(burst=100_000, requests_per_second=10_000)},
    }
    return service_settings_for_tests(spec_for(name).settings_type, database_url, **values)


@dataclass
class RestStack:
    url: str  # the gateway's
    database_url: str
    document: dict[str, Any]


@contextlib.asynccontextmanager
async def serve_rest_stack(
    database_url: str,
    redis_url: str,
    shopify_url: str,
    workdir: Path,
    keys: tuple[Path, Path] = (JWKS_PATH, KEYSET_PATH),
) -> AsyncIterator[Gateway]:
    """Every registered service and Envoy with the production edge policies (JWT, RBAC, the
    per-merchant limiter, the per-address limit of public RPCs) and the OpenAPI document."""
    async with contextlib.AsyncExitStack() as stack:
        endpoints: dict[str, list[tuple[str, int]]] = {}
        for name in SERVICES:
            service = await stack.enter_async_context(
                serving(spec_for(name), _settings(name, database_url, redis_url, shopify_url, keys))
            )
            endpoints[name] = [("127.0.0.1", service.port)]
        document_path = openapi.write(DEFAULT_DESCRIPTOR_SET, workdir / "openapi.json")
        upstreams: tuple[Upstream, ...] = upstreams_from_descriptor_set(
            DEFAULT_DESCRIPTOR_SET, endpoints
        )
        config = GatewayConfig(
            listen_port=free_port(),
            admin_port=free_port(),
            descriptor_set_path=DEFAULT_DESCRIPTOR_SET,
            upstreams=upstreams,
            access_log_path=str(workdir / "access.log"),
            openapi_path=document_path,
            policy=EdgePolicy(
                jwt=JwtProvider(keys[0], ServiceSettings().jwt_issuer),
                # No per-merchant limiter: its check is a gRPC call to a Python service on
                # every request (~1.5 ms here), and the fuzzer's one merchant would only
                # exhaust its buckets. Its own operation (GetRateLimits) is still fuzzed.
                rate_limit_upstream=None,
                # Public RPCs too must reach their handlers for most of the run.
                public_rate_limit=PublicRateLimit(burst=100_000, refill_seconds=0.05),
            ),
        )
        yield await stack.enter_async_context(
            running_gateway(config, workdir, {u.service: 1 for u in upstreams})
        )


# Fuzz stack processes not yet stopped: a pytest-timeout interrupts the test before `finally`
# runs, and the stack's services would keep the session's PostgreSQL connections
# (tests/fuzz/conftest.py kills what is left).
LIVE_STACKS: set[int] = set()


@contextlib.asynccontextmanager
async def rest_stack(
    database_url: str, redis_url: str, shopify: ShopifyStandIn, workdir: Path
) -> AsyncIterator[RestStack]:
    """`serve_rest_stack` in a process of its own (`python -m tests.fuzz.harness`): the
    services then do not share this process's interpreter lock with the request generator,
    which would halve the rate on two cores."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fuzz.harness",
        database_url,
        redis_url,
        shopify.base_url,
        str(workdir),
        # The test process's keys (tests/auth.py makes new ones in every process).
        str(JWKS_PATH),
        str(KEYSET_PATH),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    LIVE_STACKS.add(process.pid)
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 120)
        if not line:
            raise AssertionError(f"the fuzz stack exited {await process.wait()} before serving")
        url = json.loads(line)["url"]
        yield RestStack(url, database_url, openapi.render(DEFAULT_DESCRIPTOR_SET))
    finally:
        if process.returncode is None:
            assert process.stdin is not None
            process.stdin.close()  # the stack stops when its stdin closes
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        LIVE_STACKS.discard(process.pid)


async def _serve_until_stdin_closes(argv: list[str], channel: TextIO) -> None:
    database_url, redis_url, shopify_url, workdir, jwks, keyset = argv
    keys = (Path(jwks), Path(keyset))
    async with serve_rest_stack(
        database_url, redis_url, shopify_url, Path(workdir), keys
    ) as gateway:
        print(json.dumps({"url": gateway.url}), file=channel, flush=True)
        await asyncio.to_thread(sys.stdin.read)  # EOF: the test is done


if __name__ == "__main__":
    os.environ.setdefault("LOYALNEST_LOG_FORMAT", "console")
    os.environ["LOYALNEST_JWT_JWKS_PATH"] = sys.argv[5]  # as tests/conftest.py sets it
    # Standard output carries the one line the test reads: whatever else writes to it (the
    # services' logs) goes to standard error instead.
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    asyncio.run(_serve_until_stdin_closes(sys.argv[1:], channel))


# Tables whose very purpose is to record refused requests: the admin sign-in lockout counts
# every failed attempt (a 401 that left no trace would allow unlimited guessing), and Login's
# per-source and per-shop limits count unauthenticated calls. Every other table must be left
# untouched by a 4xx.
RECORDS_REFUSALS = frozenset({'"auth"."sign_in_throttles"', '"auth"."request_rates"'})


class RowCounts:
    """Row counts of every table of the services' schemas (but RECORDS_REFUSALS), in one
    query."""

    def __init__(self, database_url: str) -> None:
        self._conn = psycopg.connect(database_url, autocommit=True)
        tables = self._conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema', 'public')"
            " ORDER BY 1, 2"
        ).fetchall()
        self.tables = [
            table
            for table in (f'"{schema}"."{name}"' for schema, name in tables)
            if table not in RECORDS_REFUSALS
        ]
        self._query = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in self.tables)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """One request at a time across the fuzzing processes (a session advisory lock)."""
        self._conn.execute("SELECT pg_advisory_lock(%s)", (FUZZ_LOCK,))
        try:
            yield
        finally:
            self._conn.execute("SELECT pg_advisory_unlock(%s)", (FUZZ_LOCK,))

    def snapshot(self) -> dict[str, int]:
        rows = self._conn.execute(self._query, prepare=True).fetchall()  # planned once
        return {str(name): int(n) for name, n in rows}

    def close(self) -> None:
        self._conn.close()


@dataclass
class FuzzReport:
    requests: int = 0
    operations: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    # (operation, what failed) -> a sample: method, path, status, body excerpt
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    # Seconds spent sending requests, checking responses, counting rows.
    timings: Counter[str] = field(default_factory=Counter)

    def merge(self, other: FuzzReport) -> None:
        self.requests += other.requests
        self.operations += other.operations
        self.statuses.update(other.statuses)
        self.timings.update(other.timings)
        for key, sample in other.failures.items():
            self.failures.setdefault(key, sample)

    def fail(self, operation: str, what: str, sample: str) -> None:
        self.failures.setdefault((operation, what), sample)

    def summary(self) -> str:
        lines = [
            f"{self.requests} requests to {self.operations} operations;"
            f" statuses {dict(sorted(self.statuses.items()))};"
            f" {len(self.failures)} distinct failures;"
            f" seconds { ({k: round(v, 1) for k, v in self.timings.items()}) }"
        ]
        lines += [f"  {op}: {what}\n    {sample}" for (op, what), sample in self.failures.items()]
        return "\n".join(lines)


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


def _excerpt(response: requests.Response) -> str:
    request = response.request
    return f"{request.method} {request.url} -> {response.status_code} {response.text[:300]!r}"


class _Fuzzer:
    """Sends one case and checks its response, in one fuzzing process."""

    def __init__(self, url: str, database_url: str, headers: dict[str, str]) -> None:
        self.url = url
        self.report = FuzzReport()
        self.headers = headers
        self.counts = RowCounts(database_url)
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy for 127.0.0.1

    def close(self) -> None:
        self.counts.close()
        self.session.close()

    def exchange(self, name: str, case: schemathesis.Case) -> None:
        # Requests go out one at a time over all processes, so a change in the row counts
        # around a request is that request's.
        with self.counts.exclusive():
            before = self.counts.snapshot()
            started = time.perf_counter()
            try:
                response = case.call(
                    base_url=self.url, session=self.session, headers=self.headers, timeout=15
                )
            except Exception as error:
                self.report.fail(name, f"no response: {type(error).__name__}: {error}"[:200], "")
                return
            self.report.timings["call"] += time.perf_counter() - started
            after = self.counts.snapshot()
        report = self.report
        report.requests += 1
        report.statuses[response.status_code] += 1
        sample = _excerpt(response)
        try:
            case.validate_response(response, checks=CHECKS, headers=self.headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                title = getattr(failure, "title", type(failure).__name__)
                report.fail(name, f"schemathesis: {title}", sample)
        except AssertionError as failure:
            title = str(failure).strip().splitlines()[0][:120]
            report.fail(name, f"schemathesis: {title}", sample)
        except Exception as failure:
            report.fail(name, f"check error: {type(failure).__name__}", sample)
        if STACK_TRACE_RE.search(response.text):
            report.fail(name, "stack trace or exception text in the body", sample)
        if 400 <= response.status_code < 500 and after != before:
            changed = {t: after[t] - before.get(t, 0) for t in after if after[t] != before.get(t)}
            report.fail(name, f"a {response.status_code} wrote {changed}", sample)


def _fuzz_worker(
    url: str,
    database_url: str,
    document: dict[str, Any],
    headers: dict[str, str],
    operation_ids: list[str],
    examples_per_operation: int,
    negative_share: float,
    seconds_per_operation: float | None,
    seed: int | None,
) -> FuzzReport:
    """One fuzzing process: its share of the operations, one after the other."""
    schema = schemathesis.openapi.from_dict(document)
    wanted = set(operation_ids)
    fuzzer = _Fuzzer(url, database_url, headers)
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            name = str(operation.definition.raw.get("operationId"))
            if name not in wanted:
                continue
            fuzzer.report.operations += 1
            deadline = time.monotonic() + seconds_per_operation if seconds_per_operation else None
            for mode, share in (
                (GenerationMode.POSITIVE, 1 - negative_share),
                (GenerationMode.NEGATIVE, negative_share),
            ):
                _run_operation(
                    fuzzer,
                    name,
                    operation.as_strategy(generation_mode=mode),
                    examples=max(1, round(examples_per_operation * share)),
                    deadline=deadline,
                    seed=seed,
                )
    finally:
        fuzzer.close()
    return fuzzer.report


def fuzz(
    stack: RestStack,
    *,
    examples_per_operation: int,
    negative_share: float = 0.3,
    time_budget_seconds: float | None = None,
    seed: int | None = None,
    operation_filter: Callable[[str], bool] = lambda _: True,
) -> FuzzReport:
    """Blocking: generated requests to every operation (positive cases, then negative ones:
    schema-violating input, which must get a 4xx), from GENERATORS processes. An operation
    stops early when its even share of the time budget is spent."""
    schema = schemathesis.openapi.from_dict(stack.document)
    # Every operation loads (tests/unit/test_openapi.py): ok() cannot fail here.
    names = [str(r.ok().definition.raw.get("operationId")) for r in schema.get_all_operations()]
    names = [n for n in names if n not in SKIPPED_OPERATIONS and operation_filter(n)]
    seconds = time_budget_seconds * GENERATORS / len(names) if time_budget_seconds else None
    # Minted here: tests/auth.py makes a new keyset in every process.
    headers = {"authorization": f"Bearer {token('merchant-fuzz', every_permission())}"}
    report = FuzzReport()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(GENERATORS, mp_context=context) as pool:
        futures = [
            pool.submit(
                _fuzz_worker,
                stack.url,
                stack.database_url,
                stack.document,
                headers,
                names[index::GENERATORS],
                examples_per_operation,
                negative_share,
                seconds,
                seed,
            )
            for index in range(GENERATORS)
        ]
        for future in futures:
            report.merge(future.result())
    return report


def _run_operation(
    fuzzer: _Fuzzer,
    name: str,
    strategy: Any,
    *,
    examples: int,
    deadline: float | None,
    seed: int | None,
) -> None:
    @given(case=strategy)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=seed is not None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are collected
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        if deadline is None or time.monotonic() < deadline:
            fuzzer.exchange(name, case)

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        pass  # nothing to generate in this mode (e.g. no negative form)
    except Exception as error:
        fuzzer.report.fail(name, f"generation: {type(error).__name__}: {error}"[:200], "")
