"""The RFM service against a real PostgreSQL and Valkey.

Orders reach it as webhook.received (the consumer's handler driven directly here; the broker
path, edge to RFM to Core, is test_rfm_flow.py). The fixture of 20 customers is README "RFM"'s
worked example: the scores, groups and stages the service computes must be that table.
`ISOLATION` is its table in the mesh-wide isolation test (test_tenant_isolation.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf.message import Message

from loyalnest.gateway import Upstream
from loyalnest.gen.events.v1 import envelope_pb2, gateway_pb2
from loyalnest.gen.events.v1 import rfm_pb2 as events_pb2
from loyalnest.gen.rfm.v1 import rfm_pb2 as pb
from loyalnest.gen.rfm.v1 import rfm_pb2_grpc
from loyalnest.platform.events.envelope import ConsumedEvent, new_event
from loyalnest.platform.events.inbox import Handler
from loyalnest.platform.personal_data import ByShopifyId, CustomerRef
from loyalnest.platform.postgres import Database
from loyalnest.platform.server import RunningService
from loyalnest.services.rfm import consumers, domain, events
from loyalnest.services.rfm.service import (
    DATABASE,
    SERVICE_NAME,
    SPEC,
    RfmSettings,
    build,
    parts,
)
from loyalnest.services.rfm.store.scores import ScoreStore
from tests.auth import merchant_headers, merchant_metadata
from tests.integration.conftest import serve_for_test, service_settings_for_tests
from tests.integration.isolation import Case, Metadata, Table
from tests.integration.test_gateway_validate import Gateway, gateway_config, http, running_gateway

pytestmark = pytest.mark.integration

READ = "rfm:read"
Stub = rfm_pb2_grpc.RfmServiceStub
NOW = datetime(2026, 12, 1, tzinfo=UTC)
HALF_LIFE = 90.0

# README "RFM": customer -> orders as (days before NOW, amount in USD).
FIXTURE: dict[str, list[tuple[int, int]]] = {
    "c01": [(5, 120), (40, 80), (100, 150), (200, 90), (300, 60), (400, 100)],
    "c02": [(10, 200), (70, 150), (160, 100), (250, 120)],
    "c03": [(20, 90), (120, 110), (220, 100)],
    "c04": [(3, 30)],
    "c05": [(8, 30)],
    "c06": [(15, 30)],
    "c07": [(45, 30)],
    "c08": [(95, 30)],
    "c09": [(150, 30)],
    "c10": [(200, 15), (260, 15)],
    "c11": [(380, 30)],
    "c12": [(500, 30)],
    "c13": [(400, 250), (450, 200), (520, 180), (600, 150)],
    "c14": [(80, 35), (170, 40)],
    "c15": [(60, 45), (130, 55)],
    "c16": [(30, 75)],
    "c17": [(20, 40), (50, 35)],
    "c18": [(400, 60), (500, 200)],
    "c19": [(90, 400)],
    "c20": [(25, 50), (55, 50), (85, 50), (115, 50), (145, 50)],
}
# README "RFM": customer -> (R, F, M, group, stage) at NOW after the nightly rescore.
EXPECTED: dict[str, tuple[int, int, int, str, str]] = {
    "c01": (5, 5, 5, "champions", "active"),
    "c02": (5, 4, 5, "champions", "active"),
    "c03": (4, 3, 4, "loyal", "active"),
    "c04": (4, 1, 2, "new", "new"),
    "c05": (4, 1, 2, "new", "new"),
    "c06": (3, 1, 2, "promising", "new"),
    "c07": (3, 1, 2, "promising", "new"),
    "c08": (2, 1, 2, "hibernating", "lapsing"),
    "c09": (2, 1, 2, "hibernating", "lapsing"),
    "c10": (2, 2, 2, "about_to_sleep", "lapsing"),
    "c11": (1, 1, 2, "lost", "churned"),
    "c12": (1, 1, 2, "lost", "churned"),
    "c13": (1, 4, 5, "cant_lose", "churned"),
    "c14": (3, 2, 3, "needs_attention", "active"),
    "c15": (4, 2, 4, "loyal", "active"),
    "c16": (3, 1, 3, "promising", "new"),
    "c17": (5, 2, 3, "potential_loyalist", "active"),
    "c18": (1, 2, 4, "at_risk", "churned"),
    "c19": (2, 1, 5, "at_risk", "lapsing"),
    "c20": (5, 4, 4, "champions", "active"),
}
# README "RFM": cutoffs of R as decayed orders now (2^(key - now/H)) and of M in USD.
EXPECTED_R_CUTOFFS = (0.2530, 0.6156, 0.9103, 1.4572)
EXPECTED_M_CUTOFFS = (30.0, 30.0, 85.0, 320.0)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclasses.dataclass
class Rfm:
    """The service running on a test clock, its consumer's handler and a stub to it."""

    service: RunningService
    stub: Stub
    on_webhook: Handler
    scores: ScoreStore
    clock: Clock
    settings: RfmSettings
    database_url: str

    async def order(
        self,
        merchant: str,
        customer: str,
        amount: float,
        *,
        days_ago: float = 0,
        order_id: str | None = None,
        topic: str = "orders/create",
    ) -> str:
        order_id = order_id or str(next(_ORDER_IDS))
        placed = self.clock.now - timedelta(days=days_ago)
        order = gateway_pb2.ShopifyOrder(
            order_id=order_id,
            customer_id=customer,
            currency="USD",
            financial_status="paid",
            line_items=[gateway_pb2.ShopifyLineItem(price=f"{amount:.2f}", quantity=1)],
        )
        order.created_time.FromDatetime(placed)
        if topic == "orders/cancelled":
            order.cancelled_time.FromDatetime(self.clock.now)
        await self.deliver(merchant, topic, customer, order=order)
        return order_id

    async def refund(self, merchant: str, order_id: str, amount: float) -> None:
        refund = gateway_pb2.ShopifyRefund(
            refund_id=str(next(_ORDER_IDS)),
            order_id=order_id,
            refund_line_items=[gateway_pb2.ShopifyRefundLineItem(subtotal=f"{amount:.2f}")],
        )
        await self.deliver(merchant, "refunds/create", "", refund=refund)

    async def deliver(self, merchant: str, topic: str, key: str, **content: Any) -> bool:
        webhook = gateway_pb2.WebhookReceived(
            topic=topic,
            shopify_event_id=uuid.uuid4().hex,
            webhook_id=uuid.uuid4().hex,
            shop_domain="rfm-test.myshopify.com",
            customer_id=key,
            payload_version=2,
            **content,
        )
        return await self.on_webhook(consumed(merchant, webhook))

    async def customer(self, merchant: str, customer: str, history: int = 0) -> Any:
        return await self.stub.GetCustomerRFM(
            pb.GetCustomerRFMRequest(customer_id=customer, history_size=history),
            metadata=merchant_metadata(merchant, (READ,)),
        )


