"""The earning rules engine: what an order or an activity earns under the merchant's rules.

Rules are Core's (`ProgramSettings.earning_rules`, validated there), compiled once per settings
version into `RuleSet` (decimals parsed, rules grouped by what they apply to), so an order's
evaluation is arithmetic over a few rules. Pure: what a rule needs to know of the customer's
past (limits, punch cards, goals) is passed in as `RuleEvent`s, which earning.py reads from the
store and records after each award.

    PLACE_ORDER        rate x the order's amount (after collection multipliers) or fixed;
                       no PLACE_ORDER rule: the program's base rate, rule id "order";
    ORDER_MULTIPLIER   multiplies the PLACE_ORDER awards of the orders it matches (highest);
    PUNCH_CARD         the Nth matching order earns a bonus;
    GOAL_SPEND         spending min_spend within goal_period earns a bonus once per period;
    CUSTOM_ACTIVITY    an activity reported through RecordActivity.

Conditions: enabled, [start_time, end_time) on the order's (activity's) time, channels,
eligible tiers (the customer's tier when the order is recorded), min_spend on the order's
eligible amount, per-customer limits (N per UTC day, month, year or
ever). An award is idempotent per (rule, customer, occurrence): the occurrence is the order id
or the activity's idempotency key, and a retry finds its own event and reuses what it decided.

VIP perk: a tier's `earning_multiplier` m multiplies the order's PLACE_ORDER points; the extra
(m - 1) x those points is an award of its own, rule id "vip:<tier_id>" (":" is not allowed in
a merchant's rule id), so the customer's history shows why the order earned more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from loyalnest.gen.events.v1 import core_pb2, rfm_pb2

BASE_RULE_ID = "order"
TIER_AWARD_PREFIX = "vip:"
# domain.MAX_POINTS_PER_TRANSACTION (rules.py imports nothing of the service's).
MAX_AWARD_POINTS = 1_000_000_000
_ROUNDING = {
    core_pb2.POINTS_ROUNDING_DOWN: ROUND_FLOOR,
    core_pb2.POINTS_ROUNDING_NEAREST: ROUND_HALF_UP,
    core_pb2.POINTS_ROUNDING_UP: ROUND_CEILING,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RuleEvent:
    """A rule's past effect for one customer: an award (points > 0) or, for punch cards and
    goals, an order counted towards one (points 0)."""

    rule_id: str
    occurrence: str
    points: int
    amount: Decimal
    at: datetime


@dataclass(frozen=True)
class Award:
    rule_id: str
    points: int
    # What to record for the rule (None: the rule keeps no history).
    event: RuleEvent | None = None


@dataclass(frozen=True)
class OrderFacts:
    order_id: str
    customer_id: str
    eligible: Decimal  # the order's amount that earns
    weighted: Decimal  # the same, each line times its collection multiplier
    channel: int  # core_pb2.SalesChannel
    placed_at: datetime
    # What the program's base rate gives (orders.order_totals): the implicit rule's award.
    base_points: int = 0
    # The customer's VIP tier when the order is recorded; "": none.
    tier_id: str = ""
    # The customer's RFM segment then ("high_value"...; "": none), read only when a rule asks.
    segment: str = ""


@dataclass(frozen=True)
class Rule:
    rule_id: str
    type: int
    rate: Decimal | None
    points: int
    min_spend: Decimal | None
    channels: frozenset[int]
    start: datetime | None
    end: datetime | None
    multiplier: Decimal
    max_awards: int
    period: int
    punch_count: int
    goal_period: timedelta
    activity: str
    tiers: frozenset[str] = frozenset()  # eligible tiers; empty: every customer
    segments: frozenset[str] = frozenset()  # eligible RFM segments; empty: every customer

    @classmethod
    def of(cls, rule: core_pb2.EarningRule) -> Rule:
        return cls(
            rule_id=rule.rule_id,
            type=rule.type,
            rate=Decimal(rule.points_per_currency_unit) if rule.points_per_currency_unit else None,
            points=rule.points,
            min_spend=Decimal(rule.min_spend) if rule.min_spend else None,
            channels=frozenset(rule.channels),
            start=rule.start_time.ToDatetime(UTC) if rule.HasField("start_time") else None,
            end=rule.end_time.ToDatetime(UTC) if rule.HasField("end_time") else None,
            multiplier=Decimal(rule.multiplier) if rule.multiplier else Decimal(1),
            max_awards=rule.limit.max_awards if rule.HasField("limit") else 0,
            period=rule.limit.period,
            punch_count=rule.punch_count,
            goal_period=rule.goal_period.ToTimedelta(),
            activity=rule.activity,
            tiers=frozenset(rule.eligible_tiers),
            segments=frozenset(segment_name(s) for s in rule.eligible_segments),
        )

    def active_at(self, moment: datetime) -> bool:
        return (self.start is None or self.start <= moment) and (
            self.end is None or moment < self.end
        )

    def eligible(self, tier_id: str, segment: str = "") -> bool:
        return (not self.tiers or tier_id in self.tiers) and (
            not self.segments or segment in self.segments
        )

    def matches(self, order: OrderFacts) -> bool:
        return (
            self.active_at(order.placed_at)
            and self.eligible(order.tier_id, order.segment)
            and (not self.channels or order.channel in self.channels)
            and (
                self.min_spend is None
                # A goal's min_spend is the goal, over many orders.
                or self.type == core_pb2.EARNING_RULE_TYPE_GOAL_SPEND
                or order.eligible >= self.min_spend
            )
        )

    @property
    def keeps_history(self) -> bool:
        """Whether its decisions depend on the customer's past (so are recorded)."""
        return self.max_awards > 0 or self.type in (
            core_pb2.EARNING_RULE_TYPE_PUNCH_CARD,
            core_pb2.EARNING_RULE_TYPE_GOAL_SPEND,
        )

    def history_since(self, now: datetime) -> datetime:
        """How far back evaluating this rule at `now` needs the customer's events."""
        since = now
        if self.max_awards:
            since = min(since, period_start(self.period, now))
        if self.type == core_pb2.EARNING_RULE_TYPE_PUNCH_CARD:
            return _EPOCH  # the count since the last award, however long ago
        if self.type == core_pb2.EARNING_RULE_TYPE_GOAL_SPEND:
            since = min(since, now - self.goal_period)
        return since


