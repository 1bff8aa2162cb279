"""Erased customers' persons deleted at PostHog (its persons API, through the stand-in).

Real PostgreSQL and the real Event Tracking service; PostHog is the stand-in, which keeps a
person per distinct id captured and honours the private API's key, 404 and throttling. An
erasure marks the persons in its own transaction and answers UNAVAILABLE until PostHog has
deleted them (AdminCore asks again); the deleter finds each by distinct id and deletes it
with its events, retrying 429/5xx honouring Retry-After, paced under PostHog's limit; a
person already gone is success; an erasure made while no deleter runs (a crash, no key yet)
is carried out later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from prometheus_client import REGISTRY

from loyalnest.devstack.standins.posthog import (
    DEFAULT_PERSONAL_API_KEY,
    DEFAULT_PROJECT_ID,
    PosthogStandIn,
)
from loyalnest.gen.event_tracking.v1 import event_tracking_pb2 as pb
from loyalnest.gen.events.v1 import points_pb2 as events_pb2
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.errors import Unavailable
from loyalnest.platform.events.envelope import ConsumedEvent, new_event
from loyalnest.platform.personal_data import CustomerRef
from loyalnest.platform.postgres import Database
from loyalnest.services.event_tracking.consumers import task_for
from loyalnest.services.event_tracking.domain import Counts
from loyalnest.services.event_tracking.service import DATABASE, SPEC
from loyalnest.services.event_tracking.store import PersonDeletion, TaskStore
from tests.auth import merchant_metadata
from tests.integration.conftest import eventually, serve_for_test
from tests.integration.test_event_tracking_service import (
    PSEUDONYMS,
    WRITE,
    Stub,
    arrived,
    capture,
    client_event,
    posthog,
    settings_for,
)

pytestmark = pytest.mark.integration
__all__ = ["posthog"]  # the fixture, used by name


def with_persons_api(posthog: PosthogStandIn, **overrides: Any) -> dict[str, Any]:
    return {
        "posthog_api_host": posthog.url,
        "posthog_project_id": DEFAULT_PROJECT_ID,
        "posthog_personal_api_key": DEFAULT_PERSONAL_API_KEY,
        **overrides,
    }


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[TaskStore]:
    database = Database(ServiceSettings(database_url=database_url), DATABASE)
    await database.open()
    try:
        yield TaskStore(database, PSEUDONYMS)
    finally:
        await database.close()


async def shipped(store: TaskStore, merchant_id: str, count: int) -> None:
    """The merchant's tasks completed (not only received by PostHog): an erasure racing a
    batch still leased waits for the lease, which these tests do not."""

    async def completed() -> bool:
        async with store._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM queue_tasks WHERE merchant_id = %s AND status = 'completed'",
                (merchant_id,),
            )
            row = await cursor.fetchone()
        return row is not None and row[0] >= count

    await eventually(completed, 20, f"{count} tasks completed")


async def pending_at_posthog(erasure: Awaitable[int]) -> str:
    """The erasure's answer while PostHog still has a person: UNAVAILABLE, with why."""
    with pytest.raises(Unavailable) as waiting:
        await erasure
    return str(waiting.value)


def events_of(posthog: PosthogStandIn, distinct_id: str) -> list[dict[str, Any]]:
    return [e for e in posthog.received() if e["distinct_id"] == distinct_id]


async def no_deletions_left(store: TaskStore, merchant_id: str) -> list[PersonDeletion]:
    async def done() -> bool:
        return await store.persons_to_delete(merchant_id) == []

    await eventually(done, 20, "the persons deleted at PostHog")
    return []


async def test_erasing_a_customer_deletes_their_person_and_events_at_posthog(
    database_url: str, posthog: PosthogStandIn, store: TaskStore, merchant_id: str
) -> None:
    settings = settings_for(database_url, posthog, **with_persons_api(posthog))
    async with serve_for_test(SPEC, settings, Stub) as (_, stub):
        await capture(
            stub,
            merchant_id,
            client_event(distinct_id="c-1"),
            client_event("reward_viewed", distinct_id="c-1"),
            client_event(distinct_id="c-2"),
        )
        await arrived(posthog, 3)
        await shipped(store, merchant_id, 3)
        ann, bob = PSEUDONYMS.of(merchant_id, "c-1"), PSEUDONYMS.of(merchant_id, "c-2")
        assert posthog.person(ann) and len(events_of(posthog, ann)) == 2
        # PostHog throttles, then fails once: both retried, the throttle's wait honoured.
        posthog.fail_api_next(429, retry_after="1")
        posthog.fail_api_next(503)
        started = time.monotonic()
        # Its two tasks deleted and its person marked, in one transaction; not done yet.
        waiting = await pending_at_posthog(store.erase_customer(merchant_id, CustomerRef("c-1")))
        assert "1 person(s) still to be deleted at PostHog" in waiting
        await no_deletions_left(store, merchant_id)
        assert time.monotonic() - started >= 1.0
        assert posthog.person(ann) is None and events_of(posthog, ann) == []
        assert posthog.person(bob) and len(events_of(posthog, bob)) == 1  # another customer
        api = [(r.method, r.status) for r in posthog.requests if r.path.startswith("/api/")]
        assert api == [("POST", 429), ("POST", 503), ("POST", 202)]  # persons/bulk_delete/
        # Asked again (AdminCore's retry): done, the person's row dropped; then nothing.
        assert await store.erase_customer(merchant_id, CustomerRef("c-1")) == 1
        assert await store.erase_customer(merchant_id, CustomerRef("c-1")) == 0
        assert len([r for r in posthog.requests if r.path.startswith("/api/")]) == 3