_ORDER_IDS = itertools.count(5_000_000_000_001)


def consumed(merchant: str, payload: Message) -> ConsumedEvent:
    """An event as the consumer runner hands it to a handler."""
    event = new_event(merchant, payload)
    return ConsumedEvent(
        envelope=event.envelope,
        spec=event.spec,
        payload=payload,
        consumer=events.CONSUMER_GROUP,
        topic=event.spec.topic.name,
        partition=0,
        offset=0,
    )


def rfm_settings(database_url: str, redis_url: str, **overrides: Any) -> RfmSettings:
    return service_settings_for_tests(
        RfmSettings,
        database_url,
        **({"redis_url": redis_url, "rfm_half_life_days": HALF_LIFE} | overrides),
    )


@contextlib.asynccontextmanager
async def running_rfm(database_url: str, redis_url: str) -> AsyncIterator[Rfm]:
    clock = Clock()
    settings = rfm_settings(database_url, redis_url)
    spec = dataclasses.replace(SPEC, build=functools.partial(build, clock=clock))
    async with serve_for_test(spec, settings, Stub) as (service, stub):
        database = Database(settings, DATABASE)
        await database.open()
        scores, live, nightly = parts(settings, database, clock)
        handler = consumers.handlers(scores, nightly, live, clock=clock)["webhook.received"]
        try:
            yield Rfm(service, stub, handler, scores, clock, settings, database_url)
        finally:
            await live.close()
            await database.close()


@pytest.fixture
async def rfm(database_url: str, redis_url: str) -> AsyncIterator[Rfm]:
    async with running_rfm(database_url, redis_url) as running:
        yield running


@pytest.fixture
async def db(rfm: Rfm) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(
        rfm.database_url, autocommit=True, options="-c search_path=rfm"
    ) as conn:
        yield conn


