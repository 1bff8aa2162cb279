"""Rule simulation: the merchant's recent orders replayed under a draft set of earning rules.

The orders are those Points recorded (order_earnings: the eligible amount, the amount weighted
by the collection multipliers, the channel, when it arrived, and what each published rule gave
it then, `awards`), oldest first. Each is evaluated by the same engine as a live order
(rules.RuleSet.order_awards) under the program with its `earning_rules` replaced by the draft,
at the time it was recorded (that time is also what date windows see). What a rule needs of a
customer's past (limits, punch cards, goals) is the replay's own: only the window's orders
count, from none. Tier-only rules and tier multipliers see each customer's current tier (the
tier an order was placed in is not recorded). Orders that earned nothing under the program
(disabled, over the plan's limit) are left out; refunds are left out of both sides (`actual`
is what the orders earned when they arrived, as `awards` records it).

The difference in points is valued as the liability values points (liability.py): at the point
value of the merchant's rewards, and expected after breakage where the store measures it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.platform.earning_rules import check_earning_rules
from loyalnest.platform.errors import FieldViolation, InvalidArgument
from loyalnest.services.points.liability import (
    DEFAULT_HORIZON_DAYS,
    Clock,
    LiabilityUnsupported,
    PointsLiability,
    ProgramCopies,
)
from loyalnest.services.points.orders import OrderEarning
from loyalnest.services.points.rules import OrderFacts, RuleEvent, RuleSet, parse_awards

if TYPE_CHECKING:
    from loyalnest.services.points.store.base import LedgerStore

MAX_DAYS = 365
# Replayed in memory: a window with more orders is refused (a shorter one fits).
MAX_ORDERS = 200_000
_CENT = Decimal("0.01")


@dataclass
class RuleOutcome:
    actual: int = 0
    simulated: int = 0
    simulated_orders: int = 0


@dataclass
class SimulationReport:
    since: datetime
    orders: int = 0
    rules: dict[str, RuleOutcome] = field(default_factory=lambda: defaultdict(RuleOutcome))
    point_value: Decimal = Decimal(0)
    breakage_rate: Decimal | None = None

    @property
    def actual(self) -> int:
        return sum(r.actual for r in self.rules.values())

    @property
    def simulated(self) -> int:
        return sum(r.simulated for r in self.rules.values())

    @property
    def delta(self) -> int:
        return self.simulated - self.actual

    @property
    def value_delta(self) -> Decimal:
        return (self.delta * self.point_value).quantize(_CENT, ROUND_HALF_UP)

    @property
    def expected_value_delta(self) -> Decimal | None:
        if self.breakage_rate is None:
            return None
        raw = self.delta * self.point_value * (1 - self.breakage_rate)
        return raw.quantize(_CENT, ROUND_HALF_UP)


def validate(
    days: int, rules: Sequence[core_pb2.EarningRule], tier_ids: Collection[str] | None = None
) -> None:
    """The check Core applies to published earning_rules (platform/earning_rules.py), its
    field names the request's: rules[i]; eligible_tiers must name the program's tiers."""
    violations = check_earning_rules(rules, field="rules", tier_ids=tier_ids)
    if not 0 < days <= MAX_DAYS:
        violations.insert(0, FieldViolation("days", f"must be 1 to {MAX_DAYS}"))
    if violations:
        raise InvalidArgument("invalid draft rules", violations)


def replay(
    draft: RuleSet,
    orders: Sequence[OrderEarning],
    report: SimulationReport,
    tiers: Mapping[str, str] | None = None,
    segments: Mapping[str, str] | None = None,
) -> None:
    """`tiers`: each customer's tier to simulate with (their current one; the tier an order
    was placed in is not recorded unless it earned a multiplier); `segments`: likewise their
    current RFM segment (the one an order was placed in is not recorded)."""
    tiers = tiers or {}
    segments = segments or {}
    # Each customer's events per rule, as the live path would have recorded them.
    history: dict[str, dict[str, list[RuleEvent]]] = defaultdict(lambda: defaultdict(list))
    for order in orders:
        report.orders += 1
        for rule_id, points in parse_awards(order.awards):
            report.rules[rule_id].actual += points
        weighted = order.eligible_amount if order.weighted_amount is None else order.weighted_amount
        facts = OrderFacts(
            order_id=order.order_id,
            customer_id=order.customer_id,
            eligible=order.eligible_amount,
            weighted=weighted,
            channel=core_pb2.SALES_CHANNEL_POS if order.pos else core_pb2.SALES_CHANNEL_ONLINE,
            placed_at=order.created_at,
            base_points=draft.base_points(weighted),
            tier_id=tiers.get(order.customer_id, ""),
            segment=segments.get(order.customer_id, ""),
        )
        past = history[order.customer_id]
        for award in draft.order_awards(facts, past, order.created_at):
            if award.points > 0:
                outcome = report.rules[award.rule_id]
                outcome.simulated += award.points
                outcome.simulated_orders += 1
            if award.event is not None:
                past[award.rule_id].append(award.event)


class RuleSimulation:
    def __init__(
        self,
        store: LedgerStore,
        programs: ProgramCopies,
        liability: PointsLiability,
        *,
        clock: Clock,
    ) -> None:
        self._store = store
        self._programs = programs
        self._liability = liability
        self._clock = clock

    async def simulate(
        self, merchant_id: str, days: int, rules: Sequence[core_pb2.EarningRule]
    ) -> SimulationReport:
        program = core_pb2.ProgramSettings()
        program.CopyFrom(await self._programs.get(merchant_id))
        validate(days, rules, {t.tier_id for t in program.vip_tiers})
        del program.earning_rules[:]
        program.earning_rules.extend(rules)
        program.version = -1  # not the published set's: never cached as it
        since = self._clock() - timedelta(days=days)
        orders = await self._store.orders_since(merchant_id, since, MAX_ORDERS + 1)
        if len(orders) > MAX_ORDERS:
            raise InvalidArgument(
                "too many orders to replay",
                [FieldViolation("days", f"covers more than {MAX_ORDERS} orders: fewer days")],
            )
        report = SimulationReport(since=since)
        draft = RuleSet.of(program)
        tiers: dict[str, str] = {}
        if draft.tier_aware:  # one read per customer of the window, only when tiers matter
            for customer_id in dict.fromkeys(o.customer_id for o in orders):
                state = await self._store.customer_tier(merchant_id, customer_id)
                tiers[customer_id] = "" if state is None else state.tier_id
        segments: dict[str, str] = {}
        if draft.segment_aware:  # likewise for segment-only rules
            for customer_id in dict.fromkeys(o.customer_id for o in orders):
                segments[customer_id] = await self._store.customer_segment(merchant_id, customer_id)
        replay(draft, orders, report, tiers, segments)
        try:
            liability = await self._liability.report(merchant_id, DEFAULT_HORIZON_DAYS)
            report.point_value = liability.value.per_point
            report.breakage_rate = liability.figures.breakage.rate
        except LiabilityUnsupported:
            report.point_value = await self._liability.point_value(merchant_id)
        return report
