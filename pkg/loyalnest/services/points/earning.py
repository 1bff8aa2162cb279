"""Earning points from Shopify orders, from `webhook.received` to the customer's ledger.

    orders/create, orders/paid   -> the order is recorded PENDING with the points it earns
                                    under the merchant's program (once per order, whichever
                                    topic and however many deliveries arrive);
    pending period passed        -> APPROVING -> the credit is posted (reason `order:<id>`,
                                    idempotency key `order:<id>`) and the order APPROVED in
                                    one transaction, points.earned;
    no pending period            -> the order is recorded APPROVED with its credit, in one
                                    transaction (store.record_approved_order);
    refunds/create               -> a share of the order's points is taken back;
    orders/cancelled             -> all that is left is taken back.

A take-back recorded while the order is pending reduces its credit; one recorded after the
credit is posted as a reversal (points.reversed), capped at the customer's balance: points
already spent cannot be taken back, which is logged and counted.

Every step is idempotent (the order row, adjustment ids, ledger idempotency keys), so a crash
anywhere is repaired by running the step again: the settlement loop (`run`) does that for
every order with work left, and is also what approves orders when their pending period ends.
The clock is injected so tests can move time instead of waiting for the return window.

The signup bonus (`SignupBonuses`): `customers/create` credits the program's
`signup_bonus_points` once per customer (reason `signup`), whatever the deliveries. A
newsletter sign-up (`NewsletterSignups`): `customers/create` or `customers/update` reporting
email marketing consent turned "subscribed" credits each NEWSLETTER_SIGNUP rule once per
customer (reason `newsletter`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar, cast

from prometheus_client import Counter

from loyalnest.gen.events.v1 import core_pb2, gateway_pb2
from loyalnest.platform.cache import ProcessMemo
from loyalnest.platform.events.consumer import PermanentEventError
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.idempotency import IdempotencyKey, IdempotencyKeyReused
from loyalnest.platform.observability import get_logger
from loyalnest.platform.program_settings import default_program
from loyalnest.platform.shopify_payloads import UnfitBody, read_customer
from loyalnest.services.points.domain import (
    MAX_POINTS_PER_TRANSACTION,
    ActivityResult,
    ActivityStatus,
    InsufficientPoints,
    LedgerNotFound,
    Posting,
    ProgramDisabled,
    TransactionType,
    UnknownActivity,
)
from loyalnest.services.points.ledger import Ledger
from loyalnest.services.points.orders import (
    MalformedOrder,
    Order,
    OrderAdjustment,
    OrderEarning,
    OrderSettlement,
    OrderStatus,
    OrderTotals,
    Refund,
    as_order,
    as_refund,
    cancellation_adjustment,
    order_facts,
    order_reason,
    order_totals,
    refund_adjustment,
    refund_order_id,
)
from loyalnest.services.points.rules import (
    Award,
    Rule,
    RuleEvent,
    RuleSet,
    awards_text,
    parse_awards,
    period_start,
    within_limit,
)
from loyalnest.services.points.store.base import OrderCredit
from loyalnest.services.points.tier_policy import live_tier, live_tier_of

Clock = Callable[[], datetime]

log = get_logger(__name__)
T = TypeVar("T")

ORDERS = Counter(
    "loyalnest_points_orders_total",
    "Orders Points recorded, by outcome (pending, not_earning, no_customer, duplicate).",
    ["outcome"],
)
UNRECOVERED = Counter(
    "loyalnest_points_order_reversal_shortfall_points_total",
    "Points a refund or cancellation could not take back because the customer had spent them.",
)

EARNING_TOPICS = frozenset({"orders/create", "orders/paid"})
SETTLE_BATCH = 100


def utc_now() -> datetime:
    return datetime.now(UTC)


def month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _order_or_refund(
    webhook: gateway_pb2.WebhookReceived,
) -> tuple[gateway_pb2.ShopifyOrder | None, gateway_pb2.ShopifyRefund | None]:
    """The order or refund of the event: `content` (payload version 2, no personal data), else
    the raw JSON body of a version-1 event published before the edge's upgrade."""
    if webhook.HasField("order"):
        return webhook.order, None
    if webhook.HasField("refund"):
        return None, webhook.refund
    payload: Any = json.loads(webhook.body)
    if not isinstance(payload, dict):
        raise MalformedOrder("the body is not a JSON object")
    if webhook.topic == "refunds/create":
        return None, as_refund(payload)
    return as_order(payload), None