async def load_fixture(rfm: Rfm, merchant: str) -> None:
    for customer, orders in FIXTURE.items():
        for days_ago, amount in orders:
            await rfm.order(merchant, customer, amount, days_ago=days_ago)
    # A cancelled order and a wholly refunded one: neither counts.
    await rfm.order(merchant, "c02", 90, days_ago=30, topic="orders/cancelled")
    refunded = await rfm.order(merchant, "c15", 50, days_ago=10)
    await rfm.refund(merchant, refunded, 50)


async def rfm_events(db: psycopg.AsyncConnection, merchant: str, customer: str) -> list[Any]:
    """The rfm.updated events in the outbox for one customer, oldest first."""
    cursor = await db.execute(
        "SELECT envelope FROM outbox WHERE event_type = 'rfm.updated' AND partition_key = %s"
        " ORDER BY id",
        (f"{merchant}/{customer}",),
    )
    found = []
    for (raw,) in await cursor.fetchall():
        envelope = envelope_pb2.Envelope.FromString(bytes(raw))
        payload = events_pb2.RfmUpdated()
        envelope.payload.Unpack(payload)
        found.append(payload)
    return found


def summary(customer: pb.CustomerRfm) -> tuple[int, int, int, str, str]:
    return (
        customer.scores.recency,
        customer.scores.frequency,
        customer.scores.monetary,
        events_pb2.RfmGroup.Name(customer.group).removeprefix("RFM_GROUP_").lower(),
        events_pb2.LifecycleStage.Name(customer.stage).removeprefix("LIFECYCLE_STAGE_").lower(),
    )


# ---- the rules ---------------------------------------------------------------------------


async def test_sql_rules_are_the_domain_rules_on_every_cell(db: psycopg.AsyncConnection) -> None:
    cells = [(r, f, m) for r in range(1, 6) for f in range(0, 6) for m in range(1, 6)]
    cursor = await db.execute(
        "SELECT r, f, m, rfm_group(r, f, m), rfm_stage(r, f)"
        " FROM unnest(%s::int[], %s::int[], %s::int[]) AS t(r, f, m)",
        ([c[0] for c in cells], [c[1] for c in cells], [c[2] for c in cells]),
    )
    for r, f, m, group, stage in await cursor.fetchall():
        assert group == domain.group_of(domain.Scores(r, f, m)).value, (r, f, m)
        assert stage == domain.stage_of(r, f).value, (r, f)
    reached = {domain.group_of(domain.Scores(*c)) for c in cells if c[1] > 0}
    assert reached == set(domain.Group) - {domain.Group.PROSPECT}, "every group is reachable"
    cutoffs = [(1.0, 2.0, 3.0, 4.0), (30.0, 30.0, 85.0, 320.0), (1.0, 1.0, 1.0, 1.0)]
    values = [0.5, 1.0, 1.5, 2.0, 4.0, 5.0, 30.0, 60.0, 85.0, 320.0, 400.0]
    for cut in cutoffs:
        cursor = await db.execute(
            "SELECT v, rfm_quintile(v, %s::float8[]) FROM unnest(%s::float8[]) AS v",
            (list(cut), values),
        )
        for value, quintile in await cursor.fetchall():
            assert quintile == domain.quintile(value, cut), (value, cut)
    # A tie group spanning two cutoffs gets the upper middle of quintiles 1-3: 2, where
    # width_bucket would give 3 and ntile would split the group over 1, 2 and 3.
    assert domain.quintile(30.0, (30.0, 30.0, 85.0, 320.0)) == 2
    assert domain.quintile(1.0, (1.0, 1.0, 1.0, 1.0)) == 3
    for orders in range(8):
        cursor = await db.execute("SELECT rfm_frequency_score(%s)", (orders,))
        assert (await cursor.fetchone()) == (domain.frequency_score(orders),)


# ---- the worked example ------------------------------------------------------------------


