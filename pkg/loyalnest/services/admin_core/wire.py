"""AdminCore's domain values as protobuf messages."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import json_format, struct_pb2

from loyalnest.gen.admin_core.v1 import admin_core_pb2
from loyalnest.platform.protos import optional_timestamp, timestamp
from loyalnest.services.admin_core.domain import (
    Export,
    GdprRequest,
    Merchant,
    RequestType,
    Status,
    Step,
)

REQUEST_TYPES: dict[RequestType, admin_core_pb2.GDPRRequestType] = {
    RequestType.DATA_REQUEST: admin_core_pb2.GDPR_REQUEST_TYPE_DATA_REQUEST,
    RequestType.CUSTOMER_REDACT: admin_core_pb2.GDPR_REQUEST_TYPE_CUSTOMER_REDACT,
    RequestType.SHOP_REDACT: admin_core_pb2.GDPR_REQUEST_TYPE_SHOP_REDACT,
}
TYPES_OF_PROTO = {value: kind for kind, value in REQUEST_TYPES.items()}
_STATUSES: dict[Status, admin_core_pb2.GDPRRequestStatus] = {
    Status.PENDING: admin_core_pb2.GDPR_REQUEST_STATUS_PENDING,
    Status.COMPLETED: admin_core_pb2.GDPR_REQUEST_STATUS_COMPLETED,
}


def step_proto(step: Step) -> admin_core_pb2.GDPRStep:
    return admin_core_pb2.GDPRStep(
        service=step.service,
        status=_STATUSES[step.status],
        records=step.records,
        attempts=step.attempts,
        last_error=step.last_error,
        complete_time=optional_timestamp(step.completed_at),
    )


def request_proto(request: GdprRequest, now: datetime) -> admin_core_pb2.GDPRRequest:
    return admin_core_pb2.GDPRRequest(
        request_id=request.request_id,
        type=REQUEST_TYPES[request.type],
        customer_id=request.customer_id or "",
        source=request.source.value,
        status=_STATUSES[request.status],
        steps=[step_proto(step) for step in request.steps],
        create_time=timestamp(request.created_at),
        due_time=timestamp(request.due_at),
        complete_time=optional_timestamp(request.completed_at),
        overdue=request.overdue(now),
    )


def export_proto(export: Export) -> admin_core_pb2.GetGDPRExportResponse:
    package = struct_pb2.Struct()
    json_format.ParseDict(export.package, package)
    return admin_core_pb2.GetGDPRExportResponse(
        request_id=export.request_id,
        customer_id=export.customer_id,
        package=package,
        create_time=timestamp(export.created_at),
        expire_time=timestamp(export.expires_at),
    )


def merchant_proto(merchant: Merchant) -> admin_core_pb2.Merchant:
    return admin_core_pb2.Merchant(
        merchant_id=merchant.merchant_id,
        shop_domain=merchant.shop_domain,
        plan=merchant.plan,
        status=merchant.status,
        create_time=timestamp(merchant.created_at),
        uninstall_time=optional_timestamp(merchant.uninstalled_at),
        update_time=timestamp(merchant.updated_at),
    )
