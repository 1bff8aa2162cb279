"""gRPC surface of the RFM service.

Handlers only: validation, the merchant from the token, the store's calls, proto mapping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from loyalnest.gen.rfm.v1 import rfm_pb2, rfm_pb2_grpc
from loyalnest.platform import tenancy
from loyalnest.platform.cache import RESYNC
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.pagination import decode_page_token, encode_page_token, page_size
from loyalnest.platform.stream_slots import StreamLimits, StreamSlots
from loyalnest.platform.validation import Validator
from loyalnest.services.rfm.domain import NUDGES, Group
from loyalnest.services.rfm.store.live import Live
from loyalnest.services.rfm.store.scores import ScoreStore
from loyalnest.services.rfm.wire import (
    counts_proto,
    customer_proto,
    cutoffs_proto,
    group_of,
    history_proto,
    nudge_proto,
    scatter_point,
    stage_of,
)

MAX_PERIOD = timedelta(days=400)
DEFAULT_SAMPLE, MAX_SAMPLE = 10, 50
DEFAULT_HISTORY, MAX_HISTORY = 20, 100
DEFAULT_POINTS, MAX_POINTS = 500, 2000
NUDGE_GROUPS = tuple(group for group, _ in NUDGES)


def _range(
    v: Validator, field: str, bounds: rfm_pb2.ScoreRange, column: str
) -> list[tuple[str, int]]:
    ok = v.check(0 <= bounds.min <= 5, f"{field}.min", "must be 0 (open) or 1 to 5")
    ok &= v.check(0 <= bounds.max <= 5, f"{field}.max", "must be 0 (open) or 1 to 5")
    if ok and bounds.min and bounds.max:
        v.check(bounds.min <= bounds.max, f"{field}.max", "must not be below min")
    conditions = []
    if bounds.min:
        conditions.append((f"{column} >= %s", bounds.min))
    if bounds.max:
        conditions.append((f"{column} <= %s", bounds.max))
    return conditions


def _members(v: Validator, field: str, values: Any, convert: Callable[[int], Any]) -> list[str]:
    found: list[str] = []
    for index, value in enumerate(values):
        try:
            member = convert(value)
        except ValueError:
            member = None
        if v.check(member is not None, f"{field}[{index}]", "is not a known value"):
            found.append(member.value)
    return found


class RfmServicer(rfm_pb2_grpc.RfmServiceServicer):
    def __init__(
        self,
        store: ScoreStore,
        live: Live,
        clock: Callable[[], datetime],
        streams: StreamLimits | None = None,
    ) -> None:
        self._store = store
        self._live = live
        self._clock = clock
        self._streams = StreamSlots(streams or StreamLimits(), what="StreamVisualizations")

    async def GetSegments(
        self, request: rfm_pb2.GetSegmentsRequest, context: Context
    ) -> rfm_pb2.GetSegmentsResponse:
        merchant_id = tenancy.merchant_id()
        period = request.HasField("start_time") or request.HasField("end_time")
        start = request.start_time.ToDatetime(tzinfo=UTC)
        end = request.end_time.ToDatetime(tzinfo=UTC)
        with Validator() as v:
            both = request.HasField("start_time") and request.HasField("end_time")
            if period and not both:
                missing = "end_time" if request.HasField("start_time") else "start_time"
                v.check(False, missing, "is required with the other bound of the period")
            if both and v.check(start <= end, "end_time", "must not be before start_time"):
                v.check(end - start <= MAX_PERIOD, "end_time", "the period is over 400 days")
        counts = await self._store.group_counts(merchant_id)
        response = rfm_pb2.GetSegmentsResponse(
            counts=counts_proto(counts), customers=sum(counts.values())
        )
        if period:
            for day, day_counts in await self._store.group_count_history(merchant_id, start, end):
                at = response.history.add(counts=counts_proto(day_counts))
                at.time.FromDatetime(day)
        cutoffs = await self._store.cutoffs(merchant_id)
        if cutoffs is not None:
            response.cutoffs.CopyFrom(cutoffs_proto(cutoffs))
        return response

    async def PreviewSegment(
        self, request: rfm_pb2.PreviewSegmentRequest, context: Context
    ) -> rfm_pb2.PreviewSegmentResponse:
        merchant_id = tenancy.merchant_id()
        definition = request.definition
        with Validator() as v:
            v.check(request.HasField("definition"), "definition", "is required")
            v.check(
                0 <= request.sample_size <= MAX_SAMPLE,
                "sample_size",
                f"must be 0 (the default, {DEFAULT_SAMPLE}) to {MAX_SAMPLE}",
            )
            conditions = [
                *_range(v, "definition.recency", definition.recency, "r_score"),
                *_range(v, "definition.frequency", definition.frequency, "f_score"),
                *_range(v, "definition.monetary", definition.monetary, "m_score"),
            ]
            groups = _members(v, "definition.groups", definition.groups, group_of)
            stages = _members(v, "definition.stages", definition.stages, stage_of)
        # The cache key: the definition as given, deterministically serialized, and the size.
        cache_key = request.SerializeToString(deterministic=True)
        cached = await self._live.cached_preview(merchant_id, cache_key)
        if cached is not None:
            answer = rfm_pb2.PreviewSegmentResponse.FromString(cached)
            answer.cached = True
            return answer
        clauses = [clause for clause, _ in conditions]
        params: list[Any] = [value for _, value in conditions]
        if groups:
            clauses.append("rfm_group = ANY(%s)")
            params.append(groups)
        if stages:
            clauses.append("stage = ANY(%s)")
            params.append(stages)
        count, sample = await self._store.matching(
            merchant_id,
            " AND ".join(clauses) or "true",
            params,
            request.sample_size or DEFAULT_SAMPLE,
        )
        now = self._clock()
        answer = rfm_pb2.PreviewSegmentResponse(
            customers=count,
            sample=[customer_proto(c, now, self._store.half_life_days) for c in sample],
        )
        await self._live.cache_preview(merchant_id, cache_key, answer.SerializeToString())
        return answer

    async def ListNudges(
        self, request: rfm_pb2.ListNudgesRequest, context: Context
    ) -> rfm_pb2.ListNudgesResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            wanted = _members(v, "groups", request.groups, group_of)
            for index, group in enumerate(wanted):
                v.check(
                    Group(group) in NUDGE_GROUPS,
                    f"groups[{index}]",
                    "has no nudges; groups with nudges: "
                    + ", ".join(g.value for g in NUDGE_GROUPS),
                )
        groups = [g for g in NUDGE_GROUPS if not wanted or g.value in wanted]
        scope = f"nudges/{merchant_id}/{','.join(g.value for g in groups)}"
        limit = page_size(request.page_size)
        offset = decode_page_token(request.page_token, scope) or 0
        customers = await self._store.nudges(merchant_id, groups, limit + 1, offset)
        now = self._clock()
        page = customers[:limit]
        return rfm_pb2.ListNudgesResponse(
            nudges=[nudge_proto(c, now, self._store.half_life_days) for c in page],
            next_page_token=(
                encode_page_token(scope, offset + limit) if len(customers) > limit else ""
            ),
        )

    async def GetCustomerRFM(
        self, request: rfm_pb2.GetCustomerRFMRequest, context: Context
    ) -> rfm_pb2.GetCustomerRFMResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.identifier("customer_id", request.customer_id)
            v.check(
                0 <= request.history_size <= MAX_HISTORY,
                "history_size",
                f"must be 0 (the default, {DEFAULT_HISTORY}) to {MAX_HISTORY}",
            )
        customer = await self._store.customer(merchant_id, request.customer_id)
        history = await self._store.history(
            merchant_id, request.customer_id, request.history_size or DEFAULT_HISTORY
        )
        return rfm_pb2.GetCustomerRFMResponse(
            customer=customer_proto(customer, self._clock(), self._store.half_life_days),
            history=[history_proto(entry) for entry in history],
        )

    async def StreamVisualizations(
        self, request: rfm_pb2.StreamVisualizationsRequest, context: Context
    ) -> AsyncIterator[rfm_pb2.StreamVisualizationsResponse]:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.check(
                0 <= request.max_points <= MAX_POINTS,
                "max_points",
                f"must be 0 (the default, {DEFAULT_POINTS}) to {MAX_POINTS}",
            )
        limit = request.max_points or DEFAULT_POINTS
        # Subscribed before the sample is read: no change between the two is missed.
        with self._streams.slot(merchant_id):
            async with self._live.updates(merchant_id) as updates:
                yield await self._initial(merchant_id, limit)
                async for raw in updates:
                    if raw is RESYNC:  # updates may have been lost: start over with a new sample
                        yield await self._initial(merchant_id, limit)
                        continue
                    yield rfm_pb2.StreamVisualizationsResponse(
                        update=rfm_pb2.ScatterPoint.FromString(raw)
                    )

    async def _initial(self, merchant_id: str, limit: int) -> rfm_pb2.StreamVisualizationsResponse:
        total, sample = await self._store.scatter_sample(merchant_id, limit)
        now = self._clock()
        return rfm_pb2.StreamVisualizationsResponse(
            initial=rfm_pb2.Scatter(
                points=[scatter_point(c, now, self._store.half_life_days) for c in sample],
                customers=total,
                sampled=total > len(sample),
            )
        )
