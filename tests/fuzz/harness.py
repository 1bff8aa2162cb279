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

import base64
import contextlib
import os
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

# Never fuzzed: a server stream stays open until the client leaves (schemathesis would wait
# for the whole body), so StreamPoints is left to its own tests.
SKIPPED_OPERATIONS = frozenset({"loyalnest.points.v1.PointsService.StreamPoints"})
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


def _settings(name: str, database_url: str, redis_url: str, shopify: ShopifyStandIn) -> Any:
    key = lambda: base64.b64encode(os.urandom(32)).decode()  # noqa: E731
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "users_encryption_key": key(),
        "users_blind_index_key": key(),
        "core_encryption_key": key(),
        "core_blind_index_key": key(),
        "auth_signing_keys_path": KEYSET_PATH,
        "jwt_jwks_path": JWKS_PATH,
        "auth_encryption_key": key(),
        "auth_blind_index_key": key(),
        "shopify_api_key": API_KEY,
        "shopify_api_secret": API_SECRET,
        "shopify_base_url": shopify.base_url,
        "shopify_redirect_url": "http://localhost:5173/auth/callback",
        # The fuzzer's one merchant calls each endpoint hundreds of times in a minute.
        "rate_limit_plans": {"free": PlanRateLimit(burst=100_000, requests_per_second=10_000)},
    }
    return service_settings_for_tests(spec_for(name).settings_type, database_url, **values)


@dataclass
class RestStack:
    gateway: Gateway
    database_url: str
    document: dict[str, Any]


@contextlib.asynccontextmanager
async def rest_stack(
    database_url: str, redis_url: str, shopify: ShopifyStandIn, workdir: Path
) -> AsyncIterator[RestStack]:
    """Every registered service and Envoy with the production edge policies (JWT, RBAC, the
    per-merchant limiter, the per-address limit of public RPCs) and the OpenAPI document."""
    async with contextlib.AsyncExitStack() as stack:
        endpoints: dict[str, list[tuple[str, int]]] = {}
        for name in SERVICES:
            service = await stack.enter_async_context(
                serving(spec_for(name), _settings(name, database_url, redis_url, shopify))
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
                jwt=JwtProvider(JWKS_PATH, ServiceSettings().jwt_issuer),
                rate_limit_upstream="edge",
                # Public RPCs too must reach their handlers for most of the run.
                public_rate_limit=PublicRateLimit(burst=100_000, refill_seconds=0.05),
            ),
        )
        gateway = await stack.enter_async_context(
            running_gateway(config, workdir, {u.service: 1 for u in upstreams})
        )
        yield RestStack(gateway, database_url, openapi.render(DEFAULT_DESCRIPTOR_SET))


class RowCounts:
    """Row counts of every table of the services' schemas, in one query."""

    def __init__(self, database_url: str) -> None:
        self._conn = psycopg.connect(database_url, autocommit=True)
        tables = self._conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema', 'public')"
            " ORDER BY 1, 2"
        ).fetchall()
        self.tables = [f'"{schema}"."{name}"' for schema, name in tables]
        self._query = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in self.tables)

    def snapshot(self) -> dict[str, int]:
        return {str(name): int(n) for name, n in self._conn.execute(self._query).fetchall()}

    def close(self) -> None:
        self._conn.close()


@dataclass
class FuzzReport:
    requests: int = 0
    operations: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    # (operation, what failed) -> a sample: method, path, status, body excerpt
    failures: dict[tuple[str, str], str] = field(default_factory=dict)

    def fail(self, operation: str, what: str, sample: str) -> None:
        self.failures.setdefault((operation, what), sample)

    def summary(self) -> str:
        lines = [
            f"{self.requests} requests to {self.operations} operations;"
            f" statuses {dict(sorted(self.statuses.items()))};"
            f" {len(self.failures)} distinct failures"
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
    """Sends one case and checks its response; keeps the row counts between requests."""

    def __init__(self, stack: RestStack, report: FuzzReport) -> None:
        self.stack = stack
        self.report = report
        self.headers = {"authorization": f"Bearer {token('merchant-fuzz', every_permission())}"}
        self.counts = RowCounts(stack.database_url)
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy for 127.0.0.1
        self.last = self.counts.snapshot()

    def close(self) -> None:
        self.counts.close()
        self.session.close()

    def exchange(self, name: str, case: schemathesis.Case) -> None:
        response = case.call(
            base_url=self.stack.gateway.url, session=self.session, headers=self.headers, timeout=15
        )
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
        now = self.counts.snapshot()
        if 400 <= response.status_code < 500 and now != self.last:
            changed = {t: now[t] - self.last.get(t, 0) for t in now if now[t] != self.last.get(t)}
            report.fail(name, f"a {response.status_code} wrote {changed}", sample)
        self.last = now


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
    schema-violating input, which must get a 4xx). Stops early when the time budget is spent
    (the budget is shared evenly by the operations)."""
    schema = schemathesis.openapi.from_dict(stack.document)
    # Every operation loads (tests/unit/test_openapi.py): ok() cannot fail here.
    operations = [
        op
        for op in (result.ok() for result in schema.get_all_operations())
        if op.definition.raw.get("operationId") not in SKIPPED_OPERATIONS
        and operation_filter(str(op.definition.raw.get("operationId")))
    ]
    report = FuzzReport(operations=len(operations))
    fuzzer = _Fuzzer(stack, report)
    per_operation = (time_budget_seconds / len(operations)) if time_budget_seconds else None
    try:
        for operation in operations:
            name = str(operation.definition.raw.get("operationId"))
            deadline = time.monotonic() + per_operation if per_operation else None
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
