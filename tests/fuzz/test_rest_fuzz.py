"""The REST surface under schemathesis, through Envoy to every real service (tests/fuzz/
harness.py says what is checked). The CI-sized run is part of `make test`; `make fuzz` runs
more examples (LOYALNEST_FUZZ_EXAMPLES, LOYALNEST_FUZZ_SECONDS)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.conftest import WHOLE_FLEET
from tests.fuzz.harness import fuzz, rest_stack
from tests.integration.shopify_standin import ShopifyStandIn

pytestmark = [pytest.mark.integration, WHOLE_FLEET]

# CI size: 24 cases per operation, about 2,200 requests over the ~90 operations of the
# fourteen services, in at most 300 s (shared evenly by the operations), and at least 1,500
# requests sent: the CI machine ran 64 per operation past the test's 600 s timeout. `make
# fuzz` sets LOYALNEST_FUZZ_EXAMPLES (and LOYALNEST_FUZZ_SECONDS) for the long run.
EXAMPLES_PER_OPERATION = int(os.environ.get("LOYALNEST_FUZZ_EXAMPLES", "24"))
TIME_BUDGET_SECONDS = float(os.environ.get("LOYALNEST_FUZZ_SECONDS", "300")) or None
MIN_REQUESTS = int(os.environ.get("LOYALNEST_FUZZ_MIN_REQUESTS", "1500"))


@pytest.mark.timeout(int(os.environ.get("LOYALNEST_FUZZ_TIMEOUT", "600")))
async def test_fuzz_every_rest_operation_through_the_gateway(
    database_url: str, redis_url: str, shopify: ShopifyStandIn, tmp_path: Path
) -> None:
    async with rest_stack(database_url, redis_url, shopify, tmp_path) as stack:
        report = await asyncio.to_thread(
            fuzz,
            stack,
            examples_per_operation=EXAMPLES_PER_OPERATION,
            time_budget_seconds=TIME_BUDGET_SECONDS,
            seed=int(os.environ.get("LOYALNEST_FUZZ_SEED", "0")) or None,
            # e.g. LOYALNEST_FUZZ_ONLY=UsersService: the operations whose id contains it.
            operation_filter=lambda name: os.environ.get("LOYALNEST_FUZZ_ONLY", "") in name,
        )
    print(report.summary())  # the figures, in the test's output
    assert not report.failures, report.summary()
    assert report.requests >= MIN_REQUESTS, report.summary()
