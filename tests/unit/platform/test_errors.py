"""Every handler failure reaches the client as a deliberate status with rich details."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import psycopg
import pymongo.errors
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from loyalnest.gen.options.v1.access_pb2 import AccessPolicy
from loyalnest.platform import errors
from loyalnest.platform.auth.policy import declare_access
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.server import Registration, ServiceComponents, ServiceSpec, running
from tests.auth import merchant_metadata

# Generic handlers have no proto to declare access in: any valid token (fail closed otherwise).
for _service in ("test.Failing",):
    declare_access(_service, AccessPolicy(authenticated=True))

FAILURES: dict[str, Exception] = {
    "invalid": errors.InvalidArgument.for_field("points", "must be positive"),
    "missing": errors.NotFound("points_ledger", "c-1"),
    "precondition": errors.FailedPrecondition("no", violation_type="X", subject="s"),
    "exhausted": errors.ResourceExhausted("slow down", retry_after_seconds=2.5),
    "crash": ZeroDivisionError("boom"),
    "db-down": psycopg.OperationalError("connection refused"),
    "mongo-down": pymongo.errors.ServerSelectionTimeoutError("no primary"),
    "conflict": psycopg.errors.SerializationFailure("could not serialize"),
}


async def _fail(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise FAILURES[request.decode()]


def _register(servicer: object, server: grpc.aio.Server) -> None:
    handler = grpc.unary_unary_rpc_method_handler(_fail)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.Failing", {"Fail": handler}),)
    )


async def _build(settings: ServiceSettings) -> ServiceComponents:
    return ServiceComponents(registrations=[Registration("test.Failing", _register, None)])


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    spec = ServiceSpec(name="failing", settings_type=ServiceSettings, build=_build)
    settings = ServiceSettings(grpc_port=0, metrics_enabled=False, shutdown_grace_seconds=0)
    async with running(spec, settings) as service:
        async with grpc.aio.insecure_channel(service.address) as channel:
            yield channel


async def _call(channel: grpc.aio.Channel, failure: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary("/test.Failing/Fail")(
            failure.encode(), metadata=merchant_metadata("m")
        )
    return caught.value


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT),
        ("missing", grpc.StatusCode.NOT_FOUND),
        ("precondition", grpc.StatusCode.FAILED_PRECONDITION),
        ("exhausted", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("crash", grpc.StatusCode.INTERNAL),
        ("db-down", grpc.StatusCode.UNAVAILABLE),
        ("mongo-down", grpc.StatusCode.UNAVAILABLE),
        ("conflict", grpc.StatusCode.ABORTED),
    ],
)
async def test_status_codes(channel, failure, code):
    error = await _call(channel, failure)
    assert error.code() == code


async def test_unexpected_errors_do_not_leak_internals(channel):
    error = await _call(channel, "crash")
    assert error.details() == "internal error"
    assert "boom" not in str(error.trailing_metadata())


async def test_bad_request_details(channel):
    status = rpc_status.from_call(await _call(channel, "invalid"))  # type: ignore[arg-type]
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("points", "must be positive")
    ]


async def test_resource_info_and_retry_info(channel):
    status = rpc_status.from_call(await _call(channel, "missing"))  # type: ignore[arg-type]
    info = error_details_pb2.ResourceInfo()
    assert status is not None and status.details[0].Unpack(info)
    assert (info.resource_type, info.resource_name) == ("points_ledger", "c-1")

    status = rpc_status.from_call(await _call(channel, "exhausted"))  # type: ignore[arg-type]
    retry = error_details_pb2.RetryInfo()
    assert status is not None and status.details[0].Unpack(retry)
    assert retry.retry_delay.ToMilliseconds() == 2500
