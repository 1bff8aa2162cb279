"""The interface every ledger store implements; tests/contract runs against each one."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from google.protobuf.message import Message

from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.personal_data import CustomerExport, CustomerRef
from loyalnest.services.points.domain import (
    Balance,
    Posting,
    PostingResult,
    Redemption,
    RedemptionGuard,
    RedemptionStatus,
    Reward,
    TierInput,
    TierState,
    Transaction,
)
from loyalnest.services.points.liability import LiabilityFigures
from loyalnest.services.points.orders import OrderAdjustment, OrderEarning, OrderSettlement
from loyalnest.services.points.rules import RuleEvent

# An order's credit: the ledger posting and its idempotency key (earning.order_credit).
OrderCredit = tuple[Posting, IdempotencyKey]
# What record_approved_order answers: the stored order, inserted, the credit's result.
RecordedOrder = tuple[OrderEarning, bool, PostingResult | None]

# The reward fields update_reward may change (customer_limit is limit_max and limit_period).
REWARD_UPDATABLE = frozenset(
    {
        "name",
        "kind",
        "value",
        "points_cost",
        "active",
        "min_subtotal",
        "product_ids",
        "collection_ids",
        "code_expiry_days",
        "limit_max",
        "limit_period",
        "tier_ids",
        "variant_id",
        "channels",
        "eligible_segments",
    }
)


# Every table (collection) with merchant rows, children before the rows they reference:
# erase_merchant empties them for the merchant.
MERCHANT_TABLES = (
    "customer_segments",
    "integrations",
    "liability_totals",
    "liability_counted",
    "tier_job_progress",
    "rule_events",
    "customer_tiers",
    "points_expiry_notices",
    "order_adjustments",
    "order_earnings",
    "reward_redemptions",
    "rewards",
    "points_transactions",
    "ledgers",
    "program_settings_copies",
)
# The tables (collections) keyed by customer besides the ledger: erase_customer moves their
# rows to the anonymous id (tests/unit/test_personal_data_contract.py: the spec's tables).
CUSTOMER_TABLES = (
    "points_transactions",
    "reward_redemptions",
    "order_earnings",
    "customer_tiers",
    "rule_events",
    "points_expiry_notices",
)
ERASED_PREFIX = "erased:"


def erased_customer_id() -> str:
    """A random anonymous id: where the erasure's own (CustomerRef.anonymous_id) is taken."""
    return ERASED_PREFIX + uuid.uuid4().hex


def reward_columns(changes: Mapping[str, object]) -> dict[str, object]:
    """update_reward's changes as stored values (enums as their strings)."""
    unknown = set(changes) - REWARD_UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    return {k: _stored(v) for k, v in changes.items()}


def _stored(value: object) -> object:
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, tuple):
        # An array (PostgreSQL), a list (MongoDB); enum items (channels) as their strings.
        return [str(v) if isinstance(v, StrEnum) else v for v in value]
    return value


def reward_row(reward: Reward) -> dict[str, object]:
    """Every field of `reward` as stored (enums as their strings, tuples as lists)."""
    return {f.name: _stored(getattr(reward, f.name)) for f in fields(Reward)}