class ProgramCopies:
    """Points' copy of each merchant's program (Core's `program_settings.updated`), read
    per order without calling Core: the store holds it, this process remembers it briefly."""

    def __init__(self, ledger: Ledger, *, cache_seconds: float) -> None:
        self._store = ledger.store
        self._cache: ProcessMemo[str, core_pb2.ProgramSettings] = ProcessMemo(cache_seconds)
        self._derived: dict[tuple[str, Callable[[Any], Any]], tuple[object, Any]] = {}

    async def get(self, merchant_id: str) -> core_pb2.ProgramSettings:
        """The merchant's program; Core's default (plan unknown: unlimited) until one arrives."""
        cached = self._cache.get(merchant_id)
        if cached is not None:
            return cached
        raw = await self._store.program_settings(merchant_id)
        settings = default_program() if raw is None else core_pb2.ProgramSettings.FromString(raw)
        self._cache.put(merchant_id, settings)
        return settings

    async def derived(self, merchant_id: str, derive: Callable[[core_pb2.ProgramSettings], T]) -> T:
        """`derive(program)` (a policy read from the settings), computed once per copy of the
        program this process holds rather than on every call that needs it."""
        program = await self.get(merchant_id)
        known = self._derived.get((merchant_id, derive))
        if known is not None and known[0] is program:
            return cast(T, known[1])
        value = derive(program)
        self._derived[(merchant_id, derive)] = (program, value)
        return value

    async def save(self, merchant_id: str, settings: core_pb2.ProgramSettings) -> bool:
        stored = await self._store.save_program_settings(
            merchant_id, settings.version, settings.SerializeToString(deterministic=True)
        )
        self._cache.forget(merchant_id)
        return stored


SIGNUP_REASON = "signup"


class SignupBonuses:
    """The program's `signup_bonus_points`, credited when Shopify reports a new customer."""

    def __init__(self, ledger: Ledger, programs: ProgramCopies) -> None:
        self._ledger = ledger
        self._programs = programs

    async def on_webhook(self, event: ConsumedEvent) -> bool:
        webhook = event.payload_as(gateway_pb2.WebhookReceived)
        if webhook.topic != "customers/create":
            return True
        if webhook.HasField("customer"):
            customer_id = webhook.customer.customer_id
        else:  # a version-1 event: the raw body
            try:
                payload: Any = json.loads(webhook.body)
            except ValueError as exc:
                raise PermanentEventError(f"customers/create {webhook.webhook_id}: {exc}") from exc
            customer_id = str(payload.get("id", "")) if isinstance(payload, dict) else ""
        if not customer_id:
            raise PermanentEventError(f"customers/create {webhook.webhook_id} names no customer")
        return await self.credit(event.merchant_id, customer_id)

    async def credit(self, merchant_id: str, customer_id: str) -> bool:
        """False when the customer had their bonus already, or the program gives none."""
        program = await self._programs.get(merchant_id)
        bonus = program.signup_bonus_points
        if not program.program_enabled or bonus <= 0:
            return False
        posting = Posting(merchant_id, customer_id, TransactionType.EARN, bonus, SIGNUP_REASON)
        # Once per customer: the key's fingerprint leaves out the amount, so a redelivery
        # after the merchant changed the bonus replays the first credit instead of failing.
        key = IdempotencyKey.internal(f"{SIGNUP_REASON}:{customer_id}", customer_id)
        result = await self._ledger.post(posting, key)
        return not result.replayed


NEWSLETTER_REASON = "newsletter"
CUSTOMER_TOPICS = frozenset({"customers/create", "customers/update"})
# Shopify's own "subscribed to email marketing" automations fire only for a consent given
# within the last 24 hours (consentUpdatedAt): the same window tells a sign-up from a later
# update (an address, a tag) of a customer who subscribed long ago.
SIGNUP_WINDOW = timedelta(hours=24)