async def test_the_twenty_customers_of_the_readme(rfm: Rfm, merchant_id: str) -> None:
    await load_fixture(rfm, merchant_id)
    await rfm_rescore(rfm, merchant_id)
    got = {c: summary((await rfm.customer(merchant_id, c)).customer) for c in FIXTURE}
    assert got == EXPECTED
    c19 = (await rfm.customer(merchant_id, "c19")).customer
    # One order 90 days (one half-life) ago: half an order of activity.
    assert c19.recency_activity == pytest.approx(0.5)
    assert (c19.orders, c19.monetary, c19.currency_code) == (1, "400.00", "USD")
    c15 = (await rfm.customer(merchant_id, "c15")).customer
    assert (c15.orders, c15.monetary) == (2, "100.00")  # the refunded order does not count
    c02 = (await rfm.customer(merchant_id, "c02")).customer
    assert (c02.orders, c02.monetary) == (4, "570.00")  # nor does the cancelled one

    segments = await rfm.stub.GetSegments(
        pb.GetSegmentsRequest(), metadata=merchant_metadata(merchant_id, (READ,))
    )
    counts = {
        events_pb2.RfmGroup.Name(c.group).removeprefix("RFM_GROUP_").lower(): c.customers
        for c in segments.counts
    }
    expected_counts: dict[str, int] = {}
    for _, _, _, group, _ in EXPECTED.values():
        expected_counts[group] = expected_counts.get(group, 0) + 1
    assert counts == expected_counts and segments.customers == 20
    cut = segments.cutoffs
    now_key = domain.days_since_epoch(NOW) / HALF_LIFE
    assert [2 ** (k - now_key) for k in cut.recency_key] == pytest.approx(
        EXPECTED_R_CUTOFFS, abs=1e-4
    )
    assert list(cut.monetary) == pytest.approx(EXPECTED_M_CUTOFFS)
    assert (cut.customers, cut.half_life_days) == (20, HALF_LIFE)


async def rfm_rescore(rfm: Rfm, merchant: str) -> None:
    """`loyalnest rfm rescore --merchant` as the CronJob runs it (its own process' code path),
    at the test's clock: the nightly job is the service's Rescorer behind the command."""
    database = Database(rfm.settings, DATABASE)
    await database.open()
    try:
        _, live, nightly = parts(rfm.settings, database, rfm.clock)
        await nightly.run(merchant)
        await live.close()
    finally:
        await database.close()


# ---- incremental path --------------------------------------------------------------------


async def test_an_order_moves_recency_at_once_and_rfm_updated_fires_only_on_change(
    rfm: Rfm, db: psycopg.AsyncConnection, merchant_id: str
) -> None:
    await load_fixture(rfm, merchant_id)
    await rfm_rescore(rfm, merchant_id)
    before = await rfm_events(db, merchant_id, "c12")
    assert before[-1].group == events_pb2.RFM_GROUP_LOST

    # c12 (lost: one order 500 days ago) orders today: scored against the stored cutoffs at
    # once, no rescore needed.
    await rfm.order(merchant_id, "c12", 30)
    c12 = await rfm.customer(merchant_id, "c12", history=5)
    assert summary(c12.customer) == (4, 2, 3, "potential_loyalist", "active")
    assert c12.customer.recency_activity == pytest.approx(1 + 2 ** (-500 / 90), abs=1e-6)
    assert c12.customer.last_order_time.ToDatetime(tzinfo=UTC) == NOW
    assert [h.group for h in c12.history[:2]] == [
        events_pb2.RFM_GROUP_POTENTIAL_LOYALIST,
        events_pb2.RFM_GROUP_LOST,
    ]
    after = await rfm_events(db, merchant_id, "c12")
    assert len(after) == len(before) + 1
    announced = after[-1]
    assert (announced.group, announced.previous_group) == (
        events_pb2.RFM_GROUP_POTENTIAL_LOYALIST,
        events_pb2.RFM_GROUP_LOST,
    )
    assert (announced.scores.recency, announced.scores.frequency) == (4, 2)
    assert announced.score.frequency == 2 and announced.score.monetary_minor_units == 6000
    assert announced.score.currency_code == "USD"

    # c01 (champion, 5/5/5) orders again: facts move, scores do not: nothing announced.
    c01_events = len(await rfm_events(db, merchant_id, "c01"))
    await rfm.order(merchant_id, "c01", 10)
    c01 = (await rfm.customer(merchant_id, "c01")).customer
    assert c01.orders == 7 and c01.last_order_time.ToDatetime(tzinfo=UTC) == NOW
    assert summary(c01) == EXPECTED["c01"]
    assert len(await rfm_events(db, merchant_id, "c01")) == c01_events

    # A redelivered event changes nothing.
    order_id = await rfm.order(merchant_id, "c05", 20)
    orders = (await rfm.customer(merchant_id, "c05")).customer.orders
    await rfm.order(merchant_id, "c05", 20, order_id=order_id, topic="orders/paid")
    assert (await rfm.customer(merchant_id, "c05")).customer.orders == orders


