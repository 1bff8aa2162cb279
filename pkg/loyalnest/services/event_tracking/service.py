"""Wires the Event Tracking service into the platform runtime."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from prometheus_client import Counter
from pydantic import Field, SecretStr

from loyalnest.gen.event_tracking.v1 import event_tracking_pb2, event_tracking_pb2_grpc
from loyalnest.platform import audit
from loyalnest.platform.calls import Calls
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.crypto import decode_key
from loyalnest.platform.event_loops import postgres_service
from loyalnest.platform.observability import get_logger
from loyalnest.platform.personal_data import PersonalData
from loyalnest.platform.pii import on_a_developer_machine
from loyalnest.platform.postgres import Database, DatabaseSpec
from loyalnest.platform.server import Registration, ServiceComponents, ServiceSpec
from loyalnest.services.event_tracking import consumers, events
from loyalnest.services.event_tracking.domain import Pseudonyms
from loyalnest.services.event_tracking.person_deletion import PersonDeleter, PersonsApiConfig
from loyalnest.services.event_tracking.servicer import EventTrackingServicer
from loyalnest.services.event_tracking.shipping import PosthogConfig, PosthogShipper
from loyalnest.services.event_tracking.store import TaskStore

log = get_logger(__name__)
Loop = Callable[[], Coroutine[Any, Any, None]]
PURGED = Counter(
    "loyalnest_event_tracking_purged_tasks_total",
    "Finished queue_tasks deleted after their retention.",
)

NAME = "event_tracking"
# The audit trigger function exists for the idempotency keys' audited writes.
DATABASE = DatabaseSpec(
    schema=NAME, migration_dirs=(audit.MIGRATIONS, Path(__file__).parent / "migrations")
)
SERVICE_NAME = event_tracking_pb2.DESCRIPTOR.services_by_name["EventTrackingService"].full_name
# It calls no service (seed §9: "Calls: None").
CALLS = Calls()
# Without LOYALNEST_EVENT_TRACKING_PSEUDONYM_KEY (development): pseudonyms are still one-way,
# but anyone with this source could recompute one from a known id. Production sets a key.
_DEVELOPMENT_PSEUDONYM_KEY = b"loyalnest-development-pseudonyms!"


class EventTrackingSettings(ServiceSettings):
    """Where PostHog is and how events are shipped (each read from LOYALNEST_<FIELD>)."""

    # PostHog's ingest host (EU: https://eu.i.posthog.com; self-hosted: your domain). The local
    # stack points it at the PostHog stand-in.
    posthog_host: str = "https://us.i.posthog.com"
    # The project API key (phc_...). Unset: events are queued and wait, nothing is shipped.
    posthog_api_key: SecretStr | None = None
    posthog_batch_size: int = Field(100, ge=1, le=1000)
    posthog_poll_interval_seconds: float = Field(1.0, gt=0)
    posthog_send_attempts: int = Field(3, ge=1)
    posthog_task_max_attempts: int = Field(5, ge=1)
    posthog_retry_initial_seconds: float = Field(0.5, gt=0)
    posthog_retry_max_seconds: float = Field(30.0, gt=0)
    posthog_round_backoff_seconds: float = Field(5.0, ge=0)
    posthog_timeout_seconds: float = Field(10.0, gt=0)
    # PostHog's private API (persons deletion at an erasure): its host (EU cloud:
    # https://eu.posthog.com; self-hosted: your domain), the project id, and a personal API
    # key (phx_..., scope person:write). Unset key or project: erasures mark the persons to
    # delete, and they wait. Persons are deleted in bulk, up to PostHog's 1000 a request.
    posthog_api_host: str = "https://us.posthog.com"
    posthog_project_id: str | None = None
    posthog_personal_api_key: SecretStr | None = None
    posthog_deletion_batch_size: int = Field(100, ge=1, le=1000)
    posthog_deletion_max_backoff_seconds: float = Field(3600.0, gt=0)
    # Persons API requests per minute and process (PostHog allows 240/min per key).
    posthog_api_requests_per_minute: float = Field(200.0, gt=0)
    # Completed and failed queue_tasks are deleted this long after they finished (the
    # service's own loop, every purge interval); pending ones stay until shipped or failed.
    event_tracking_task_retention_days: float = Field(30.0, gt=0)
    event_tracking_purge_interval_seconds: float = Field(3600.0, gt=0)
    # base64 of 32 random bytes; fixed for the life of the data (a new key makes every person
    # new at PostHog).
    event_tracking_pseudonym_key: SecretStr | None = None


def _pseudonyms(settings: EventTrackingSettings) -> Pseudonyms:
    key = settings.event_tracking_pseudonym_key
    if key is None:
        # As the PII keys (platform/pii.py): the public key only on a developer's machine; a
        # cluster started without one would publish recomputable pseudonyms to PostHog.
        if not on_a_developer_machine(settings):
            raise ValueError(
                "LOYALNEST_EVENT_TRACKING_PSEUDONYM_KEY is required (base64 of 32 random bytes,"
                " `openssl rand -base64 32`): it keeps customers' ids out of PostHog"
            )
        log.warning(
            "LOYALNEST_EVENT_TRACKING_PSEUDONYM_KEY unset: using the public development key"
        )
        return Pseudonyms(_DEVELOPMENT_PSEUDONYM_KEY)
    return Pseudonyms(decode_key(key.get_secret_value(), name="event tracking pseudonym key"))


def posthog_config(settings: EventTrackingSettings, api_key: str) -> PosthogConfig:
    return PosthogConfig(
        host=settings.posthog_host,
        api_key=api_key,
        batch_size=settings.posthog_batch_size,
        poll_interval_seconds=settings.posthog_poll_interval_seconds,
        send_attempts=settings.posthog_send_attempts,
        task_max_attempts=settings.posthog_task_max_attempts,
        retry_initial_seconds=settings.posthog_retry_initial_seconds,
        retry_max_seconds=settings.posthog_retry_max_seconds,
        round_backoff_seconds=settings.posthog_round_backoff_seconds,
        timeout_seconds=settings.posthog_timeout_seconds,
    )


def persons_api_config(
    settings: EventTrackingSettings, personal_api_key: str, project_id: str
) -> PersonsApiConfig:
    return PersonsApiConfig(
        host=settings.posthog_api_host,
        personal_api_key=personal_api_key,
        project_id=project_id,
        batch_size=settings.posthog_deletion_batch_size,
        poll_interval_seconds=settings.posthog_poll_interval_seconds,
        send_attempts=settings.posthog_send_attempts,
        retry_initial_seconds=settings.posthog_retry_initial_seconds,
        retry_max_seconds=settings.posthog_retry_max_seconds,
        round_backoff_seconds=settings.posthog_round_backoff_seconds,
        max_backoff_seconds=settings.posthog_deletion_max_backoff_seconds,
        requests_per_minute=settings.posthog_api_requests_per_minute,
        timeout_seconds=settings.posthog_timeout_seconds,
    )


def purge_loop(store: TaskStore, settings: EventTrackingSettings) -> Loop:
    """Keeps queue_tasks to its retention. In the service, not a CronJob: like the outbox and
    processed-events purges it is a few indexed, bounded DELETEs on the pool the service
    already holds (no pod, image pull, Secret or NetworkPolicy for it), and replicas running
    it at once split the rows (SKIP LOCKED), so no lock or schedule is needed."""
    older_than = settings.event_tracking_task_retention_days * 86_400

    async def run() -> None:
        while True:
            try:
                while (purged := await store.purge_finished(older_than)) > 0:
                    PURGED.inc(purged)
            except Exception as exc:  # the database is away: health says so; try later
                log.warning("queue_tasks purge failed", error=repr(exc))
            await asyncio.sleep(settings.event_tracking_purge_interval_seconds)

    return run


async def build(settings: EventTrackingSettings) -> ServiceComponents:
    database = Database(settings, DATABASE)
    await database.open()
    store = TaskStore(database, _pseudonyms(settings))
    components = postgres_service(
        settings,
        database,
        service=NAME,
        group=events.CONSUMER_GROUP,
        handlers=consumers.handlers(database, store),
        registrations=[
            Registration(
                SERVICE_NAME,
                event_tracking_pb2_grpc.add_EventTrackingServiceServicer_to_server,
                EventTrackingServicer(store),
            )
        ],
    )
    components.background.append(purge_loop(store, settings))
    # The personal-data contract: events are pseudonymous, still a person's data (GDPR).
    components.personal_data = store
    if settings.posthog_api_key is None:
        log.warning("LOYALNEST_POSTHOG_API_KEY is unset: analytics events are queued, not shipped")
    else:
        shipper = PosthogShipper(
            store, posthog_config(settings, settings.posthog_api_key.get_secret_value())
        )
        components.background.append(shipper.run)
        components.cleanup.append(shipper.close)
    personal_key, project = settings.posthog_personal_api_key, settings.posthog_project_id
    if personal_key is None or not project:
        log.warning(
            "LOYALNEST_POSTHOG_PERSONAL_API_KEY or LOYALNEST_POSTHOG_PROJECT_ID is unset:"
            " erased customers' persons are marked for deletion at PostHog, not deleted"
        )
    else:
        deleter = PersonDeleter(
            store, persons_api_config(settings, personal_key.get_secret_value(), project)
        )
        components.background.append(deleter.run)
        components.cleanup.append(deleter.close)
    return components


SPEC = ServiceSpec(
    name=NAME,
    settings_type=EventTrackingSettings,
    build=build,
    database=DATABASE,
    calls=CALLS,
    personal_data=PersonalData(tables=("queue_tasks", "posthog_persons")),
)