def newsletter_signup(topic: str, customer: gateway_pb2.ShopifyCustomer) -> bool:
    """Whether this customers/create or customers/update delivery reports the customer
    subscribing to email marketing: state "subscribed", given within SIGNUP_WINDOW of the
    change the delivery reports (the record's updated_at, else created_at). Without a consent
    time, only a new customer (customers/create) counts: an update cannot tell."""
    if customer.email_marketing_state != "subscribed":
        return False
    if not customer.HasField("email_marketing_consent_updated_time"):
        return topic == "customers/create"
    given = customer.email_marketing_consent_updated_time.ToDatetime(UTC)
    if customer.HasField("updated_time"):
        changed = customer.updated_time.ToDatetime(UTC)
    elif customer.HasField("created_time"):
        changed = customer.created_time.ToDatetime(UTC)
    else:
        return topic == "customers/create"
    return abs(changed - given) <= SIGNUP_WINDOW


class NewsletterSignups:
    """NEWSLETTER_SIGNUP rules: a customer's email marketing consent turning "subscribed"
    (Shopify's customers/create or customers/update, through the edge) earns each enabled
    rule's points once per (rule, customer), ever, however often Shopify reports it."""

    def __init__(self, ledger: Ledger, programs: ProgramCopies, *, clock: Clock = utc_now) -> None:
        self._ledger = ledger
        self._programs = programs
        self._clock = clock

    async def on_webhook(self, event: ConsumedEvent) -> bool:
        webhook = event.payload_as(gateway_pb2.WebhookReceived)
        if webhook.topic not in CUSTOMER_TOPICS:
            return True
        if webhook.HasField("customer"):
            customer = webhook.customer
        else:  # a version-1 event: the raw body
            try:
                payload: Any = json.loads(webhook.body)
                if not isinstance(payload, dict):
                    raise UnfitBody("the body is not a JSON object")
                customer = read_customer(payload)
            except ValueError as exc:  # UnfitBody, or a body json cannot parse
                raise PermanentEventError(f"{webhook.topic} {webhook.webhook_id}: {exc}") from exc
        if not customer.customer_id:
            raise PermanentEventError(f"{webhook.topic} {webhook.webhook_id} names no customer")
        if not newsletter_signup(webhook.topic, customer):
            return True
        return await self.credit(event.merchant_id, customer.customer_id) > 0

    async def credit(self, merchant_id: str, customer_id: str) -> int:
        """The rules that credited the customer now (0 when each had before, or none applies)."""
        program = await self._programs.get(merchant_id)
        if not program.program_enabled:
            return 0
        now = self._clock()
        credited = 0
        tier_id: str | None = None
        segment: str | None = None
        store = self._ledger.store
        for rule in program.earning_rules:
            if not rule.enabled or rule.type != core_pb2.EARNING_RULE_TYPE_NEWSLETTER_SIGNUP:
                continue
            parsed = Rule.of(rule)
            if not parsed.active_at(now):
                continue
            # The tier and segment when the sign-up is credited, each read once if asked.
            if parsed.tiers and tier_id is None:
                tier_id = await live_tier(store, program, merchant_id, customer_id, now)
            if parsed.segments and segment is None:
                segment = await store.customer_segment(merchant_id, customer_id)
            if not parsed.eligible(tier_id or "", segment or ""):
                # Nothing posted: outside the tiers, the sign-up earns nothing (a later
                # redelivery, after an upgrade, would find the customer eligible).
                continue
            posting = Posting(
                merchant_id,
                customer_id,
                TransactionType.EARN,
                rule.points,
                NEWSLETTER_REASON,
                rule_id=rule.rule_id,
            )
            # Once per (rule, customer); the amount is left out of the fingerprint, so a
            # redelivery after the merchant changed the points replays the first credit.
            key = IdempotencyKey.internal(f"rule:{rule.rule_id}:{customer_id}", customer_id)
            result = await self._ledger.post(posting, key)
            credited += not result.replayed
        return credited