async def test_small_merchants_score_recency_by_days_and_monetary_in_the_middle(
    rfm: Rfm, merchant_id: str
) -> None:
    await rfm.order(merchant_id, "s1", 80, days_ago=10)
    await rfm.order(merchant_id, "s2", 20, days_ago=100)
    await rfm.order(merchant_id, "s3", 20, days_ago=400)
    got = {c: summary((await rfm.customer(merchant_id, c)).customer) for c in ("s1", "s2", "s3")}
    assert got == {
        "s1": (5, 1, 3, "new", "new"),
        "s2": (3, 1, 3, "promising", "new"),
        "s3": (1, 1, 3, "lost", "churned"),
    }
    # A customer Shopify told of, with no order yet: a prospect, counted, not scored.
    await rfm.deliver(
        merchant_id,
        "customers/create",
        "p1",
        customer=gateway_pb2.ShopifyCustomer(customer_id="p1"),
    )
    assert summary((await rfm.customer(merchant_id, "p1")).customer) == (
        0,
        0,
        0,
        "prospect",
        "prospect",
    )


async def test_the_nightly_rescore_recomputes_cutoffs_and_a_growth_past_the_threshold_too(
    rfm: Rfm, db: psycopg.AsyncConnection, merchant_id: str
) -> None:
    await load_fixture(rfm, merchant_id)
    await rfm_rescore(rfm, merchant_id)
    md = merchant_metadata(merchant_id, (READ,))
    first = (await rfm.stub.GetSegments(pb.GetSegmentsRequest(), metadata=md)).cutoffs
    # Two big new customers: 10% more, under the 20% threshold: cutoffs stay until tonight.
    await rfm.order(merchant_id, "n1", 900)
    await rfm.order(merchant_id, "n2", 950)
    kept = (await rfm.stub.GetSegments(pb.GetSegmentsRequest(), metadata=md)).cutoffs
    assert (kept.customers, list(kept.monetary)) == (20, list(first.monetary))
    rfm.clock.now = NOW + timedelta(days=1)
    await rfm_rescore(rfm, merchant_id)
    nightly = (await rfm.stub.GetSegments(pb.GetSegmentsRequest(), metadata=md)).cutoffs
    assert nightly.customers == 22 and list(nightly.monetary) != list(first.monetary)
    assert nightly.compute_time.ToDatetime(tzinfo=UTC) == NOW + timedelta(days=1)
    # Three more (27 against 22: past 20%): rescored at once, by the consumer.
    for n in range(3, 8):
        await rfm.order(merchant_id, f"n{n}", 5)
    grown = (await rfm.stub.GetSegments(pb.GetSegmentsRequest(), metadata=md)).cutoffs
    assert grown.customers > 22
    # Daily counts over a period: one entry per nightly rescore.
    period = await rfm.stub.GetSegments(
        pb.GetSegmentsRequest(
            start_time=_ts(NOW - timedelta(days=1)), end_time=_ts(NOW + timedelta(days=1))
        ),
        metadata=md,
    )
    assert [h.time.ToDatetime(tzinfo=UTC) for h in period.history] == [
        NOW,
        NOW + timedelta(days=1),
    ]
    assert sum(c.customers for c in period.history[0].counts) == 20


def _ts(at: datetime) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


async def test_partitions_are_monthly_and_retention_drops_whole_ones(
    rfm: Rfm, db: psycopg.AsyncConnection
) -> None:
    await db.execute(
        "CREATE TABLE rfm_score_history_200001 PARTITION OF rfm_score_history"
        " FOR VALUES FROM ('2000-01-01') TO ('2000-02-01')"
    )
    dropped = await rfm.scores.drop_partitions(13)
    assert dropped == ["rfm_score_history_200001"]
    cursor = await db.execute(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent"
        " WHERE p.relname = 'rfm_score_history'"
    )
    assert ((await cursor.fetchone()) or (0,))[0] >= 3  # this month and two ahead


# ---- previews, nudges, the scatter -------------------------------------------------------


