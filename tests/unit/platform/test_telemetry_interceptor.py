"""The RED metrics name a call the client cancelled CANCELLED, for unary and streaming RPCs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from loyalnest.platform.interceptors import TelemetryInterceptor
from loyalnest.platform.observability import RPC_HANDLED

METHOD = "/loyalnest.test.v1.TelemetryProbe/Call"


class CancelledContext:
    """What grpc.aio's servicer context answers once the client has gone."""

    def cancelled(self) -> bool:
        return True

    def code(self) -> None:
        return None


def handled(kind: str, code: str) -> float:
    value = RPC_HANDLED.labels("loyalnest.test.v1.TelemetryProbe", "Call", kind, code)._value
    return float(value.get())


async def test_a_unary_call_cancelled_mid_handler_counts_as_cancelled() -> None:
    async def handler(request: Any, context: Any) -> Any:
        raise asyncio.CancelledError

    observed = TelemetryInterceptor(access_log=False).wrap_unary(METHOD, "unary", handler)
    before = handled("unary", "CANCELLED"), handled("unary", "UNKNOWN")
    with pytest.raises(asyncio.CancelledError):
        await observed(object(), CancelledContext())
    assert (handled("unary", "CANCELLED"), handled("unary", "UNKNOWN")) == (
        before[0] + 1,
        before[1],
    )


async def test_a_stream_cancelled_mid_handler_counts_as_cancelled() -> None:
    async def handler(request: Any, context: Any) -> AsyncIterator[Any]:
        yield object()
        raise asyncio.CancelledError

    observed = TelemetryInterceptor(access_log=False).wrap_stream(METHOD, "server_stream", handler)
    before = handled("server_stream", "CANCELLED")
    with pytest.raises(asyncio.CancelledError):
        async for _ in observed(object(), CancelledContext()):
            pass
    assert handled("server_stream", "CANCELLED") == before + 1