class Activities:
    """CUSTOM_ACTIVITY rules: an activity a merchant integration reports (RecordActivity)."""

    def __init__(self, ledger: Ledger, orders: OrderEarnings, *, clock: Clock = utc_now) -> None:
        self._ledger = ledger
        self._store = ledger.store
        self._orders = orders
        self._clock = clock

    async def record(
        self,
        merchant_id: str,
        customer_id: str,
        activity: str,
        occurrence: str,
        *,
        occurred_at: datetime | None = None,
        strict: bool = False,
    ) -> list[ActivityResult]:
        """`occurred_at` (default now) picks the rules whose [start, end) window holds it;
        limits count awards when made. `strict` (a signed integration's report): a disabled
        program or an activity no enabled rule names is refused (FAILED_PRECONDITION) rather
        than answered with no awards, so the integration learns it is misconfigured."""
        program = await self._orders.programs.get(merchant_id)
        if not program.program_enabled:
            if strict:
                raise ProgramDisabled(merchant_id)
            return []
        now = self._clock()
        rules = self._orders.rules(merchant_id, program)
        if strict and activity not in rules.activities:
            raise UnknownActivity(activity)
        tier_id = (
            await self._orders.tier_of(merchant_id, customer_id, program, now)
            if rules.activity_tier_aware(activity)
            else ""
        )
        segment = (
            await self._store.customer_segment(merchant_id, customer_id)
            if rules.activity_segment_aware(activity)
            else ""
        )
        matching = rules.activity_rules(activity, occurred_at or now, tier_id, segment)
        since = {r.rule_id: period_start(r.period, now) for r in matching if r.max_awards}
        history = await self._store.rule_events(merchant_id, customer_id, since) if since else {}
        results = []
        for rule in matching:
            past = history.get(rule.rule_id, [])
            seen = any(e.occurrence == occurrence for e in past)
            if not seen and not within_limit(rule, past, now):
                results.append(ActivityResult(rule.rule_id, ActivityStatus.LIMIT_REACHED, 0))
                continue
            posting = Posting(
                merchant_id,
                customer_id,
                TransactionType.EARN,
                rule.points,
                f"activity:{activity}",
                rule_id=rule.rule_id,
            )
            # Once per (rule, customer, occurrence); the amount is left out of the
            # fingerprint, so a retry after the merchant changed the rule replays the award.
            key = IdempotencyKey.internal(
                f"rule:{rule.rule_id}:{customer_id}:{occurrence}", customer_id
            )
            result = await self._ledger.post(posting, key)
            if rule.max_awards:
                # After the credit: a crash in between is healed by the retry, which replays
                # the credit and records this then (a limit may so admit one award too many).
                await self._store.record_rule_events(
                    merchant_id,
                    customer_id,
                    [
                        RuleEvent(
                            rule.rule_id, occurrence, result.transaction.points, Decimal(0), now
                        )
                    ],
                )
            status = ActivityStatus.DUPLICATE if result.replayed else ActivityStatus.AWARDED
            results.append(
                ActivityResult(rule.rule_id, status, result.transaction.points, result.transaction)
            )
        return results


def order_credit(earning: OrderEarning) -> OrderCredit | None:
    """The approved order's ledger credit and its key; None when nothing is left to credit
    (refunded in full while pending, or an order that earns 0)."""
    if earning.approved_points <= 0:
        return None
    posting = Posting(
        earning.merchant_id,
        earning.customer_id,
        TransactionType.EARN,
        earning.approved_points,
        order_reason(earning.order_id),
        rule_id=",".join(rule_id for rule_id, _ in parse_awards(earning.awards)),
    )
    key = IdempotencyKey.internal(
        order_reason(earning.order_id), earning.customer_id, earning.approved_points
    )
    return posting, key