async def test_a_preview_counts_what_the_groups_hold_and_is_cached(
    rfm: Rfm, merchant_id: str
) -> None:
    await load_fixture(rfm, merchant_id)
    await rfm_rescore(rfm, merchant_id)
    md = merchant_metadata(merchant_id, (READ,))
    request = pb.PreviewSegmentRequest(
        definition=pb.SegmentDefinition(
            groups=[events_pb2.RFM_GROUP_AT_RISK, events_pb2.RFM_GROUP_CANT_LOSE]
        ),
        sample_size=2,
    )
    preview = await rfm.stub.PreviewSegment(request, metadata=md)
    assert preview.customers == 3 and not preview.cached
    assert [c.customer_id for c in preview.sample] == ["c13", "c19"]  # biggest spenders first
    again = await rfm.stub.PreviewSegment(request, metadata=md)
    assert again.cached and again.customers == 3
    # The same count as the saved groups' counts.
    counts = (await rfm.stub.GetSegments(pb.GetSegmentsRequest(), metadata=md)).counts
    saved = {c.group: c.customers for c in counts}
    assert preview.customers == saved[events_pb2.RFM_GROUP_AT_RISK] + saved.get(
        events_pb2.RFM_GROUP_CANT_LOSE, 0
    )
    by_scores = await rfm.stub.PreviewSegment(
        pb.PreviewSegmentRequest(
            definition=pb.SegmentDefinition(
                recency=pb.ScoreRange(min=4), monetary=pb.ScoreRange(min=4, max=5)
            )
        ),
        metadata=md,
    )
    expected = [c for c, (r, _, m, _, _) in EXPECTED.items() if r >= 4 and m >= 4]
    assert by_scores.customers == len(expected)
    # A rescore drops the cached answers.
    await rfm_rescore(rfm, merchant_id)
    assert not (await rfm.stub.PreviewSegment(request, metadata=md)).cached
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await rfm.stub.PreviewSegment(
            pb.PreviewSegmentRequest(
                definition=pb.SegmentDefinition(recency=pb.ScoreRange(min=4, max=2))
            ),
            metadata=md,
        )
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "definition.recency.max" in invalid.value.details()


async def test_nudges_most_urgent_first_paged(rfm: Rfm, merchant_id: str) -> None:
    await load_fixture(rfm, merchant_id)
    await rfm_rescore(rfm, merchant_id)
    md = merchant_metadata(merchant_id, (READ,))
    seen: list[Any] = []
    token = ""
    while True:
        page = await rfm.stub.ListNudges(
            pb.ListNudgesRequest(page_size=4, page_token=token), metadata=md
        )
        seen += page.nudges
        token = page.next_page_token
        if not token:
            break
    # cant_lose, at_risk (by spend), about_to_sleep, new, needs_attention, potential, champions
    assert [n.customer_id for n in seen] == [
        "c13",
        "c19",
        "c18",
        "c10",
        "c04",
        "c05",
        "c14",
        "c17",
        "c01",
        "c02",
        "c20",
    ]
    assert seen[0].action == pb.NUDGE_ACTION_PERSONAL_OUTREACH
    assert seen[0].reason == "cant_lose: spent 780.00 USD over 4 orders; last order 400 days ago"
    only = await rfm.stub.ListNudges(
        pb.ListNudgesRequest(groups=[events_pb2.RFM_GROUP_NEW]), metadata=md
    )
    assert [n.customer_id for n in only.nudges] == ["c04", "c05"]
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await rfm.stub.ListNudges(
            pb.ListNudgesRequest(groups=[events_pb2.RFM_GROUP_LOST]), metadata=md
        )
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_scatter_streams_a_sample_then_updates_after_an_order(
    rfm: Rfm, merchant_id: str
) -> None:
    await load_fixture(rfm, merchant_id)
    await rfm_rescore(rfm, merchant_id)
    md = merchant_metadata(merchant_id, (READ,))
    call = rfm.stub.StreamVisualizations(pb.StreamVisualizationsRequest(max_points=5), metadata=md)
    try:
        first = await asyncio.wait_for(call.read(), 10)
        assert first.WhichOneof("event") == "initial"
        assert first.initial.customers == 20 and first.initial.sampled
        assert len(first.initial.points) == 5
        await rfm.order(merchant_id, "c12", 30)
        update = await asyncio.wait_for(call.read(), 10)
        assert update.WhichOneof("event") == "update"
        point = update.update
        assert (point.customer_id, point.days_since_last_order, point.monetary) == (
            "c12",
            0.0,
            "60.00",
        )
        assert point.group == events_pb2.RFM_GROUP_POTENTIAL_LOYALIST
    finally:
        call.cancel()