class LedgerStore(Protocol):
    async def get_balance(self, merchant_id: str, customer_id: str) -> Balance:
        """Raises LedgerNotFound when the customer has no ledger."""
        ...

    async def post(self, posting: Posting, key: IdempotencyKey) -> PostingResult:
        """Applies `posting` atomically, at most once per (merchant, key), and enqueues its
        event (events.ledger_event) in the outbox in the same transaction.

        Raises LedgerNotFound for a debit on a customer without a ledger,
        InsufficientPoints when a debit would overdraw, IdempotencyKeyReused when `key`
        was used with other parameters. Returns the first result on a replay.
        """
        ...

    async def open_ledger(
        self, merchant_id: str, customer_id: str, *, event: ConsumedEvent
    ) -> bool:
        """Opens an empty ledger unless one exists, at most once per consumed event.

        False when `event` was applied before (by its consumer group).
        """
        ...

    async def list_transactions(
        self, merchant_id: str, customer_id: str, *, limit: int, before_sequence: int | None
    ) -> list[Transaction]:
        """Newest first. Raises LedgerNotFound when the customer has no ledger."""
        ...

    async def ping(self) -> None:
        """Raises when the backing database does not answer."""
        ...

    # ---- personal data (loyalnest.platform.personal_data) -------------------------------

    async def export_customer(self, merchant_id: str, customer: CustomerRef) -> CustomerExport:
        """The customer's ledger, transactions, redemptions and orders."""
        ...

    async def erase_customer(self, merchant_id: str, customer: CustomerRef) -> int:
        """Moves the customer's ledger and its history to the erasure's anonymous id
        (`customer.anonymous_id`; `erased_customer_id()` if a ledger has it already): amounts
        kept, identity gone. Idempotent (a repeat finds nothing)."""
        ...

    async def erase_merchant(self, merchant_id: str) -> int:
        """Deletes everything of the merchant."""
        ...

    # ---- rewards catalog and redemptions ------------------------------------------------

    async def create_reward(self, reward: Reward, fingerprint: str) -> Reward:
        """Inserts `reward` (its id is derived from the create call's idempotency key).

        If the id exists, the call is a retry: returns the stored reward, or raises
        IdempotencyKeyReused when it was created from other parameters (`fingerprint`).
        """
        ...

    async def get_reward(self, merchant_id: str, reward_id: str) -> Reward:
        """Raises RewardNotFound."""
        ...

    async def update_reward(
        self, merchant_id: str, reward_id: str, changes: Mapping[str, object]
    ) -> Reward:
        """Sets `changes` (keys in REWARD_UPDATABLE) and updated_at. Raises RewardNotFound."""
        ...

    async def list_rewards(
        self, merchant_id: str, *, active_only: bool, limit: int, offset: int
    ) -> list[Reward]:
        """Oldest first (created_at, then reward_id)."""
        ...

    async def record_redemption(self, redemption: Redemption) -> Redemption:
        """Inserts `redemption` unless one with its id exists; returns the stored one."""
        ...

    async def redeem(
        self, posting: Posting, key: IdempotencyKey, reward: Reward, guard: RedemptionGuard
    ) -> tuple[PostingResult, Redemption]:
        """A reward's debit (`posting`) and its PENDING redemption (id: the debit's
        transaction id; expiry from the reward), atomically, at most once per key.

        On a first call only: raises `guard.refusal` if set, then, under the customer's
        ledger lock, RedemptionLimitReached when the customer has `guard.limit_max`
        redemptions of the reward (pending or completed) since `guard.since`; concurrent
        redemptions of one customer queue on that lock, so none slips past the limit. A
        retry with the same key returns the first call's debit and redemption. A limit
        the store cannot enforce atomically: RedemptionLimitUnsupported.
        """
        ...

    async def redemption_counts(
        self, merchant_id: str, customer_id: str, since: Mapping[str, datetime]
    ) -> dict[str, int]:
        """Per reward id in `since`: the customer's redemptions of it (pending or completed)
        from that time on."""
        ...

    async def finish_redemption(
        self,
        merchant_id: str,
        redemption_id: str,
        *,
        status: RedemptionStatus,
        discount_code: str = "",
        failure: str = "",
        from_status: RedemptionStatus = RedemptionStatus.PENDING,
        gift_card_id: str = "",
        gift_card_last_characters: str = "",
    ) -> Redemption:
        """Moves a redemption in `from_status` (pending) to `status`; one in another status is
        returned unchanged. Empty code and gift card fields keep what is stored."""
        ...

    async def get_redemption(self, merchant_id: str, redemption_id: str) -> Redemption:
        """Raises NotFound."""
        ...

    # ---- earning from orders (see points/earning.py) ------------------------------------

    async def save_program_settings(self, merchant_id: str, version: int, settings: bytes) -> bool:
        """Keeps the merchant's serialized ProgramSettings unless the copy held is of
        `version` or newer. True when stored."""
        ...

    async def program_settings(self, merchant_id: str) -> bytes | None: ...

    async def program_copies(self) -> list[tuple[str, bytes]]:
        """Every merchant's program copy (merchant_id, serialized ProgramSettings)."""
        ...

    # ---- earning rules (see points/rules.py) ---------------------------------------------

    async def rule_events(
        self, merchant_id: str, customer_id: str, since: Mapping[str, datetime]
    ) -> dict[str, list[RuleEvent]]:
        """The customer's events of each rule in `since` from that time on, oldest first."""
        ...

    async def rule_events_and_tier(
        self, merchant_id: str, customer_id: str, since: Mapping[str, datetime]
    ) -> tuple[dict[str, list[RuleEvent]], TierState | None]:
        """rule_events and customer_tier in one read: a tier-aware order with history rules."""
        ...

    async def record_rule_events(
        self, merchant_id: str, customer_id: str, events: Sequence[RuleEvent]
    ) -> None:
        """Inserts each event unless its (rule, occurrence) is recorded (then keeps that one)."""
        ...

    # ---- VIP tiers (see points/tiers.py) ---------------------------------------------------

    async def customer_tier(self, merchant_id: str, customer_id: str) -> TierState | None: ...

    # ---- RFM segments (rfm.updated; RFM-segment eligibility) ----------------------------

    async def save_customer_segment(
        self, merchant_id: str, customer_id: str, segment: str, at: datetime
    ) -> bool:
        """Keeps `segment` ("" none) as the customer's, unless one scored at `at` or later is
        held: a redelivered or late event changes nothing. False when nothing changed."""
        ...

    async def customer_segment(self, merchant_id: str, customer_id: str) -> str:
        """The customer's RFM segment as last heard ("": none, or never heard)."""
        ...

    async def save_tier(
        self,
        merchant_id: str,
        customer_id: str,
        expected: TierState | None,
        new: TierState,
        event: Message | None,
    ) -> bool:
        """Stores `new` if the customer's state is still `expected` (None: no state yet),
        enqueuing `event` with it. False when another write came first."""
        ...

    async def ledger_customers(self, merchant_id: str, after: str, limit: int) -> list[str]:
        """Every customer of the merchant with a ledger, by customer_id, after `after`."""
        ...

    async def tier_inputs(
        self, merchant_id: str, after: str, limit: int, since: datetime | None
    ) -> list[TierInput]:
        """A page of the merchant's ledgers (by customer_id, after `after`): each customer's
        domain.net_totals from `since` (None: ever) and stored tier state, in one read."""
        ...

    async def customer_tier_input(
        self, merchant_id: str, customer_id: str, since: datetime | None
    ) -> TierInput:
        """One customer's tier_inputs: domain.net_totals from `since` (None: ever) and the
        stored tier state, in one read (LedgerNotFound without a ledger)."""
        ...

    async def tier_job_cursor(self, merchant_id: str) -> str | None:
        """Where an unfinished tier job run for the merchant stopped (None: none)."""
        ...

    async def save_tier_job_cursor(self, merchant_id: str, after: str | None) -> None:
        """Records the run's progress; None: the run finished (the cursor goes)."""
        ...

    async def ledger_openings(
        self, merchant_id: str, after: str, limit: int
    ) -> list[tuple[str, datetime]]:
        """(customer_id, when the ledger was opened) of the merchant's ledgers, by
        customer_id, after `after`: when each customer joined the program (anniversaries)."""
        ...

    # ---- points liability (see points/liability.py) ---------------------------------------

    async def liability(
        self, merchant_id: str, now: datetime, horizon_days: int
    ) -> LiabilityFigures:
        """The merchant's open lots (FIFO) at `now` by age and tier, and the breakage of the
        lots earned `horizon_days` or more before `now`. LiabilityUnsupported where the store
        cannot (MongoDB)."""
        ...

    # ---- points expiry (see points/expiry.py) -------------------------------------------

    async def customers_with_points(self, merchant_id: str, after: str, limit: int) -> list[str]:
        """Customers of the merchant with a positive balance, by customer_id, after `after`."""
        ...

    async def expiry_candidates(
        self, merchant_id: str, after: str, limit: int, cutoff: datetime, after_inactivity: bool
    ) -> tuple[str, list[str]]:
        """A page of `limit` customers with a positive balance after `after`: (the page's last
        customer, "" when the page was not full; those of the page whose points may expire
        or be noticed at `cutoff` = now - life + notice). A superset is allowed (the job
        decides from the whole ledger): after earned, a balance larger than the credits
        earned after `cutoff` (debits take the oldest lots first, so the rest are older);
        after inactivity, no earn or redemption after `cutoff`."""
        ...

    async def record_expiry_notice(
        self, merchant_id: str, customer_id: str, expire_at: datetime, event: Message
    ) -> bool:
        """Enqueues `event` (points.expiring) unless a notice for this customer and expiry
        time was recorded before, atomically with recording it. True when enqueued."""
        ...

    async def record_order(self, earning: OrderEarning) -> tuple[OrderEarning, bool]:
        """Inserts `earning` unless the merchant's order has one: (the stored one, inserted)."""
        ...

    async def orders_since(
        self, merchant_id: str, since: datetime, limit: int
    ) -> list[OrderEarning]:
        """The merchant's orders recorded since `since` that earn points (not NOT_EARNING),
        oldest first (created_at, then order_id), at most `limit`."""
        ...

    async def count_orders(self, merchant_id: str, since: datetime) -> int:
        """The merchant's orders recorded since `since` that earn points (not NOT_EARNING)."""
        ...

    async def add_order_adjustment(
        self, merchant_id: str, order_id: str, adjustment: OrderAdjustment
    ) -> OrderAdjustment | None:
        """Records `adjustment` unless the order has one with its id (then returns that one),
        capping its points at what the order still holds (points less earlier adjustments).
        None when the order is unknown."""
        ...

    async def order_settlement(self, merchant_id: str, order_id: str) -> OrderSettlement | None: ...

    async def orders_to_settle(self, now: datetime, limit: int) -> list[OrderSettlement]:
        """Orders with work left: PENDING and due at `now`, APPROVING, or APPROVED with
        adjustments not yet applied. Oldest approve_at first."""
        ...

    async def begin_order_approval(self, merchant_id: str, order_id: str) -> OrderSettlement | None:
        """Moves a PENDING order to APPROVING: fixes approved_points to its points less every
        adjustment recorded so far and marks those applied, atomically, so an adjustment is
        either in the credit or reversed after it, never both or neither. Returns the order
        (unchanged if it was not PENDING), None when unknown."""
        ...

    async def approve_order(
        self, merchant_id: str, order_id: str, credit: OrderCredit | None
    ) -> PostingResult | None:
        """APPROVING -> APPROVED with the order's credit posted (as `post`: idempotent, a
        replay when its key was recorded before), in one transaction where the store has
        them: a crash leaves the order APPROVING for the settlement loop, never APPROVED
        without its credit. The credit's result (None without one)."""
        ...

    async def record_approved_order(
        self, earning: OrderEarning, credit: OrderCredit | None
    ) -> RecordedOrder:
        """An order approved on arrival (no pending period; `earning` is APPROVED, its
        approved_points fixed): inserts it and posts its credit together, in one transaction
        where the store has them. (the stored order, inserted, the credit's result);
        (the stored one, False, None) when the merchant's order was recorded before, nothing
        written then. Without transactions the order is recorded APPROVING first, so a crash
        before the credit leaves it to the settlement loop."""
        ...

    async def record_approved_orders(
        self, items: Sequence[tuple[OrderEarning, OrderCredit]]
    ) -> list[RecordedOrder | None]:
        """record_approved_order for many new orders at once, where the store can write them
        set-wise (a partition's batch of webhooks): per item what record_approved_order
        answers, or None for one it did not record, which the caller records with
        record_approved_order (recorded before, its key claimed before, or a store without
        a set-wise path)."""
        ...

    async def mark_adjustment_applied(
        self, merchant_id: str, order_id: str, adjustment_id: str
    ) -> None: ...


# The pages of ledger_history (and the most the expiry job reads in one go).
HISTORY_PAGE = 1000


async def ledger_history(
    store: LedgerStore, merchant_id: str, customer_id: str
) -> list[Transaction]:
    """The customer's whole ledger, oldest first (LedgerNotFound without one)."""
    pages: list[Transaction] = []
    before: int | None = None
    while True:
        page = await store.list_transactions(
            merchant_id, customer_id, limit=HISTORY_PAGE, before_sequence=before
        )
        pages.extend(page)
        if len(page) < HISTORY_PAGE:
            break
        before = page[-1].sequence
    pages.reverse()
    return pages
