"""The REST surface under schemathesis, through Envoy to every real service (tests/fuzz/
harness.py says what is checked). The CI-sized run is part of `make test`; `make fuzz` runs
more examples (LOYALNEST_FUZZ_EXAMPLES, LOYALNEST_FUZZ_SECONDS)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.fuzz.harness import fuzz, rest_stack
from tests.integration.shopify_standin import ShopifyStandIn

pytestmark = pytest.mark.integration

# CI size: about 5,000 requests over the ~40 operations, within the time budget.
EXAMPLES_PER_OPERATION = int(os.environ.get("LOYALNEST_FUZZ_EXAMPLES", "125"))
TIME_BUDGET_SECONDS = float(os.environ.get("LOYALNEST_FUZZ_SECONDS", "70"))
MIN_REQUESTS = int(os.environ.get("LOYALNEST_FUZZ_MIN_REQUESTS", "5000"))


@pytest.mark.timeout(TIME_BUDGET_SECONDS + 120)
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
        )
    print(report.summary())  # the figures, in the test's output
    assert not report.failures, report.summary()
    assert report.requests >= MIN_REQUESTS, report.summary()