async def test_persons_api_requests_are_paced_under_posthogs_limit(
    database_url: str, posthog: PosthogStandIn, store: TaskStore, merchant_id: str
) -> None:
    """A merchant's erasure deletes many persons: in batches of 2 (one bulk request each) at
    120 requests a minute (one per 0.5 s), its 5 persons (3 requests) take at least 1 s, and
    PostHog (limited to 3 a minute here) never answers 429."""
    posthog.api_rate_per_minute = 3
    settings = settings_for(
        database_url,
        posthog,
        **with_persons_api(
            posthog, posthog_api_requests_per_minute=120, posthog_deletion_batch_size=2
        ),
    )
    async with serve_for_test(SPEC, settings, Stub) as (_, stub):
        await capture(stub, merchant_id, *(client_event(distinct_id=f"c-{i}") for i in range(5)))
        await arrived(posthog, 5)
        await shipped(store, merchant_id, 5)
        started = time.monotonic()
        await pending_at_posthog(store.erase_merchant(merchant_id))
        await no_deletions_left(store, merchant_id)
        elapsed = time.monotonic() - started
        assert await store.erase_merchant(merchant_id) >= 5  # the five persons' rows
    api = [(r.method, r.status) for r in posthog.requests if r.path.startswith("/api/")]
    assert api == [("POST", 202)] * 3 and elapsed >= 1.0, (api, elapsed)
    assert posthog.persons == {} and posthog.received() == []


async def test_persons_posthog_could_not_delete_are_asked_again(
    database_url: str, posthog: PosthogStandIn, store: TaskStore, merchant_id: str
) -> None:
    """PostHog's bulk deletion answers 202 but lists persons it could not delete (by person
    uuid, not distinct id): the batch stays marked with the reason and is asked again, the
    erasure pending meanwhile; once PostHog deletes them, the erasure completes."""
    settings = settings_for(
        database_url, posthog, **with_persons_api(posthog, posthog_round_backoff_seconds=0.5)
    )
    async with serve_for_test(SPEC, settings, Stub) as (_, stub):
        await capture(
            stub, merchant_id, client_event(distinct_id="c-1"), client_event(distinct_id="c-2")
        )
        await arrived(posthog, 2)
        await shipped(store, merchant_id, 2)
        ann, bob = PSEUDONYMS.of(merchant_id, "c-1"), PSEUDONYMS.of(merchant_id, "c-2")
        posthog.undeletable.add(ann)
        await pending_at_posthog(store.erase_merchant(merchant_id))

        async def refused() -> list[PersonDeletion]:
            left = await store.persons_to_delete(merchant_id)
            return left if left and all(p.last_error for p in left) else []

        left = await eventually(refused, 20, "the batch kept with PostHog's deletion errors")
        assert all("could not delete 1 person(s)" in (p.last_error or "") for p in left)
        assert "could not delete" in await pending_at_posthog(store.erase_merchant(merchant_id))
        assert posthog.person(ann) is not None and posthog.person(bob) is None
        posthog.undeletable.clear()  # PostHog's side recovered: the next round deletes it
        await no_deletions_left(store, merchant_id)
        assert await store.erase_merchant(merchant_id) >= 2
        assert posthog.person(ann) is None and posthog.received() == []