class OrderEarnings:
    def __init__(self, ledger: Ledger, programs: ProgramCopies, *, clock: Clock = utc_now) -> None:
        self._ledger = ledger
        self._store = ledger.store
        self._programs = programs
        self._clock = clock
        self._rule_sets: dict[str, RuleSet] = {}

    @property
    def programs(self) -> ProgramCopies:
        return self._programs

    async def preview(
        self, merchant_id: str, order: gateway_pb2.ShopifyOrder, customer_id: str = ""
    ) -> tuple[OrderTotals, list[Award], str]:
        """What `order` would earn now, its customer's past left out (rules.RuleSet.preview),
        and the customer's tier it applied ("" without a customer or tier)."""
        program = await self._programs.get(merchant_id)
        totals = order_totals(order, program)
        if not program.program_enabled:
            return totals, [], ""
        now = self._clock()
        rules = self.rules(merchant_id, program)
        tier_id = (
            await self.tier_of(merchant_id, customer_id, program, now) if rules.tier_aware else ""
        )
        segment = await self.segment_of(merchant_id, customer_id) if rules.segment_aware else ""
        facts = order_facts(
            order, totals, now, placed_time=rules.windowed, tier_id=tier_id, segment=segment
        )
        return totals, rules.preview(facts), tier_id

    async def tier_of(
        self,
        merchant_id: str,
        customer_id: str,
        program: core_pb2.ProgramSettings,
        now: datetime,
    ) -> str:
        """The customer's VIP tier now ("": none): what tier-only rules and the tier's
        earning multiplier see; not one whose term and grace have ended (tier_policy)."""
        if not customer_id:
            return ""
        return await live_tier(self._store, program, merchant_id, customer_id, now)

    async def segment_of(self, merchant_id: str, customer_id: str) -> str:
        """The customer's RFM segment as Points last heard it from RFM ("": none): what
        segment-only rules see."""
        if not customer_id:
            return ""
        return await self._store.customer_segment(merchant_id, customer_id)

    # ---- webhook.received ------------------------------------------------------------

    async def on_webhook(self, event: ConsumedEvent) -> bool:
        webhook = event.payload_as(gateway_pb2.WebhookReceived)
        if webhook.topic not in EARNING_TOPICS | {"orders/cancelled", "refunds/create"}:
            return True  # another service's topic
        try:
            order, refund = _order_or_refund(webhook)
            if webhook.topic in EARNING_TOPICS:
                if order is None:
                    raise MalformedOrder("the event carries no order")
                return await self.record(event.merchant_id, order)
            if webhook.topic == "refunds/create":
                if refund is None:
                    raise MalformedOrder("the event carries no refund")
                return await self.take_back(event.merchant_id, refund_order_id(refund), refund)
            if order is None or not order.order_id:
                raise MalformedOrder("the order has no id")
            return await self.take_back(event.merchant_id, order.order_id, None)
        except ValueError as exc:  # MalformedOrder, or a body json cannot parse
            # Signed by Shopify yet unreadable: retrying cannot help; the consumer dead-letters.
            raise PermanentEventError(f"{webhook.topic} {webhook.webhook_id}: {exc}") from exc

    @staticmethod
    def order_to_record(event: ConsumedEvent) -> Order | None:
        """The order a `webhook.received` of an earning topic carries, for `record_many`;
        None for any other event, or one on_webhook is to refuse (it says why)."""
        webhook = event.payload_as(gateway_pb2.WebhookReceived)
        if webhook.topic not in EARNING_TOPICS:
            return None
        try:
            order, _ = _order_or_refund(webhook)
        except ValueError:
            return None
        return order

    async def record(self, merchant_id: str, order: Order) -> bool:
        """Records what the order earns; False when it was recorded before."""
        program = await self._programs.get(merchant_id)
        earning = await self._earning(merchant_id, order, program)
        if earning is None:
            return True  # a guest checkout: nobody to credit
        return await self._write(earning)

    async def _write(self, earning: OrderEarning) -> bool:
        if earning.status is OrderStatus.APPROVED:
            stored, inserted = await self._record_approved(earning)
        else:
            stored, inserted = await self._store.record_order(earning)
        return self._counted(earning, stored, inserted)

    async def record_many(self, orders: Sequence[tuple[str, Order]]) -> list[bool]:
        """`record` for each (merchant, order) in turn; those approved on arrival have their
        credits written set-wise (Ledger.record_approved_orders): a partition's batch of
        orders then costs a few round trips, not a few per order."""
        results: list[bool] = [True] * len(orders)
        approved: list[tuple[int, OrderEarning, OrderCredit]] = []
        for index, (merchant_id, order) in enumerate(orders):
            program = await self._programs.get(merchant_id)
            if program.plan.orders_per_month_limit > 0:
                # Its count of the month's orders must see the orders before it.
                await self._record_approved_many(approved, results)
                approved = []
                results[index] = await self.record(merchant_id, order)
                continue
            earning = await self._earning(merchant_id, order, program)
            if earning is None:
                continue  # a guest checkout: True
            credit = order_credit(earning) if earning.status is OrderStatus.APPROVED else None
            if credit is not None:
                approved.append((index, earning, credit))
            else:
                results[index] = await self._write(earning)
        await self._record_approved_many(approved, results)
        return results

    async def _record_approved_many(
        self, approved: Sequence[tuple[int, OrderEarning, OrderCredit]], results: list[bool]
    ) -> None:
        if not approved:
            return
        recorded = await self._ledger.record_approved_orders(
            [(earning, credit) for _, earning, credit in approved]
        )
        for (index, earning, _), answer in zip(approved, recorded, strict=True):
            stored, inserted = answer or await self._record_approved(earning)
            results[index] = self._counted(earning, stored, inserted)

    async def _earning(
        self, merchant_id: str, order: Order, program: core_pb2.ProgramSettings
    ) -> OrderEarning | None:
        """What the order earns under `program`, to be recorded; None for a guest checkout."""
        totals = order_totals(order, program)
        if not totals.customer_id:
            ORDERS.labels("no_customer").inc()
            return None
        now = self._clock()
        note = await self._why_not_earning(merchant_id, program, now)
        awards: list[Award] = []
        if not note:
            awards = await self._awards(merchant_id, as_order(order), totals, program, now)
        points = min(sum(a.points for a in awards), MAX_POINTS_PER_TRANSACTION)
        approve_at = now + program.pending_period.ToTimedelta()
        # No pending period: the order is approved on arrival, its amount fixed as
        # begin_order_approval would fix it (a new order has no adjustments: they need the
        # order's row), and recorded together with its credit (record_approved_order).
        at_once = not note and approve_at <= now
        status = (
            OrderStatus.NOT_EARNING
            if note
            else OrderStatus.APPROVED
            if at_once
            else OrderStatus.PENDING
        )
        return OrderEarning(
            merchant_id=merchant_id,
            order_id=totals.order_id,
            customer_id=totals.customer_id,
            points=points,
            eligible_amount=totals.eligible_amount,
            currency=totals.currency,
            status=status,
            approve_at=approve_at,
            created_at=now,
            settings_version=program.version,
            note=note,
            approved_points=points if at_once else 0,
            awards=awards_text(awards),
            weighted_amount=totals.weighted,
            pos=as_order(order).source_name == "pos",
        )

    @staticmethod
    def _counted(earning: OrderEarning, stored: OrderEarning, inserted: bool) -> bool:
        # An order credited at once still counts as "pending" (it earns; the period was 0).
        outcome = "pending" if earning.status is OrderStatus.APPROVED else stored.status.value
        ORDERS.labels(outcome if inserted else "duplicate").inc()
        return inserted

    async def _record_approved(self, earning: OrderEarning) -> tuple[OrderEarning, bool]:
        try:
            return await self._ledger.record_approved_order(earning, order_credit(earning))
        except IdempotencyKeyReused:
            # The order's key was used for another amount (nothing was written): recorded
            # APPROVING, as before approvals were folded in; the settlement loop owns it.
            log.warning("order credit key reused; settled later", order_id=earning.order_id)
            return await self._store.record_order(
                dataclasses.replace(earning, status=OrderStatus.APPROVING)
            )

    def rules(self, merchant_id: str, program: core_pb2.ProgramSettings) -> RuleSet:
        """The merchant's rules compiled, once per settings version."""
        cached = self._rule_sets.get(merchant_id)
        if cached is None or cached.version != program.version:
            cached = self._rule_sets[merchant_id] = RuleSet.of(program)
        return cached

    async def _awards(
        self,
        merchant_id: str,
        order: gateway_pb2.ShopifyOrder,
        totals: OrderTotals,
        program: core_pb2.ProgramSettings,
        now: datetime,
    ) -> list[Award]:
        rules = self.rules(merchant_id, program)
        if rules.base_only:  # the common program: nothing to evaluate, nothing to record
            return rules.base_awards(totals.points)
        customer_id = totals.customer_id
        since = {r.rule_id: r.history_since(now) for r in rules.order_rules() if r.keeps_history}
        history: dict[str, list[RuleEvent]] = {}
        if rules.tier_aware and customer_id and since:
            # The tier row and the rule history in one round trip, not one each.
            history, state = await self._store.rule_events_and_tier(merchant_id, customer_id, since)
            tier_id = await live_tier_of(self._store, program, merchant_id, customer_id, state, now)
        else:
            tier_id = (
                await self.tier_of(merchant_id, customer_id, program, now)
                if rules.tier_aware
                else ""
            )
            # Only rules that depend on the customer's past cost a read; plain rates none.
            if since:
                history = await self._store.rule_events(merchant_id, customer_id, since)
        segment = await self.segment_of(merchant_id, customer_id) if rules.segment_aware else ""
        facts = order_facts(
            order, totals, now, placed_time=rules.windowed, tier_id=tier_id, segment=segment
        )
        awards = rules.order_awards(facts, history, now)
        events = [a.event for a in awards if a.event is not None]
        # Before the order: a crash in between is redone by the redelivery, which finds
        # these decisions (its own occurrence) and reuses them.
        await self._store.record_rule_events(merchant_id, totals.customer_id, events)
        return awards

    async def _why_not_earning(
        self, merchant_id: str, program: core_pb2.ProgramSettings, now: datetime
    ) -> str:
        if not program.program_enabled:
            return "program_disabled"
        limit = program.plan.orders_per_month_limit
        if limit > 0 and await self._store.count_orders(merchant_id, month_start(now)) >= limit:
            # Core has warned the merchant at 80 % and 100 % (plan_limit_warning).
            log.info("order over the plan's monthly limit earns nothing", limit=limit)
            return "over_plan_limit"
        return ""

    async def take_back(self, merchant_id: str, order_id: str, refund: Refund | None) -> bool:
        settlement = await self._store.order_settlement(merchant_id, order_id)
        if settlement is None:
            # Nothing was recorded for it (a guest order, or one from before the app).
            return True
        earning = settlement.earning
        wanted = (
            cancellation_adjustment(earning)
            if refund is None
            else refund_adjustment(refund, earning)
        )
        recorded = await self._store.add_order_adjustment(merchant_id, order_id, wanted)
        if recorded is None or recorded.applied:
            return False
        if earning.status in (OrderStatus.APPROVING, OrderStatus.APPROVED):
            await self.settle(await self._store.order_settlement(merchant_id, order_id))
        return True

    # ---- settlement ------------------------------------------------------------------

    async def settle(self, settlement: OrderSettlement | None) -> None:
        """Takes one order as far as it can go now; safe to repeat."""
        if settlement is None:
            return
        earning = settlement.earning
        if earning.status is OrderStatus.PENDING:
            if earning.approve_at > self._clock():
                return
            settlement = await self._store.begin_order_approval(
                earning.merchant_id, earning.order_id
            )
            if settlement is None:
                return
            earning = settlement.earning
        if earning.status is OrderStatus.APPROVING:
            await self._ledger.approve_order(
                earning.merchant_id, earning.order_id, order_credit(earning)
            )
        if earning.status in (OrderStatus.APPROVING, OrderStatus.APPROVED):
            for adjustment in settlement.unapplied:
                await self._reverse(earning, adjustment)

    async def _reverse(self, earning: OrderEarning, adjustment: OrderAdjustment) -> None:
        reason = f"{order_reason(earning.order_id)}:{adjustment.reason}"
        name = f"{order_reason(earning.order_id)}:{adjustment.adjustment_id}"
        points = adjustment.points
        if points > 0:
            try:
                balance = await self._ledger.store.get_balance(
                    earning.merchant_id, earning.customer_id
                )
            except LedgerNotFound:
                balance = None
            available = 0 if balance is None else balance.balance
            if available < points:
                UNRECOVERED.inc(points - available)
                log.warning(
                    "points of a refunded order were spent already",
                    order_id=earning.order_id,
                    wanted=points,
                    taken=available,
                )
                points = available
        if points > 0:
            posting = Posting(
                earning.merchant_id, earning.customer_id, TransactionType.REVERSAL, -points, reason
            )
            try:
                await self._ledger.post(
                    posting, IdempotencyKey.internal(name, earning.customer_id, points)
                )
            except IdempotencyKeyReused:
                # Posted before with the amount the balance allowed then; not again.
                pass
            except InsufficientPoints:
                return  # spent in between: the next settlement pass takes what is left
        await self._store.mark_adjustment_applied(
            earning.merchant_id, earning.order_id, adjustment.adjustment_id
        )

    async def settle_due(self) -> int:
        """Settles up to SETTLE_BATCH orders with work left; how many it found."""
        batch = await self._store.orders_to_settle(self._clock(), SETTLE_BATCH)
        for settlement in batch:
            try:
                await self.settle(settlement)
            except Exception:
                # One order that cannot settle (its credit key used for another amount) must
                # not hold back the others: the batch is oldest first, so it would every pass.
                log.exception("settling an order failed", order_id=settlement.earning.order_id)
        return len(batch)

    async def run(self, interval_seconds: float) -> None:
        """The settlement loop: approves orders whose pending period ended, repairs steps a
        crash interrupted. A full batch means more are waiting: the next pass starts at once.
        Errors (a database restart) are logged and the pass retried after the interval."""
        while True:
            try:
                full = await self.settle_due() >= SETTLE_BATCH
            except Exception:
                log.exception("settling orders failed; retrying next pass")
                full = False
            if not full:
                await asyncio.sleep(interval_seconds)
