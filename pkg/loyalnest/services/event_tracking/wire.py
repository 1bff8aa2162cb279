"""Event Tracking's domain values as protobuf messages, and client events from them."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2

from loyalnest.gen.event_tracking.v1 import event_tracking_pb2
from loyalnest.platform.protos import optional_timestamp, timestamp
from loyalnest.services.event_tracking.domain import Task, TaskStatus

_STATUS = {
    TaskStatus.PENDING: event_tracking_pb2.TASK_STATUS_PENDING,
    TaskStatus.COMPLETED: event_tracking_pb2.TASK_STATUS_COMPLETED,
    TaskStatus.FAILED: event_tracking_pb2.TASK_STATUS_FAILED,
}


def properties_dict(properties: struct_pb2.Struct) -> dict[str, Any]:
    converted: dict[str, Any] = json_format.MessageToDict(properties)
    return converted


def task_proto(task: Task) -> event_tracking_pb2.Task:
    properties = struct_pb2.Struct()
    properties.update(task.properties)
    return event_tracking_pb2.Task(
        task_id=task.task_id,
        event_type=task.event_type,
        status=_STATUS[task.status],
        properties=properties,
        attempts=task.attempts,
        last_error=task.last_error or "",
        create_time=timestamp(task.created_at),
        complete_time=optional_timestamp(task.completed_at),
    )