async def test_an_erasure_made_while_no_deleter_runs_is_carried_out_later(
    database_url: str, posthog: PosthogStandIn, store: TaskStore, merchant_id: str
) -> None:
    """The mark is durable: no key at first (or a crash after the erasure's commit), then a
    wrong key (401: kept, with the reason), then the right one; a person PostHog no longer
    has is success."""
    async with serve_for_test(SPEC, settings_for(database_url, posthog), Stub) as (_, stub):
        await capture(stub, merchant_id, client_event(distinct_id="c-1"))
        await capture(stub, merchant_id, client_event(distinct_id="c-3"))
        await arrived(posthog, 2)
        await shipped(store, merchant_id, 2)
        await pending_at_posthog(store.erase_merchant(merchant_id))
    ann, cid = PSEUDONYMS.of(merchant_id, "c-1"), PSEUDONYMS.of(merchant_id, "c-3")
    marked = await store.persons_to_delete(merchant_id)
    assert sorted(p.distinct_id for p in marked) == sorted([ann, cid])
    assert posthog.person(ann) and posthog.person(cid)  # still there: nobody deleted them

    # Someone deleted one at PostHog by hand meanwhile: finding no person is success.
    gone = posthog.person(cid)
    assert gone is not None
    posthog.persons.pop(gone["uuid"])
    posthog._person_of.pop(cid)

    wrong = settings_for(
        database_url, posthog, **with_persons_api(posthog, posthog_personal_api_key="phx_wrong")
    )
    async with serve_for_test(SPEC, wrong, Stub):

        async def refused() -> list[PersonDeletion]:
            left = await store.persons_to_delete(merchant_id)
            return left if left and all(p.last_error for p in left) else []

        left = await eventually(refused, 20, "the deletions refused")
        assert all("401" in (p.last_error or "") for p in left)
        # What AdminCore's step shows meanwhile: still pending, and why.
        assert "401" in await pending_at_posthog(store.erase_merchant(merchant_id))
    assert posthog.person(ann)

    right = settings_for(
        database_url,
        posthog,
        **with_persons_api(posthog),
        # The refused rounds were backed off: the test does not wait for them.
        posthog_round_backoff_seconds=0.01,
    )
    async with serve_for_test(SPEC, right, Stub):
        await no_deletions_left(store, merchant_id)
    assert await store.erase_merchant(merchant_id) >= 2  # done: both persons' rows dropped
    assert posthog.person(ann) is None and events_of(posthog, ann) == []
    assert events_of(posthog, cid) == [] or posthog.person(cid) is None


async def test_events_after_a_completed_erasure_make_no_new_person_at_posthog(
    database_url: str, posthog: PosthogStandIn, store: TaskStore, merchant_id: str
) -> None:
    """Once a customer's erasure completed (PostHog deleted their person, the rows dropped),
    a late event about them (the storefront, a domain event, CreateTask) is dropped and
    counted, never shipped: PostHog gets no new person for them. Another customer's events
    still arrive. A tombstone keeps the pseudonym only."""
    settings = settings_for(database_url, posthog, **with_persons_api(posthog))
    async with serve_for_test(SPEC, settings, Stub) as (_, stub):
        await capture(stub, merchant_id, client_event(distinct_id="c-1"))
        await arrived(posthog, 1)
        await shipped(store, merchant_id, 1)
        ann, bob = PSEUDONYMS.of(merchant_id, "c-1"), PSEUDONYMS.of(merchant_id, "c-2")
        await pending_at_posthog(store.erase_customer(merchant_id, CustomerRef("c-1")))
        await no_deletions_left(store, merchant_id)
        assert await store.erase_customer(merchant_id, CustomerRef("c-1")) == 1  # completed
        assert posthog.person(ann) is None

        dropped_before = _erased_events("client")
        late = await capture(
            stub, merchant_id, client_event(distinct_id="c-1"), client_event(distinct_id="c-2")
        )
        # Taken (nothing for the client to resend), but only bob's is queued.
        assert (late.accepted, late.duplicates) == (2, 0)
        assert _erased_events("client") == dropped_before + 1
        # A domain event (points.earned for the erased customer) and CreateTask: the same.
        domain = events_pb2.PointsEarned(customer_id="c-1", points=10)
        outgoing = new_event(merchant_id, domain)
        consumed = ConsumedEvent(
            outgoing.envelope, outgoing.spec, domain, "event_tracking", "t", 0, 0
        )
        task = task_for(store, consumed)
        assert task is not None
        assert await store.queue_all([task]) == Counts(new=0, duplicates=0, erased=1)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateTask(
                pb.CreateTaskRequest(
                    event_type="settings_saved", distinct_id="c-1", idempotency_key="late-1"
                ),
                metadata=merchant_metadata(merchant_id, (WRITE,)),
            )
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        # One queued while the erasure committed (the race the tombstone at claim closes).
        async with store._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO queue_tasks (task_id, merchant_id, event_type, source, subject,"
                " payload, occurred_at) VALUES (gen_random_uuid(), %s, 'raced', 'client', %s,"
                " '{}', now())",
                (merchant_id, ann),
            )
        await eventually(lambda: _has(posthog, bob), 15, "bob's late event at PostHog")
        await asyncio.sleep(0.5)  # more shipper rounds: nothing of ann's follows
        assert posthog.person(ann) is None and events_of(posthog, ann) == []
        assert await store.purge_finished(older_than_seconds=3600) == 1  # the raced one
    async with store._pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT subject FROM erased_persons WHERE merchant_id = %s", (merchant_id,)
        )
        assert await cursor.fetchall() == [(ann,)]  # the pseudonym, never "c-1"
    # shop/redact takes the tombstones with everything else (bob's person still at PostHog).
    await pending_at_posthog(store.erase_merchant(merchant_id))
    async with store._pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM erased_persons WHERE merchant_id = %s", (merchant_id,)
        )
        assert await cursor.fetchone() == (0,)