def period_start(period: int, now: datetime) -> datetime:
    now = now.astimezone(UTC)
    if period == core_pb2.LIMIT_PERIOD_DAY:
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == core_pb2.LIMIT_PERIOD_MONTH:
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if period == core_pb2.LIMIT_PERIOD_YEAR:
        return now.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    return _EPOCH  # ever


def within_limit(rule: Rule, past: Sequence[RuleEvent], now: datetime) -> bool:
    if not rule.max_awards:
        return True
    since = period_start(rule.period, now)
    return sum(1 for e in past if e.points > 0 and e.at >= since) < rule.max_awards


@dataclass(frozen=True)
class RuleSet:
    version: int
    rounding: str
    base: Rule | None  # the program's base rate when no PLACE_ORDER rule exists
    place_order: tuple[Rule, ...]
    multipliers: tuple[Rule, ...]
    punch_cards: tuple[Rule, ...]
    goals: tuple[Rule, ...]
    activities: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)
    # Each tier's earning multiplier, those above 1 only.
    tier_multipliers: Mapping[str, Decimal] = field(default_factory=dict)

    @classmethod
    def of(cls, program: core_pb2.ProgramSettings) -> RuleSet:
        enabled = [Rule.of(r) for r in program.earning_rules if r.enabled]

        def of_type(kind: int) -> tuple[Rule, ...]:
            return tuple(r for r in enabled if r.type == kind)

        explicit = any(
            r.type == core_pb2.EARNING_RULE_TYPE_PLACE_ORDER for r in program.earning_rules
        )
        base = None
        if not explicit:
            base = Rule.of(
                core_pb2.EarningRule(
                    rule_id=BASE_RULE_ID,
                    type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER,
                    points_per_currency_unit=program.points_per_currency_unit or "1",
                )
            )
        activities: dict[str, list[Rule]] = {}
        for rule in of_type(core_pb2.EARNING_RULE_TYPE_CUSTOM_ACTIVITY):
            activities.setdefault(rule.activity, []).append(rule)
        return cls(
            version=program.version,
            rounding=_ROUNDING.get(program.rounding, ROUND_FLOOR),
            base=base,
            place_order=of_type(core_pb2.EARNING_RULE_TYPE_PLACE_ORDER),
            multipliers=of_type(core_pb2.EARNING_RULE_TYPE_ORDER_MULTIPLIER),
            punch_cards=of_type(core_pb2.EARNING_RULE_TYPE_PUNCH_CARD),
            goals=of_type(core_pb2.EARNING_RULE_TYPE_GOAL_SPEND),
            activities={name: tuple(rules) for name, rules in activities.items()},
            tier_multipliers={
                t.tier_id: Decimal(t.earning_multiplier)
                for t in program.vip_tiers
                if t.earning_multiplier and Decimal(t.earning_multiplier) > 1
            },
        )

    def __post_init__(self) -> None:
        base = (self.base,) if self.base is not None else ()
        # Frozen: set once here, read per order.
        object.__setattr__(
            self, "_order_rules", base + self.place_order + self.punch_cards + self.goals
        )
        # Whether an order's awards depend on the customer's tier (then read per order).
        object.__setattr__(
            self,
            "tier_aware",
            bool(self.tier_multipliers)
            or any(r.tiers for r in (*self._order_rules, *self.multipliers)),
        )
        # Whether they depend on the customer's RFM segment (then read per order).
        object.__setattr__(
            self,
            "segment_aware",
            any(r.segments for r in (*self._order_rules, *self.multipliers)),
        )
        # No rule but the program's base rate: an order earns what order_totals computed.
        object.__setattr__(
            self,
            "base_only",
            self._order_rules == base
            and not self.multipliers
            and not self.tier_aware
            and not self.segment_aware,
        )

    _order_rules: tuple[Rule, ...] = field(default=(), init=False, repr=False)
    base_only: bool = field(default=False, init=False)
    tier_aware: bool = field(default=False, init=False)
    segment_aware: bool = field(default=False, init=False)

    def base_awards(self, base_points: int) -> list[Award]:
        """order_awards of a `base_only` set, without building the order's facts."""
        return [Award(BASE_RULE_ID, base_points)] if base_points > 0 else []

    def base_points(self, weighted: Decimal) -> int:
        """What the program's base rate gives an amount (0 with PLACE_ORDER rules): for orders
        replayed from the store, whose order_totals are not at hand (simulation.py)."""
        if self.base is None or self.base.rate is None:
            return 0
        return self._points(weighted * self.base.rate)

    def order_rules(self) -> tuple[Rule, ...]:
        return self._order_rules

    @property
    def windowed(self) -> bool:
        """Whether any order rule depends on when the order was placed."""
        return any(r.start or r.end for r in (*self._order_rules, *self.multipliers))

    def _multiplier(self, order: OrderFacts) -> Decimal:
        best = Decimal(1)
        for m in self.multipliers:
            if m.multiplier > best and m.matches(order):
                best = m.multiplier
        return best

    def _points(self, value: Decimal) -> int:
        # Capped like any posting: a cart of extreme amounts must not overflow an int64.
        return min(max(int(value.to_integral_value(self.rounding)), 0), MAX_AWARD_POINTS)

    def order_awards(
        self, order: OrderFacts, history: Mapping[str, Sequence[RuleEvent]], now: datetime
    ) -> list[Award]:
        """What the order earns, rule by rule. `history`: each rule's events for the
        customer (Rule.history_since), this order's own included if recorded before: then
        its decision is reused, so a redelivery earns what the first delivery decided."""
        multiplier = self._multiplier(order)
        awards: list[Award] = []
        for rule in self._order_rules:
            past = history.get(rule.rule_id, ())
            own = next((e for e in past if e.occurrence == order.order_id), None)
            if own is not None:
                if own.points:
                    awards.append(Award(rule.rule_id, own.points, own))
                continue
            others = [e for e in past if e.occurrence != order.order_id]
            award = self._order_award(rule, order, others, multiplier, now)
            if award is not None:
                awards.append(award)
        awards.extend(self._tier_award(order, awards))
        return [a for a in awards if a.points > 0 or a.event is not None]

    def _tier_award(self, order: OrderFacts, awards: Sequence[Award]) -> list[Award]:
        """The tier's perk: (multiplier - 1) x the order's PLACE_ORDER points."""
        extra = self.tier_multipliers.get(order.tier_id)
        if extra is None:
            return []
        place = {r.rule_id for r in (*((self.base,) if self.base else ()), *self.place_order)}
        earned = sum(a.points for a in awards if a.rule_id in place)
        points = self._points(Decimal(earned) * (extra - 1))
        return [Award(TIER_AWARD_PREFIX + order.tier_id, points)] if points else []

    def _order_award(
        self,
        rule: Rule,
        order: OrderFacts,
        past: Sequence[RuleEvent],
        multiplier: Decimal,
        now: datetime,
    ) -> Award | None:
        if not rule.matches(order):
            return None
        counted = RuleEvent(rule.rule_id, order.order_id, 0, order.eligible, now)
        if rule.type == core_pb2.EARNING_RULE_TYPE_PLACE_ORDER:
            if not within_limit(rule, past, now):
                return None
            if rule is self.base and multiplier == 1:
                points = order.base_points  # computed already, with the same rate and rounding
            else:
                raw = order.weighted * rule.rate if rule.rate is not None else Decimal(rule.points)
                points = self._points(raw * multiplier)
            event = RuleEvent(rule.rule_id, order.order_id, points, order.eligible, now)
            return Award(rule.rule_id, points, event if rule.keeps_history else None)
        if rule.type == core_pb2.EARNING_RULE_TYPE_PUNCH_CARD:
            since_award = 0
            for e in sorted(past, key=lambda e: e.at):
                since_award = 0 if e.points else since_award + 1
            if since_award + 1 >= rule.punch_count and within_limit(rule, past, now):
                points = rule.points
                return Award(
                    rule.rule_id,
                    points,
                    RuleEvent(rule.rule_id, order.order_id, points, order.eligible, now),
                )
            return Award(rule.rule_id, 0, counted)
        # GOAL_SPEND: the spend since the last award, within the goal period.
        window = now - rule.goal_period
        last_award = max((e.at for e in past if e.points), default=None)
        if last_award is not None and last_award > window:
            return Award(rule.rule_id, 0, counted)  # met already in this period
        spent = sum((e.amount for e in past if e.at > window), Decimal(0)) + order.eligible
        assert rule.min_spend is not None  # Core requires it of a goal
        if spent >= rule.min_spend and within_limit(rule, past, now):
            return Award(
                rule.rule_id,
                rule.points,
                RuleEvent(rule.rule_id, order.order_id, rule.points, order.eligible, now),
            )
        return Award(rule.rule_id, 0, counted)

    def activity_rules(
        self, activity: str, at: datetime, tier_id: str = "", segment: str = ""
    ) -> list[Rule]:
        return [
            r
            for r in self.activities.get(activity, ())
            if r.active_at(at) and r.eligible(tier_id, segment)
        ]

    def activity_tier_aware(self, activity: str) -> bool:
        return any(r.tiers for r in self.activities.get(activity, ()))

    def activity_segment_aware(self, activity: str) -> bool:
        return any(r.segments for r in self.activities.get(activity, ()))

    def preview(self, order: OrderFacts) -> list[Award]:
        """What an order would earn ignoring the customer's past (limits, punch cards and
        goals need it; the preview leaves them out): for the widget and checkout."""
        multiplier = self._multiplier(order)
        base = (self.base,) if self.base is not None else ()
        awards = []
        for rule in base + self.place_order:
            if rule.matches(order):
                raw = (
                    (order.weighted * rule.rate) if rule.rate is not None else Decimal(rule.points)
                )
                points = self._points(raw * multiplier)
                if points:
                    awards.append(Award(rule.rule_id, points))
        return awards + self._tier_award(order, awards)


def segment_name(segment: int) -> str:
    """RFM's RfmSegment as Points keeps it ("high_value", "at_risk", "new")."""
    return rfm_pb2.RfmSegment.Name(segment).removeprefix("RFM_SEGMENT_").lower()


def awards_text(awards: Sequence[Award]) -> str:
    """The awards as the order records them: `rule:points,...` (e.g. "order:60,punch:10")."""
    return ",".join(f"{a.rule_id}:{a.points}" for a in awards if a.points > 0)


def parse_awards(text: str) -> list[tuple[str, int]]:
    pairs = []
    for part in filter(None, text.split(",")):
        rule_id, _, points = part.rpartition(":")
        pairs.append((rule_id, int(points)))
    return pairs