async def test_streams_per_merchant_are_bounded(database_url: str, redis_url: str) -> None:
    settings = rfm_settings(database_url, redis_url, rfm_stream_max_per_merchant=1)
    async with serve_for_test(SPEC, settings, Stub) as (_, stub):
        md = merchant_metadata("stream-merchant", (READ,))
        first = stub.StreamVisualizations(pb.StreamVisualizationsRequest(), metadata=md)
        try:
            assert (await asyncio.wait_for(first.read(), 10)).WhichOneof("event") == "initial"
            second = stub.StreamVisualizations(pb.StreamVisualizationsRequest(), metadata=md)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await asyncio.wait_for(second.read(), 10)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # Another merchant is not held up by this one's streams.
            other = stub.StreamVisualizations(
                pb.StreamVisualizationsRequest(), metadata=merchant_metadata("other", (READ,))
            )
            assert (await asyncio.wait_for(other.read(), 10)).WhichOneof("event") == "initial"
            other.cancel()
        finally:
            first.cancel()


# ---- personal data -----------------------------------------------------------------------


async def test_export_and_erase_a_customer_and_a_merchant(
    rfm: Rfm, db: psycopg.AsyncConnection, merchant_id: str
) -> None:
    await load_fixture(rfm, merchant_id)
    exported = await rfm.scores.export_customer(merchant_id, "c02")
    assert exported["customer"]["orders"] == 4
    assert len(exported["orders"]) == 5 and exported["score_history"]
    # Through the platform's contract, as AdminCore calls it.
    personal = ByShopifyId(rfm.scores)
    package = await personal.export_customer(merchant_id, CustomerRef("c02"))
    assert package.data["customer"]["orders"] == 4
    assert await personal.erase_customer(merchant_id, CustomerRef("c02")) >= 5
    assert await personal.erase_customer(merchant_id, CustomerRef("c02")) == 0  # a repeat
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await rfm.customer(merchant_id, "c02")
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    assert await rfm.scores.export_customer(merchant_id, "c02") == {
        "customer": None,
        "orders": [],
        "refunds": [],
        "score_history": [],
    }
    counts = await rfm.scores.group_counts(merchant_id)
    assert sum(counts.values()) == 19
    # customers/redact through the consumer, then shop/redact for the whole merchant.
    await rfm.deliver(
        merchant_id,
        "customers/redact",
        "c03",
        privacy_request=gateway_pb2.ShopifyPrivacyRequest(customer_id="c03"),
    )
    assert (await rfm.scores.export_customer(merchant_id, "c03"))["customer"] is None
    await rfm.deliver(merchant_id, "shop/redact", "", shop=gateway_pb2.ShopifyShop(shop_id="1"))
    for table in ("customer_rfm", "orders", "refunds", "rfm_score_history", "rfm_cutoffs"):
        cursor = await db.execute(
            f"SELECT count(*) FROM {table} WHERE merchant_id = %s", (merchant_id,)
        )
        assert (await cursor.fetchone()) == (0,), table


# ---- REST through Envoy ------------------------------------------------------------------


@pytest.fixture
async def gateway(rfm: Rfm, tmp_path: Path) -> AsyncIterator[Gateway]:
    upstream = Upstream("rfm", (SERVICE_NAME,), (("127.0.0.1", rfm.service.port),))
    async with running_gateway(gateway_config(upstream), tmp_path, {"rfm": 1}) as gw:
        yield gw