async def _has(posthog: PosthogStandIn, distinct_id: str) -> bool:
    return bool(events_of(posthog, distinct_id))


def _erased_events(source: str) -> float:
    value = REGISTRY.get_sample_value(
        "loyalnest_event_tracking_erased_person_events_total", {"source": source}
    )
    return value or 0.0


async def test_events_of_a_merchant_after_its_shop_redact_make_nothing_at_posthog(
    database_url: str, posthog: PosthogStandIn, store: TaskStore, merchant_id: str
) -> None:
    """After shop/redact completed (PostHog deleted every person of the merchant), its events
    from before the erasure still arriving (a domain event still in its topic, a storefront's
    late batch, one queued while the erasure committed) are dropped and counted, never
    shipped: PostHog gets no person or event of the erased merchant again. The tombstone is
    by occurrence: the merchant's events from after it (a reinstall, same id) are shipped."""
    settings = settings_for(database_url, posthog, **with_persons_api(posthog))
    async with serve_for_test(SPEC, settings, Stub) as (_, stub):
        await capture(
            stub, merchant_id, client_event(distinct_id="c-1"), client_event(distinct_id="c-2")
        )
        await arrived(posthog, 2)
        await shipped(store, merchant_id, 2)
        ann, bob, cat = (PSEUDONYMS.of(merchant_id, c) for c in ("c-1", "c-2", "c-3"))
        # Produced before the erasure, consumed after it (still in the topic meanwhile).
        domain = events_pb2.PointsEarned(customer_id="c-3", points=10)
        outgoing = new_event(merchant_id, domain)
        before = timestamp_pb2.Timestamp()
        before.GetCurrentTime()
        await asyncio.sleep(0.01)

        await pending_at_posthog(store.erase_merchant(merchant_id))
        await no_deletions_left(store, merchant_id)
        await store.erase_merchant(merchant_id)  # completed
        assert posthog.person(ann) is None and posthog.person(bob) is None

        dropped = _erased_merchant_events("client"), _erased_merchant_events("domain")
        late = client_event(distinct_id="c-3")
        late.timestamp.CopyFrom(before)
        assert (await capture(stub, merchant_id, late)).accepted == 1  # taken, not queued
        consumed = ConsumedEvent(
            outgoing.envelope, outgoing.spec, domain, "event_tracking", "t", 0, 0
        )
        task = task_for(store, consumed)
        assert task is not None
        assert await store.queue_all([task]) == Counts(new=0, duplicates=0, erased=1)
        assert (_erased_merchant_events("client"), _erased_merchant_events("domain")) == (
            dropped[0] + 1,
            dropped[1] + 1,
        )
        # One queued while the erasure committed: never claimed, purged.
        async with store._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO queue_tasks (task_id, merchant_id, event_type, source, subject,"
                " payload, occurred_at) VALUES (gen_random_uuid(), %s, 'raced', 'client', %s,"
                " '{}', %s)",
                (merchant_id, cat, before.ToDatetime(UTC)),
            )
        # The merchant back (a reinstall): what happens from now on is shipped.
        await capture(stub, merchant_id, client_event(distinct_id="c-4"))
        dan = PSEUDONYMS.of(merchant_id, "c-4")
        await eventually(lambda: _has(posthog, dan), 15, "the reinstalled merchant's event")
        await asyncio.sleep(0.5)  # more shipper rounds: nothing from before follows
        assert posthog.person(cat) is None and events_of(posthog, cat) == []
        assert {e["distinct_id"] for e in posthog.received()} == {dan}
        await store.purge_finished(older_than_seconds=3600)  # the service's own may be first
        async with store._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT event_type FROM queue_tasks WHERE merchant_id = %s", (merchant_id,)
            )
            assert await cursor.fetchall() == [("widget_opened",)]  # the raced one gone


def _erased_merchant_events(source: str) -> float:
    value = REGISTRY.get_sample_value(
        "loyalnest_event_tracking_erased_merchant_events_total", {"source": source}
    )
    return value or 0.0
