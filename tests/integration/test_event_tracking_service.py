"""Event Tracking against a real PostgreSQL, the PostHog stand-in, Envoy and the broker.

Client events (gRPC and `POST /v1/api/events` through Envoy) and domain events (from Kafka)
become queue_tasks rows and reach the PostHog stand-in once each, pseudonymous and
allow-listed, in gzip'd `/batch/` requests; a 503 or 429 is retried honouring Retry-After;
a task PostHog keeps refusing fails after bounded attempts with its reason. `ISOLATION` is
the service's table in the mesh-wide isolation test (test_tenant_isolation.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition

from loyalnest.devstack.standins.posthog import DEFAULT_API_KEY, PosthogStandIn
from loyalnest.gen.event_tracking.v1 import event_tracking_pb2 as pb
from loyalnest.gen.event_tracking.v1 import event_tracking_pb2_grpc
from loyalnest.gen.events.v1 import admin_features_pb2, event_tracking_pb2, points_pb2
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.events import topics
from loyalnest.platform.events.envelope import Envelope, new_event
from loyalnest.platform.personal_data import CustomerRef
from loyalnest.platform.postgres import Database
from loyalnest.platform.server import RunningService, running
from loyalnest.services.event_tracking.domain import Pseudonyms
from loyalnest.services.event_tracking.service import (
    _DEVELOPMENT_PSEUDONYM_KEY,
    DATABASE,
    SERVICE_NAME,
    SPEC,
    EventTrackingSettings,
)
from loyalnest.services.event_tracking.store import TaskStore
from tests.auth import merchant_headers, merchant_metadata
from tests.integration.broker import BrokerProcess
from tests.integration.conftest import (
    eventually,
    serve_for_test,
    service_settings_for_tests,
    wait_for_health,
)
from tests.integration.events_worker import FAST_EVENTS
from tests.integration.isolation import Case, Metadata, Table
from tests.integration.test_gateway_validate import Gateway, behind_gateway, http

pytestmark = pytest.mark.integration

READ, WRITE = "event_tracking:read", "event_tracking:write"
Stub = event_tracking_pb2_grpc.EventTrackingServiceStub
Served = tuple[RunningService, Stub]
PSEUDONYMS = Pseudonyms(_DEVELOPMENT_PSEUDONYM_KEY)


@pytest.fixture
def posthog() -> Iterator[PosthogStandIn]:
    standin = PosthogStandIn().start()
    try:
        yield standin
    finally:
        standin.stop()


def settings_for(database_url: str, posthog: PosthogStandIn, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "posthog_host": posthog.url,
        "posthog_api_key": DEFAULT_API_KEY,
        "posthog_poll_interval_seconds": 0.05,
        "posthog_retry_initial_seconds": 0.05,
        "posthog_round_backoff_seconds": 0.1,
    }
    return service_settings_for_tests(EventTrackingSettings, database_url, **(values | overrides))


@pytest.fixture
async def served(database_url: str, posthog: PosthogStandIn) -> AsyncIterator[Served]:
    async with serve_for_test(SPEC, settings_for(database_url, posthog), Stub) as running_service:
        yield running_service


@pytest.fixture
def stub(served: Served) -> Stub:
    return served[1]


def client_event(
    name: str = "widget_opened", distinct_id: str = "7390012230001", **properties: Any
) -> pb.ClientEvent:
    props = struct_pb2.Struct()
    props.update(properties)
    return pb.ClientEvent(
        uuid=str(uuid.uuid4()), event=name, distinct_id=distinct_id, properties=props
    )


async def capture(stub: Stub, merchant: str, *events: pb.ClientEvent) -> pb.CaptureEventsResponse:
    response: pb.CaptureEventsResponse = await stub.CaptureEvents(
        pb.CaptureEventsRequest(events=events), metadata=merchant_metadata(merchant, (WRITE,))
    )
    return response


async def arrived(posthog: PosthogStandIn, count: int, timeout: float = 15) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]]:
        events = posthog.received()
        return events if len(events) >= count else []

    return await eventually(enough, timeout, f"{count} events at the PostHog stand-in")


async def test_serves_health(served: Served) -> None:
    service, _ = served
    await wait_for_health(
        service.address, health_pb2.HealthCheckResponse.SERVING, service=SERVICE_NAME
    )


async def test_client_events_reach_posthog_once_pseudonymous_and_allow_listed(
    stub: Stub, posthog: PosthogStandIn, merchant_id: str
) -> None:
    opened = client_event("widget_opened", trigger="launcher", email="ada@example.com")
    viewed = client_event("reward_viewed", reward_id="r-1", points_cost=500, note="+1 555 0100 22")
    first = await capture(stub, merchant_id, opened, viewed)
    assert (first.accepted, first.duplicates, first.dropped_properties) == (2, 0, 2)
    # A resend of the same uuids queues nothing again.
    again = await capture(stub, merchant_id, opened, viewed)
    assert (again.accepted, again.duplicates) == (0, 2)

    events = await arrived(posthog, 2)
    await asyncio.sleep(0.3)  # nothing more comes
    assert sorted(posthog.deliveries.values()) == [1, 1]
    by_name = {e["event"]: e for e in events}
    pseudonym = PSEUDONYMS.of(merchant_id, "7390012230001")
    assert by_name["widget_opened"]["distinct_id"] == pseudonym != "7390012230001"
    assert by_name["widget_opened"]["properties"]["trigger"] == "launcher"
    assert "email" not in by_name["widget_opened"]["properties"]
    assert by_name["reward_viewed"]["properties"]["points_cost"] == 500
    assert "note" not in by_name["reward_viewed"]["properties"]
    assert "7390012230001" not in str(events) and "ada@example.com" not in str(events)
    assert all(r.gzipped for r in posthog.requests)

    # Each task is completed, and its id is the event's uuid at PostHog.
    read = merchant_metadata(merchant_id, (READ,))
    for event in events:
        task = (await stub.GetTask(pb.GetTaskRequest(task_id=event["uuid"]), metadata=read)).task
        assert task.status == pb.TASK_STATUS_COMPLETED and task.attempts == 1


async def test_invalid_batches_are_refused_whole_with_each_field_named(
    stub: Stub, posthog: PosthogStandIn, merchant_id: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await capture(stub, merchant_id)
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "events" in (empty.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as too_many:
        await capture(stub, merchant_id, *[client_event() for _ in range(101)])
    assert "1 to 100 events" in (too_many.value.details() or "")

    bad_uuid = client_event()
    bad_uuid.uuid = "not-a-uuid"
    nested = client_event()
    nested.properties.update({"cart": {"items": 3}})
    bad_name = client_event("Has Spaces")
    no_person = client_event(distinct_id="")
    huge = client_event(page_type="x" * 1001)
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await capture(
            stub, merchant_id, client_event(), bad_uuid, nested, bad_name, no_person, huge
        )
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = invalid.value.details() or ""
    for field in (
        "events[1].uuid",
        "events[2].properties.cart",
        "events[3].event",
        "events[4].distinct_id",
        "events[5].properties.page_type",
    ):
        assert field in details, (field, details)
    await asyncio.sleep(0.3)
    assert posthog.received() == []  # the valid first event was not taken either


async def test_a_503_with_retry_after_is_retried_and_the_event_arrives_once(
    stub: Stub, posthog: PosthogStandIn, merchant_id: str
) -> None:
    posthog.fail_next(503, retry_after="1")
    posthog.fail_next(429, retry_after="0")
    started = time.monotonic()
    await capture(stub, merchant_id, client_event())
    events = await arrived(posthog, 1)
    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    assert posthog.deliveries[events[0]["uuid"]] == 1
    assert [r.status for r in posthog.requests] == [503, 429, 200]


async def test_a_task_posthog_keeps_refusing_fails_with_its_reason(
    database_url: str, posthog: PosthogStandIn, merchant_id: str
) -> None:
    settings = settings_for(
        database_url, posthog, posthog_send_attempts=2, posthog_task_max_attempts=2
    )
    posthog.fail_next(503, count=4)
    async with serve_for_test(SPEC, settings, Stub) as (_, stub):
        event = client_event()
        await capture(stub, merchant_id, event)
        read = merchant_metadata(merchant_id, (READ,))
        database = Database(ServiceSettings(database_url=database_url), DATABASE)
        await database.open()
        try:
            task_id = (await _task_ids(database, merchant_id))[0]

            async def failed() -> pb.Task | None:
                task = (await stub.GetTask(pb.GetTaskRequest(task_id=task_id), metadata=read)).task
                return task if task.status == pb.TASK_STATUS_FAILED else None

            task = await eventually(failed, 15, "the task to fail")
            assert task.attempts == 2 and "503" in task.last_error
            # task.completed FAILED went to the outbox with the reason.
            async with database.pool.connection() as conn:
                cursor = await conn.execute(
                    "SELECT envelope FROM outbox WHERE event_type = 'task.completed'"
                )
                rows = await cursor.fetchall()
            completed = event_tracking_pb2.TaskCompleted()
            assert len(rows) == 1
            Envelope.FromString(rows[0][0]).payload.Unpack(completed)
            assert completed.outcome == event_tracking_pb2.TASK_OUTCOME_FAILED
            assert "503" in completed.error
        finally:
            await database.close()
    assert posthog.received() == []


async def _task_ids(database: Database, merchant_id: str) -> list[str]:
    async with database.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT task_id::text FROM queue_tasks WHERE merchant_id = %s", (merchant_id,)
        )
        return [row[0] for row in await cursor.fetchall()]


async def test_create_task_is_idempotent_and_ships(
    stub: Stub, posthog: PosthogStandIn, merchant_id: str
) -> None:
    props = struct_pb2.Struct()
    props.update({"section": "rewards", "password": "hunter2"})
    request = pb.CreateTaskRequest(
        event_type="settings_saved", properties=props, idempotency_key="task-1"
    )
    write = merchant_metadata(merchant_id, (WRITE,))
    task = (await stub.CreateTask(request, metadata=write)).task
    assert task.event_type == "settings_saved" and dict(task.properties) == {"section": "rewards"}
    assert (await stub.CreateTask(request, metadata=write)).task.task_id == task.task_id
    reused = pb.CreateTaskRequest(event_type="other", idempotency_key="task-1")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreateTask(reused, metadata=write)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    events = await arrived(posthog, 1)
    assert events[0]["uuid"] == task.task_id
    assert events[0]["distinct_id"] == PSEUDONYMS.merchant(merchant_id)
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stub.CreateTask(
            pb.CreateTaskRequest(event_type="x", idempotency_key="k"),
            metadata=merchant_metadata(merchant_id, (READ,)),
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_export_and_erase_of_a_customer_and_a_merchant(
    database_url: str, posthog: PosthogStandIn, merchant_id: str
) -> None:
    settings = settings_for(database_url, posthog, posthog_api_key=None)
    async with serve_for_test(SPEC, settings, Stub) as (_, stub):
        await _export_and_erase(database_url, stub, merchant_id)


async def _export_and_erase(database_url: str, stub: Stub, merchant_id: str) -> None:
    other = f"other-{merchant_id}"
    await capture(
        stub, merchant_id, client_event(distinct_id="c-1"), client_event(distinct_id="c-2")
    )
    await capture(stub, merchant_id, client_event("user_created", distinct_id="u-1"))
    await capture(stub, other, client_event(distinct_id="c-1"))
    database = Database(ServiceSettings(database_url=database_url), DATABASE)
    await database.open()
    try:
        store = TaskStore(database, PSEUDONYMS)
        ann = CustomerRef("c-1", user_ids=("u-1",))
        exported = (await store.export_customer(merchant_id, ann)).data
        assert exported["posthog_distinct_ids"] == sorted(
            [PSEUDONYMS.of(merchant_id, "c-1"), PSEUDONYMS.of(merchant_id, "u-1")]
        )
        assert sorted(e["event_type"] for e in exported["events"]) == [
            "user_created",
            "widget_opened",
        ]
        # Nothing was shipped (no PostHog key here): PostHog knows no person, so the erasure
        # is done at once (test_event_tracking_person_deletion.py: the shipped case).
        assert await store.erase_customer(merchant_id, ann) == 2
        assert await store.erase_customer(merchant_id, ann) == 0  # idempotent
        assert (await store.export_customer(merchant_id, ann)).data["events"] == []
        assert (
            len((await store.export_customer(merchant_id, CustomerRef("c-2"))).data["events"]) == 1
        )
        assert len((await store.export_customer(other, CustomerRef("c-1"))).data["events"]) == 1
        assert await store.erase_merchant(merchant_id) >= 1
        assert await _task_ids(database, merchant_id) == []
        assert len(await _task_ids(database, other)) == 1
    finally:
        await database.close()


# ---- end to end: Envoy, the broker, domain events --------------------------------------------


def _publish(bootstrap: str, merchant_id: str, *payloads: Any) -> list[str]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    ids = []
    try:
        for payload in payloads:
            event = new_event(merchant_id, payload)
            headers = [(k, v.encode()) for k, v in event.headers.items()]
            producer.send(
                event.spec.topic.name, key=event.key.encode(), value=event.value, headers=headers
            ).get(timeout=10)
            ids.append(event.event_id)
    finally:
        producer.close()
    return ids


def _completed_on_topic(bootstrap: str, count: int, timeout: float = 30) -> list[str]:
    """The task ids of the first `count` task.completed records on Event Tracking's topic."""
    topic = topics.EVENT_TRACKING
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    found: list[str] = []
    try:
        partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        until = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < until:
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    envelope = Envelope.FromString(record.value)
                    if envelope.event_type == "task.completed":
                        completed = event_tracking_pb2.TaskCompleted()
                        envelope.payload.Unpack(completed)
                        found.append(completed.task_id)
    finally:
        consumer.close()
    return found


