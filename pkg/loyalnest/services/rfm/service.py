"""Wires the RFM service into the platform runtime, and its rescore command."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from loyalnest.gen.rfm.v1 import rfm_pb2, rfm_pb2_grpc
from loyalnest.platform.cache import client_from_url
from loyalnest.platform.calls import Calls
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.event_loops import postgres_service
from loyalnest.platform.personal_data import ByShopifyId, PersonalData
from loyalnest.platform.postgres import Database, DatabaseSpec
from loyalnest.platform.server import Registration, ServiceComponents, ServiceSpec
from loyalnest.platform.stream_slots import StreamLimits
from loyalnest.services.rfm import consumers, events
from loyalnest.services.rfm.nightly import Nightly
from loyalnest.services.rfm.servicer import RfmServicer
from loyalnest.services.rfm.store.live import Live
from loyalnest.services.rfm.store.rescore import Rescorer, RescoreResult
from loyalnest.services.rfm.store.scores import ScoreStore

NAME = "rfm"
DATABASE = DatabaseSpec(schema=NAME, migration_dirs=(Path(__file__).parent / "migrations",))
SERVICE_NAME = rfm_pb2.DESCRIPTOR.services_by_name["RfmService"].full_name
# It calls no service: scores come from events only, never from calls per order.
CALLS = Calls()


class RfmSettings(ServiceSettings):
    """The RFM service's settings (LOYALNEST_RFM_*)."""

    # How fast an order's weight in R halves (README "RFM"). Changing it recomputes every
    # customer's activity key from the orders at the next rescore.
    rfm_half_life_days: float = 90.0
    # A merchant is rescored at once (not only nightly) when its customers with an order
    # changed by more than this fraction since its cutoffs were computed.
    rfm_rescore_threshold: float = 0.2
    # Months of score history and group moves kept (whole monthly partitions are dropped).
    rfm_retention_months: int = 13
    # How often each process makes sure the time series' partitions exist ahead.
    rfm_partition_upkeep_seconds: float = 6 * 3600
    # Concurrent StreamVisualizations calls per process: per merchant and in all.
    rfm_stream_max_per_merchant: int = 20
    rfm_stream_max_per_process: int = 500


def _now() -> datetime:
    return datetime.now(UTC)


def parts(
    settings: RfmSettings, database: Database, clock: Callable[[], datetime]
) -> tuple[ScoreStore, Live, Nightly]:
    scores = ScoreStore(
        database,
        half_life_days=settings.rfm_half_life_days,
        rescore_threshold=settings.rfm_rescore_threshold,
        clock=clock,
    )
    live = Live(client_from_url(settings.redis_url) if settings.redis_url else None)
    nightly = Nightly(
        Rescorer(database, half_life_days=settings.rfm_half_life_days),
        scores,
        live,
        retention_months=settings.rfm_retention_months,
        clock=clock,
    )
    return scores, live, nightly


async def build(settings: RfmSettings, clock: Callable[[], datetime] = _now) -> ServiceComponents:
    database = Database(settings, DATABASE)
    await database.open()
    scores, live, nightly = parts(settings, database, clock)
    downstream = CALLS.connect(settings, caller=NAME)
    components = postgres_service(
        settings,
        database,
        service=NAME,
        group=events.CONSUMER_GROUP,
        handlers=consumers.handlers(scores, nightly, live, clock=clock),
        registrations=[
            Registration(
                SERVICE_NAME,
                rfm_pb2_grpc.add_RfmServiceServicer_to_server,
                RfmServicer(
                    scores,
                    live,
                    clock,
                    StreamLimits(
                        per_merchant=settings.rfm_stream_max_per_merchant,
                        per_process=settings.rfm_stream_max_per_process,
                    ),
                ),
            )
        ],
        cleanup=[downstream.close, live.close],
    )
    components.personal_data = ByShopifyId(scores)
    components.background.append(
        functools.partial(nightly.upkeep, settings.rfm_partition_upkeep_seconds)
    )
    return components


async def rescore(settings: RfmSettings, merchant_id: str | None) -> list[RescoreResult]:
    """`loyalnest rfm rescore [--merchant]`: the nightly rescore of one merchant or all."""
    database = Database(settings, DATABASE)
    await database.open()
    try:
        _, live, nightly = parts(settings, database, _now)
        try:
            return await nightly.run(merchant_id)
        finally:
            await live.close()
    finally:
        await database.close()


SPEC = ServiceSpec(
    name=NAME,
    settings_type=RfmSettings,
    build=build,
    database=DATABASE,
    calls=CALLS,
    # ScoreStore.export_customer / erase_customer cover these (refunds through their order).
    personal_data=PersonalData(
        tables=("customer_rfm", "orders", "rfm_score_history", "rfm_segment_deltas")
    ),
)
