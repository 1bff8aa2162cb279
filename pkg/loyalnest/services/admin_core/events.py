"""What AdminCore tells the mesh, and the consumer group its processes share.

gdpr_request.created announces every customer request (Core redacts its customers from it;
AdminCore also calls every holder's PersonalDataService itself, so no service depends on the
event to comply).
"""

from __future__ import annotations

from loyalnest.gen.events.v1 import admin_core_pb2
from loyalnest.services.admin_core.domain import RequestType

# The consumer group of every AdminCore process: each event is applied by one of them.
CONSUMER_GROUP = "loyalnest.admin_core"

_TYPES = {
    RequestType.DATA_REQUEST: admin_core_pb2.GDPR_REQUEST_TYPE_DATA_REQUEST,
    RequestType.CUSTOMER_REDACT: admin_core_pb2.GDPR_REQUEST_TYPE_REDACT,
}


def gdpr_request_created(
    request_id: str, customer_id: str, kind: RequestType
) -> admin_core_pb2.GdprRequestCreated:
    return admin_core_pb2.GdprRequestCreated(
        request_id=request_id, customer_id=customer_id, type=_TYPES[kind]
    )