@contextlib.asynccontextmanager
async def pipeline(
    database_url: str, posthog: PosthogStandIn, workdir: Path
) -> AsyncIterator[tuple[Gateway, BrokerProcess]]:
    broker = BrokerProcess()
    await broker.start()
    try:
        settings = settings_for(
            database_url,
            posthog,
            events_enabled=True,
            kafka_bootstrap_servers=broker.bootstrap_servers,
            **FAST_EVENTS,
        )
        async with running(SPEC, settings) as service:
            await asyncio.wait_for(service.health.started.wait(), 30)
            async with behind_gateway("event_tracking", SERVICE_NAME, service, workdir) as gateway:
                yield gateway, broker
    finally:
        broker.close()


async def test_rest_and_domain_events_reach_posthog_once_each_after_a_503(
    database_url: str, posthog: PosthogStandIn, tmp_path: Path, merchant_id: str
) -> None:
    async with pipeline(database_url, posthog, tmp_path) as (gateway, broker):
        posthog.fail_next(503, retry_after="1")
        url = f"{gateway.url}/v1/api/events"
        headers = merchant_headers(merchant_id, (WRITE,))
        body = {
            "events": [
                {
                    "uuid": str(uuid.uuid4()),
                    "event": "reward_redeem_clicked",
                    "distinct_id": "7390012230001",
                    "properties": {"reward_id": "r-9", "points_cost": 250, "name": "Ada"},
                    "timestamp": "2026-12-06T03:00:00Z",
                }
            ]
        }
        sent = await http("POST", url, headers=headers, json_body=body)
        assert sent.status == 200, sent.body
        assert sent.json() == {"accepted": 1, "duplicates": 0, "dropped_properties": 1}
        resent = await http("POST", url, headers=headers, json_body=body)
        assert resent.json() == {"accepted": 0, "duplicates": 1, "dropped_properties": 1}

        # A clear 400 for a bad batch, 401 without a token, 403 without the permission.
        bad = await http("POST", url, headers=headers, json_body={"events": []})
        assert bad.status == 400 and "events" in bad.body.decode()
        assert (await http("POST", url, json_body=body)).status == 401
        forbidden = await http(
            "POST", url, headers=merchant_headers(merchant_id, (READ,)), json_body=body
        )
        assert forbidden.status == 403

        # Domain events from the broker: an earn, a failed and a sent notification.
        earned = points_pb2.PointsEarned(
            customer_id="7390012230001", points=120, balance_after=120, reason="order:1001"
        )
        failed = admin_features_pb2.EmailEventCreated(
            customer_id="7390012230001",
            provider="klaviyo",
            template_id="referral-invite",
            status=admin_features_pb2.EMAIL_STATUS_FAILED,
        )
        delivered = admin_features_pb2.EmailEventCreated(
            customer_id="7390012230001", status=admin_features_pb2.EMAIL_STATUS_SENT
        )
        earned_id, failed_id, _ = await asyncio.to_thread(
            _publish, broker.bootstrap_servers, merchant_id, earned, failed, delivered
        )

        events = await arrived(posthog, 3, timeout=60)
        await asyncio.sleep(0.5)
        assert len(posthog.received()) == 3 and set(posthog.deliveries.values()) == {1}
        by_name = {e["event"]: e for e in events}
        assert by_name["points_earned"]["uuid"] == earned_id
        assert by_name["points_earned"]["properties"] | {"merchant_id": ""} == {
            "points": 120,
            "balance_after": 120,
            "lifetime_earned_after": 0,
            "reason_kind": "order",
            "merchant_id": "",
            "$lib": "loyalnest-event-tracking",
        }
        assert by_name["notification_failed"]["uuid"] == failed_id
        assert by_name["notification_failed"]["properties"]["provider"] == "klaviyo"
        assert by_name["reward_redeem_clicked"]["timestamp"].startswith("2026-12-06T03:00:00")
        pseudonym = PSEUDONYMS.of(merchant_id, "7390012230001")
        assert {e["distinct_id"] for e in events} == {pseudonym}
        assert "7390012230001" not in str(events) and "Ada" not in str(events)
        assert 503 in [r.status for r in posthog.requests]

        # task.completed for each, through the outbox and the broker.
        completed = await asyncio.to_thread(_completed_on_topic, broker.bootstrap_servers, 3)
        assert sorted(completed) == sorted(e["uuid"] for e in events)


