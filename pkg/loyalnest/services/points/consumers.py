"""The events Points applies: user.created (a customer's ledger), Core's settings (the copy
of the program) and webhook.received (orders earning points, customers/create's signup
bonus, newsletter sign-ups from customers/create and customers/update, earning.py; skipped
for a merchant Auth does not know or that uninstalled the app), and its own ledger events
and tier.changed (VIP tiers and their Shopify tags, tiers.py; the liability summary table,
liability.py), and RFM's rfm.updated (each customer's RFM segment, kept for segment-only
rewards: never RFM's tables)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from loyalnest.gen.events.v1 import core_pb2, gateway_pb2, rfm_pb2, users_pb2
from loyalnest.platform.events.consumer import PermanentEventError
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import BatchHandler, EventScope, Handler
from loyalnest.platform.merchants import MerchantGate
from loyalnest.platform.validation import IDENTIFIER_RE
from loyalnest.services.points.earning import (
    CUSTOMER_TOPICS,
    NewsletterSignups,
    OrderEarnings,
    ProgramCopies,
    SignupBonuses,
)
from loyalnest.services.points.liability import LEDGER_MOVEMENTS
from loyalnest.services.points.orders import Order
from loyalnest.services.points.store.base import LedgerStore
from loyalnest.services.points.tiers import ShopifyTags, VipTiers
from loyalnest.services.points.wire import SEGMENTS_BY_PROTO


def handlers(
    store: LedgerStore,
    programs: ProgramCopies,
    orders: OrderEarnings,
    merchants: MerchantGate | None = None,
    signups: SignupBonuses | None = None,
    tiers: VipTiers | None = None,
    tags: ShopifyTags | None = None,
    newsletters: NewsletterSignups | None = None,
    liability: Handler | None = None,
) -> dict[str, Handler]:
    """`liability`: the summary table's handler (store/postgres_liability.py), None on a
    store without one."""

    async def on_user_created(event: ConsumedEvent) -> bool:
        user = event.payload_as(users_pb2.UserCreated)
        if user.kind != users_pb2.USER_KIND_CUSTOMER:
            return True  # staff have no ledger: nothing to apply
        if not IDENTIFIER_RE.match(user.user_id):
            raise PermanentEventError(f"user.created with an invalid user_id {user.user_id!r}")
        # The customer sees a zero balance at once instead of NOT_FOUND until a first earn.
        return await store.open_ledger(event.merchant_id, user.user_id, event=event)

    async def on_settings_updated(event: ConsumedEvent) -> bool:
        settings = event.payload_as(core_pb2.ProgramSettingsUpdated).settings
        # Versioned: a redelivered or older copy changes nothing.
        return await programs.save(event.merchant_id, settings)

    async def on_rfm_updated(event: ConsumedEvent) -> bool:
        scored = event.payload_as(rfm_pb2.RfmUpdated)
        if not IDENTIFIER_RE.match(scored.customer_id):
            raise PermanentEventError(
                f"rfm.updated with an invalid customer {scored.customer_id!r}"
            )
        segment = SEGMENTS_BY_PROTO.get(scored.segment)
        # Newest wins by the event's time: a redelivery or a late older score is a no-op.
        return await store.save_customer_segment(
            event.merchant_id,
            scored.customer_id,
            "" if segment is None else segment.value,
            event.occurred_at,
        )

    found: dict[str, Handler] = {
        "user.created": on_user_created,
        "rfm.updated": on_rfm_updated,
        "program_settings.updated": on_settings_updated,
        "webhook.received": Webhooks(orders, merchants, signups, newsletters),
    }
    # Points' own ledger events: the liability summary table (each event once, through the
    # inbox), then a customer's tier, which goes up as soon as they qualify.
    ledger: dict[str, list[Handler]] = {}
    if liability is not None:
        for event_type in LEDGER_MOVEMENTS:
            ledger.setdefault(event_type, []).append(liability)
    if tiers is not None:
        for event_type in ("points.earned", "points.redeemed", "points.reversed"):
            ledger.setdefault(event_type, []).append(tiers.on_ledger_event)
    for event_type, chain in ledger.items():
        found[event_type] = chain[0] if len(chain) == 1 else _in_turn(chain)
    if tiers is not None or tags is not None:

        async def on_tier_changed(event: ConsumedEvent) -> bool:
            # The entry reward, then the tags: each idempotent, so a redelivery after
            # either failed repeats neither's effect.
            if tiers is not None:
                await tiers.on_tier_changed(event)
            if tags is not None:
                await tags.on_tier_changed(event)
            return True

        found["tier.changed"] = on_tier_changed
    return found


class Webhooks(BatchHandler):
    """webhook.received: the orders, customers' signup bonuses and newsletter sign-ups.

    The consumer hands it a run of events at once (inbox.BatchHandler): its new orders
    are recorded together (OrderEarnings.record_many: their credits set-wise), the other
    events one by one in their place, so the batch's order is kept where it matters (an
    order before its refund). Every write is idempotent on its own key, so a batch applied
    in part and then again one by one repeats nothing.
    """

    def __init__(
        self,
        orders: OrderEarnings,
        merchants: MerchantGate | None,
        signups: SignupBonuses | None,
        newsletters: NewsletterSignups | None,
    ) -> None:
        self._orders = orders
        self._merchants = merchants
        self._signups = signups
        self._newsletters = newsletters

    @property
    def batch_key(self) -> Hashable:
        return self

    async def _allowed(self, event: ConsumedEvent) -> bool:
        # Webhooks name a shop, not a signed-in merchant: one Auth does not know, or that
        # uninstalled the app, earns nothing (acked, counted; loyalnest.platform.merchants).
        # The edge skips most of them already; this catches those published before an
        # uninstall, and edges that do not check.
        return self._merchants is None or await self._merchants.allows(
            event.merchant_id, what=event.event_type
        )

    async def __call__(self, event: ConsumedEvent) -> bool:
        return not await self._allowed(event) or await self._apply(event)

    async def _apply(self, event: ConsumedEvent) -> bool:
        topic = event.payload_as(gateway_pb2.WebhookReceived).topic
        if topic in CUSTOMER_TOPICS:
            # A new customer: the signup bonus; a consent to email marketing: the newsletter
            # rules. Each is idempotent on its own key, so a redelivery repeats neither.
            applied = False
            if self._signups is not None and topic == "customers/create":
                applied = await self._signups.on_webhook(event)
            if self._newsletters is not None:
                applied = await self._newsletters.on_webhook(event) or applied
            return applied
        return await self._orders.on_webhook(event)

    async def apply_many(
        self, items: Sequence[tuple[ConsumedEvent, BatchHandler]], scope: EventScope
    ) -> list[bool]:
        results: list[bool] = [True] * len(items)
        # New orders waiting to be recorded together: (index in items, merchant, order).
        orders: list[tuple[int, str, Order]] = []
        for index, (event, _) in enumerate(items):
            with scope(event):
                allowed = await self._allowed(event)
                order = self._orders.order_to_record(event) if allowed else None
            if order is not None:
                orders.append((index, event.merchant_id, order))
            elif allowed:
                await self._record(orders, results)  # the orders before it go first
                orders = []
                with scope(event):
                    results[index] = await self._apply(event)
        await self._record(orders, results)
        return results

    async def _record(self, orders: Sequence[tuple[int, str, Order]], results: list[bool]) -> None:
        if orders:
            recorded = await self._orders.record_many([(m, order) for _, m, order in orders])
            for (index, _, _), inserted in zip(orders, recorded, strict=True):
                results[index] = inserted


def _in_turn(chain: list[Handler]) -> Handler:
    """Every handler of `chain`, in order: each is idempotent on its own (the summary table
    through the inbox, the tier by recomputing), so a redelivery after one failed repeats
    nothing that was done. True when any applied the event now. A chain led by a
    BatchHandler (the summary table) takes a partition's run at once (InTurn)."""
    leader, *rest = chain
    if isinstance(leader, BatchHandler):
        return InTurn(leader, rest)

    async def handle(event: ConsumedEvent) -> bool:
        applied = False
        for handler in chain:
            applied = await handler(event) or applied
        return applied

    return handle


class InTurn(BatchHandler):
    """`leader`, then each of `rest`, per event; a run of events goes to the leader's
    apply_many first (the summary table's run in one statement), then to the rest one event
    at a time. If any fails the consumer applies the run again event by event, which the
    handlers' idempotency makes safe."""

    def __init__(self, leader: BatchHandler, rest: Sequence[Handler]) -> None:
        self._leader = leader
        self._rest = tuple(rest)

    @property
    def batch_key(self) -> Hashable:
        return (self._leader.batch_key, self._rest)

    async def __call__(self, event: ConsumedEvent) -> bool:
        applied = await self._leader(event)
        for handler in self._rest:
            applied = await handler(event) or applied
        return applied

    async def apply_many(
        self, items: Sequence[tuple[ConsumedEvent, BatchHandler]], scope: EventScope
    ) -> list[bool]:
        events = [event for event, _ in items]
        results = await self._leader.apply_many([(e, self._leader) for e in events], scope)
        for index, event in enumerate(events):
            with scope(event):
                for handler in self._rest:
                    results[index] = await handler(event) or results[index]
        return results
