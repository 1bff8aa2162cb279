"""One exception hierarchy for every service, mapped to gRPC status codes.

Handlers raise these; the error interceptor turns them into a `google.rpc.Status` carrying
rich error details (BadRequest field violations, ResourceInfo, PreconditionFailure, RetryInfo),
so REST clients behind the gateway get the matching HTTP code and a structured body.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class LoyalNestError(Exception):
    """Base of every error a handler may raise on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> list[Message]:
        return []

    def packed_details(self) -> list[any_pb2.Any]:
        packed = []
        for detail in self.details():
            item = any_pb2.Any()
            item.Pack(detail)
            packed.append(item)
        return packed


class InvalidArgument(LoyalNestError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, violations: Iterable[FieldViolation] = ()) -> None:
        super().__init__(message)
        self.violations = tuple(violations)

    @classmethod
    def for_field(cls, field: str, description: str) -> InvalidArgument:
        return cls(f"{field}: {description}", [FieldViolation(field, description)])

    def details(self) -> list[Message]:
        if not self.violations:
            return []
        return [
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in self.violations
                ]
            )
        ]


class NotFound(LoyalNestError):
    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, resource_type: str, resource_name: str) -> None:
        super().__init__(f"{resource_type} {resource_name!r} not found")
        self.resource_type = resource_type
        self.resource_name = resource_name

    def details(self) -> list[Message]:
        return [
            error_details_pb2.ResourceInfo(
                resource_type=self.resource_type, resource_name=self.resource_name
            )
        ]


class AlreadyExists(LoyalNestError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(LoyalNestError):
    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, message: str, *, violation_type: str, subject: str) -> None:
        super().__init__(message)
        self.violation_type = violation_type
        self.subject = subject

    def details(self) -> list[Message]:
        return [
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=self.violation_type, subject=self.subject, description=self.message
                    )
                ]
            )
        ]


class Aborted(LoyalNestError):
    code = grpc.StatusCode.ABORTED


class _Retryable(LoyalNestError):
    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds

    def details(self) -> list[Message]:
        if self.retry_after_seconds is None:
            return []
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(self.retry_after_seconds * 1e9))
        return [error_details_pb2.RetryInfo(retry_delay=delay)]


class ResourceExhausted(_Retryable):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class QuotaExceeded(LoyalNestError):
    """A limit of the caller's plan or quota is reached: retrying will not help until the
    limit changes, so no RetryInfo; the QuotaFailure names what is limited."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, *, subject: str) -> None:
        super().__init__(message)
        self.subject = subject

    def details(self) -> list[Message]:
        return [
            error_details_pb2.QuotaFailure(
                violations=[
                    error_details_pb2.QuotaFailure.Violation(
                        subject=self.subject, description=self.message
                    )
                ]
            )
        ]


class Unavailable(_Retryable):
    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(LoyalNestError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(LoyalNestError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Internal(LoyalNestError):
    code = grpc.StatusCode.INTERNAL


class DownstreamError(LoyalNestError):
    """Another service's answer, passed on as it came (code, message and details), so a
    NOT_FOUND two hops away still reaches the client as NOT_FOUND, not INTERNAL."""

    def __init__(self, code: grpc.StatusCode, message: str, details: list[any_pb2.Any]) -> None:
        super().__init__(message)
        self.code = code
        self._packed = details

    def packed_details(self) -> list[any_pb2.Any]:
        return list(self._packed)
