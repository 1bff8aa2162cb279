"""The events the edge applies: Core's settings, for the merchants' plans."""

from __future__ import annotations

from psycopg import AsyncConnection

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import Handler, transactional
from loyalnest.platform.postgres import Database
from loyalnest.services.edge.store.plans import PlanDirectory
from loyalnest.services.edge.store.postgres import EdgeStore


def handlers(database: Database, plans: PlanDirectory) -> dict[str, Handler]:
    async def on_settings_updated(conn: AsyncConnection, event: ConsumedEvent) -> None:
        settings = event.payload_as(core_pb2.ProgramSettingsUpdated).settings
        if settings.plan.plan:
            await EdgeStore.set_plan(conn, event.merchant_id, settings.plan.plan, settings.version)
            # This process sees the new tier at once; others within their cache period.
            plans.forget(event.merchant_id)

    return {"program_settings.updated": transactional(database, on_settings_updated)}