# ---- the mesh-wide isolation table (test_tenant_isolation.py) ---------------------------


async def _arrange(ch: grpc.aio.Channel, md: Metadata) -> dict[str, Any]:
    create = pb.CreateTaskRequest(event_type="settings_saved", idempotency_key="key-b-task")
    task = (await Stub(ch).CreateTask(create, metadata=md)).task
    event = client_event(distinct_id="cust-b")
    await Stub(ch).CaptureEvents(pb.CaptureEventsRequest(events=[event]), metadata=md)
    return {"secrets": [task.task_id], "task": task, "create": create, "event": event}


async def _snapshot(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    return await Stub(ch).GetTask(pb.GetTaskRequest(task_id=b["task"].task_id), metadata=md)


async def _get_b_task(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    return await Stub(ch).GetTask(pb.GetTaskRequest(task_id=b["task"].task_id), metadata=md)


async def _replay_b_create(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    # B's exact request, key included: A gets a task of its own, never B's.
    return await Stub(ch).CreateTask(b["create"], metadata=md)


async def _replay_b_capture(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    # B's event uuid, sent by A: queued as A's own (accepted), never a duplicate of B's.
    response = await Stub(ch).CaptureEvents(
        pb.CaptureEventsRequest(events=[b["event"]]), metadata=md
    )
    assert response.accepted == 1, response
    return response


ISOLATION = Table(
    arrange=_arrange,
    snapshot=_snapshot,
    cases={
        "GetTask": [Case(_get_b_task)],
        "CreateTask": [Case(_replay_b_create, may_succeed=True)],
        "CaptureEvents": [Case(_replay_b_capture, may_succeed=True)],
    },
)


async def test_finished_tasks_are_purged_after_their_retention(
    database_url: str, posthog: PosthogStandIn, merchant_id: str
) -> None:
    """Completed and failed tasks older than the retention go (the service's own loop);
    recent ones and pending ones, however old, stay."""
    settings = settings_for(
        database_url,
        posthog,
        event_tracking_task_retention_days=1,
        event_tracking_purge_interval_seconds=0.1,
    )
    async with serve_for_test(SPEC, settings, Stub) as (_, stub):
        names = ("old_completed", "old_failed", "recent", "old_pending")
        await capture(stub, merchant_id, *(client_event(name) for name in names))
        events = await arrived(posthog, 4)
        ids = {e["event"]: e["uuid"] for e in events}
        database = Database(ServiceSettings(database_url=database_url), DATABASE)
        await database.open()
        try:
            async with database.pool.connection() as conn:
                ages = (
                    ("old_completed", "completed", "2 days"),
                    ("old_failed", "failed", "3 days"),
                    ("recent", "completed", "1 hour"),
                )
                for name, status, age in ages:
                    await conn.execute(
                        "UPDATE queue_tasks SET status = %s,"
                        " completed_at = now() - %s::interval WHERE task_id = %s",
                        (status, age, ids[name]),
                    )
                # Pending (say, PostHog's key missing) for ten days: never purged.
                await conn.execute(
                    "UPDATE queue_tasks SET status = 'pending', completed_at = NULL,"
                    " created_at = now() - interval '10 days',"
                    " next_attempt_at = now() + interval '1 day' WHERE task_id = %s",
                    (ids["old_pending"],),
                )
        finally:
            await database.close()
        read = merchant_metadata(merchant_id, (READ,))

        async def status_of(name: str) -> grpc.StatusCode:
            try:
                await stub.GetTask(pb.GetTaskRequest(task_id=ids[name]), metadata=read)
            except grpc.aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        async def purged() -> bool:
            return all([await status_of(n) == grpc.StatusCode.NOT_FOUND for n in names[:2]])

        await eventually(purged, 15, "the old finished tasks purged")
        assert await status_of("recent") == grpc.StatusCode.OK
        assert await status_of("old_pending") == grpc.StatusCode.OK
