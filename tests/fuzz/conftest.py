"""The integration suite's real Valkey and Shopify stand-in, for the fuzzer's stack."""

import contextlib
import os
import signal
from collections.abc import Iterator

import pytest

from tests.fuzz.harness import LIVE_STACKS
from tests.integration.conftest import redis_url, shopify

__all__ = ["redis_url", "shopify"]


@pytest.fixture(autouse=True)
def no_stack_outlives_its_test() -> Iterator[None]:
    yield
    for pid in list(LIVE_STACKS):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        LIVE_STACKS.discard(pid)
