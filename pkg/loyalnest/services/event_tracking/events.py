"""What Event Tracking tells the mesh (task.created, task.completed), and its consumer group.

The payloads carry what the task carries to PostHog (pseudonymous, allow-listed), never a
customer's own id.
"""

from __future__ import annotations

from google.protobuf import struct_pb2

from loyalnest.gen.events.v1 import event_tracking_pb2
from loyalnest.services.event_tracking.domain import NewTask, Task

# The consumer group of every Event Tracking process: each event is applied by one of them.
CONSUMER_GROUP = "loyalnest.event_tracking"


def task_created(task: NewTask) -> event_tracking_pb2.TaskCreated:
    payload = struct_pb2.Struct()
    payload.update({"source": task.source.value, "properties": task.properties})
    return event_tracking_pb2.TaskCreated(
        task_id=task.task_id, task_type=task.event_type, payload=payload
    )


def task_completed(task: Task, *, error: str | None = None) -> event_tracking_pb2.TaskCompleted:
    outcome = (
        event_tracking_pb2.TASK_OUTCOME_FAILED
        if error is not None
        else event_tracking_pb2.TASK_OUTCOME_SUCCEEDED
    )
    return event_tracking_pb2.TaskCompleted(
        task_id=task.task_id, task_type=task.event_type, outcome=outcome, error=error or ""
    )
