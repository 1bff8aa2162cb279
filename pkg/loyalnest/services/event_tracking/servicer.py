"""gRPC surface of the Event Tracking service.

Handlers only: validation, the merchant from the token, the store's calls, proto mapping.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from loyalnest.gen.event_tracking.v1 import event_tracking_pb2_grpc
from loyalnest.gen.event_tracking.v1.event_tracking_pb2 import (
    CaptureEventsRequest,
    CaptureEventsResponse,
    ClientEvent,
    CreateTaskRequest,
    CreateTaskResponse,
    GetTaskRequest,
    GetTaskResponse,
)
from loyalnest.platform import tenancy
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.validation import Validator, is_uuid
from loyalnest.services.event_tracking.domain import (
    MAX_EVENTS_PER_BATCH,
    NewTask,
    Source,
    allowed,
    client_task_id,
    distinct_id_problem,
    event_name_problem,
    property_violations,
    timestamp_problem,
)
from loyalnest.services.event_tracking.store import TaskStore
from loyalnest.services.event_tracking.wire import properties_dict, task_proto


def _check_event(v: Validator, where: str, event: ClientEvent, now: datetime) -> None:
    v.check(is_uuid(event.uuid), f"{where}.uuid", "must be a UUID")
    problem = event_name_problem(event.event)
    v.check(problem is None, f"{where}.event", problem or "")
    problem = distinct_id_problem(event.distinct_id)
    v.check(problem is None, f"{where}.distinct_id", problem or "")
    v.violations += property_violations(f"{where}.properties", properties_dict(event.properties))
    if event.HasField("timestamp"):
        problem = timestamp_problem(event.timestamp.ToDatetime(tzinfo=UTC), now)
        v.check(problem is None, f"{where}.timestamp", problem or "")


class EventTrackingServicer(event_tracking_pb2_grpc.EventTrackingServiceServicer):
    def __init__(self, store: TaskStore) -> None:
        self._store = store

    async def CaptureEvents(
        self, request: CaptureEventsRequest, context: Context
    ) -> CaptureEventsResponse:
        merchant_id = tenancy.merchant_id()
        now = datetime.now(UTC)
        with Validator() as v:
            count = len(request.events)
            if v.check(
                0 < count <= MAX_EVENTS_PER_BATCH,
                "events",
                f"must hold 1 to {MAX_EVENTS_PER_BATCH} events (got {count})",
            ):
                for index, event in enumerate(request.events):
                    _check_event(v, f"events[{index}]", event, now)
        tasks, dropped = [], 0
        pseudonyms = self._store.pseudonyms
        for event in request.events:
            properties = allowed(event.event, properties_dict(event.properties))
            dropped += properties.dropped
            tasks.append(
                NewTask(
                    task_id=client_task_id(merchant_id, event.uuid),
                    merchant_id=merchant_id,
                    event_type=event.event,
                    source=Source.CLIENT,
                    subject=pseudonyms.of(merchant_id, event.distinct_id),
                    properties=properties.kept,
                    occurred_at=(
                        event.timestamp.ToDatetime(tzinfo=UTC)
                        if event.HasField("timestamp")
                        else now
                    ),
                )
            )
        counts = await self._store.queue_all(tasks)
        # Events about an erased person are dropped deliberately: taken (nothing to resend),
        # so counted as accepted; the metric and log say so without naming anyone.
        return CaptureEventsResponse(
            accepted=counts.new + counts.erased,
            duplicates=counts.duplicates,
            dropped_properties=dropped,
        )

    async def CreateTask(self, request: CreateTaskRequest, context: Context) -> CreateTaskResponse:
        merchant_id = tenancy.merchant_id()
        properties = properties_dict(request.properties)
        with Validator() as v:
            problem = event_name_problem(request.event_type)
            v.check(problem is None, "event_type", problem or "")
            problem = distinct_id_problem(request.distinct_id, required=False)
            v.check(problem is None, "distinct_id", problem or "")
            v.violations += property_violations("properties", properties)
            v.idempotency_key("idempotency_key", request.idempotency_key)
        pseudonyms = self._store.pseudonyms
        task = NewTask(
            task_id=str(uuid.uuid4()),
            merchant_id=merchant_id,
            event_type=request.event_type,
            source=Source.TASK,
            subject=(
                pseudonyms.of(merchant_id, request.distinct_id)
                if request.distinct_id
                else pseudonyms.merchant(merchant_id)
            ),
            properties=allowed(request.event_type, properties).kept,
            occurred_at=datetime.now(UTC),
        )
        created = await self._store.create(task, IdempotencyKey.of("CreateTask", request))
        return CreateTaskResponse(task=task_proto(created))

    async def GetTask(self, request: GetTaskRequest, context: Context) -> GetTaskResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.uuid("task_id", request.task_id)
        return GetTaskResponse(task=task_proto(await self._store.get(merchant_id, request.task_id)))