async def test_rest_through_the_gateway(gateway: Gateway, rfm: Rfm, merchant_id: str) -> None:
    await load_fixture(rfm, merchant_id)
    await rfm_rescore(rfm, merchant_id)
    headers = merchant_headers(merchant_id, (READ,))
    segments = await http("GET", f"{gateway.url}/v1/api/rfm/segments", headers=headers)
    assert segments.status == 200, segments.body
    assert segments.json()["customers"] == "20"
    customer = await http("GET", f"{gateway.url}/v1/api/rfm/customers/c19", headers=headers)
    assert customer.status == 200, customer.body
    body = customer.json()["customer"]
    assert (body["group"], body["stage"], body["monetary"]) == (
        "RFM_GROUP_AT_RISK",
        "LIFECYCLE_STAGE_LAPSING",
        "400.00",
    )
    preview = await http(
        "POST",
        f"{gateway.url}/v1/api/rfm/segments/preview",
        headers=headers,
        json_body={"definition": {"groups": ["RFM_GROUP_CHAMPIONS"]}},
    )
    assert preview.status == 200, preview.body
    assert preview.json()["customers"] == "3"
    nudges = await http(
        "GET", f"{gateway.url}/v1/api/rfm/nudges?page_size=2&groups=RFM_GROUP_NEW", headers=headers
    )
    assert nudges.status == 200, nudges.body
    assert [n["customer_id"] for n in nudges.json()["nudges"]] == ["c04", "c05"]
    other = merchant_headers(f"other-{merchant_id}", (READ,))
    hidden = await http("GET", f"{gateway.url}/v1/api/rfm/customers/c19", headers=other)
    assert hidden.status == 404, hidden.body
    anonymous = await http("GET", f"{gateway.url}/v1/api/rfm/segments")
    assert anonymous.status == 401, anonymous.body
    forbidden = await http(
        "GET", f"{gateway.url}/v1/api/rfm/segments", headers=merchant_headers(merchant_id, ())
    )
    assert forbidden.status == 403, forbidden.body


# ---- the mesh-wide isolation table (test_tenant_isolation.py) ---------------------------

B_CUSTOMER = "cust-b-rfm"


async def _seed(database_url: str, merchant_id: str) -> dict[str, Any]:
    """B's customers, as the webhook consumer records them (no RPC creates one)."""
    settings = RfmSettings(database_url=database_url)
    database = Database(settings, DATABASE)
    await database.open()
    try:
        clock = Clock()
        scores, live, nightly = parts(settings, database, clock)
        handler = consumers.handlers(scores, nightly, live, clock=clock)["webhook.received"]
        for n in range(6):
            order = gateway_pb2.ShopifyOrder(
                order_id=f"{merchant_id}-{n}",
                customer_id=f"{B_CUSTOMER}-{n}" if n else B_CUSTOMER,
                currency="USD",
                line_items=[gateway_pb2.ShopifyLineItem(price="40.00", quantity=1 + n)],
            )
            order.created_time.FromDatetime(NOW - timedelta(days=30 * n))
            await handler(
                consumed(
                    merchant_id,
                    gateway_pb2.WebhookReceived(
                        topic="orders/create", payload_version=2, order=order
                    ),
                )
            )
        await live.close()
    finally:
        await database.close()
    return {"secrets": [B_CUSTOMER]}


async def _arrange(ch: grpc.aio.Channel, md: Metadata) -> dict[str, Any]:
    return {"secrets": []}


async def _snapshot(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    got = await Stub(ch).GetCustomerRFM(
        pb.GetCustomerRFMRequest(customer_id=B_CUSTOMER), metadata=md
    )
    got.customer.ClearField("recency_activity")  # decays as time passes, by design
    return got


async def _get_b_customer(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    return await Stub(ch).GetCustomerRFM(
        pb.GetCustomerRFMRequest(customer_id=B_CUSTOMER), metadata=md
    )


async def _segments(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    return await Stub(ch).GetSegments(pb.GetSegmentsRequest(), metadata=md)


async def _preview(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    answer = await Stub(ch).PreviewSegment(
        pb.PreviewSegmentRequest(definition=pb.SegmentDefinition()), metadata=md
    )
    assert answer.customers == 0, "A's preview counted B's customers"
    return answer


async def _nudges(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    return await Stub(ch).ListNudges(pb.ListNudgesRequest(), metadata=md)


async def _scatter(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    call = Stub(ch).StreamVisualizations(pb.StreamVisualizationsRequest(), metadata=md)
    try:
        first = await asyncio.wait_for(call.read(), 10)
    finally:
        call.cancel()
    assert first.initial.customers == 0, "A's scatter counted B's customers"
    return first


ISOLATION = Table(
    arrange=_arrange,
    snapshot=_snapshot,
    seed=_seed,
    cases={
        "GetCustomerRFM": [Case(_get_b_customer)],
        "GetSegments": [Case(_segments, may_succeed=True)],
        "PreviewSegment": [Case(_preview, may_succeed=True)],
        "ListNudges": [Case(_nudges, may_succeed=True)],
        "StreamVisualizations": [Case(_scatter, may_succeed=True)],
    },
)
