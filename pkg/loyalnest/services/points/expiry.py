"""Points expiry: the merchant's `points_expiry_days`, applied as ledger transactions.

Earned points form lots (each credit of the ledger: an earn, a positive adjustment or reversal,
dated by its transaction); every debit (a redemption, a negative adjustment or reversal, an
earlier expiry) consumes the oldest lots first (FIFO). The lots are derived from the ledger's
own history, so both ledger stores hold them without a table of their own, and a lot can never
disagree with the transactions.

    after earned (default)  a lot expires `points_expiry_days` after it was earned;
    after inactivity        the whole balance expires `points_expiry_days` after the customer's
                            last activity (an earn or a redemption).

The job (`loyalnest points expire`, the chart's CronJob, `PointsExpiry.run`) posts, per
customer, one `expire` transaction (points.expired) for what is due. It is idempotent: the
posting's key names the ledger sequence it was computed from and the posting applies only if
the ledger is still at that sequence (`Posting.expected_sequence`), so two runs at once post
once, and a redemption racing the job makes the job's posting fail (it is redone next run)
instead of expiring points the redemption already spent. After expiring, it publishes
`points.expiring` once per customer and expiry time when the next lot expires within the
program's notice period (`points_expiry_notice_days`), which the balance RPC also shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Counter

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.platform.idempotency import IdempotencyKey, IdempotencyKeyReused
from loyalnest.platform.observability import get_logger
from loyalnest.services.points.domain import (
    Expiring,
    InsufficientPoints,
    LedgerMoved,
    LedgerNotFound,
    Posting,
    Transaction,
    TransactionType,
)
from loyalnest.services.points.earning import Clock, ProgramCopies, utc_now
from loyalnest.services.points.events import expiring_event
from loyalnest.services.points.ledger import Ledger
from loyalnest.services.points.store.base import HISTORY_PAGE, LedgerStore, ledger_history

log = get_logger(__name__)

EXPIRED = Counter("loyalnest_points_expired_points_total", "Points the expiry job took back.")
SKIPPED = Counter(
    "loyalnest_points_expiry_skipped_total",
    "Customers whose expiry was left to the next run: their ledger changed meanwhile.",
)
NOTICES = Counter("loyalnest_points_expiring_notices_total", "points.expiring events published.")

# Activity that keeps points alive under expiry after inactivity: the customer's own doing.
_ACTIVITY = frozenset({TransactionType.EARN, TransactionType.REDEEM})
CUSTOMER_PAGE = 2000
# The balance read walks the ledger newest first in pages this size, and usually stops early.
RECENT_PAGE = 100


@dataclass(frozen=True)
class Lot:
    earned_at: datetime
    points: int  # what is left of it


@dataclass(frozen=True)
class ExpiryPolicy:
    days: int
    after_inactivity: bool
    notice_days: int

    @classmethod
    def of(cls, program: core_pb2.ProgramSettings) -> ExpiryPolicy:
        return cls(
            days=max(program.points_expiry_days, 0),
            after_inactivity=(
                program.points_expiry_mode == core_pb2.POINTS_EXPIRY_MODE_AFTER_INACTIVITY
            ),
            notice_days=max(program.points_expiry_notice_days, 0),
        )

    @property
    def enabled(self) -> bool:
        return self.days > 0

    @property
    def reason(self) -> str:
        """The expire transaction's reason, as the customer's history shows it."""
        if self.after_inactivity:
            return f"expired: {self.days} days without activity"
        return f"expired: {self.days} days after earned"

    @property
    def life(self) -> timedelta:
        return timedelta(days=self.days)


def open_lots(history: Iterable[Transaction]) -> list[Lot]:
    """What is left of each credit, oldest first; `history` in ledger order (sequence)."""
    lots: list[Lot] = []
    for t in history:
        if t.points > 0:
            lots.append(Lot(t.created_at, t.points))
            continue
        owed = -t.points
        while owed and lots:
            head = lots[0]
            taken = min(head.points, owed)
            owed -= taken
            if taken == head.points:
                lots.pop(0)
            else:
                lots[0] = Lot(head.earned_at, head.points - taken)
    return lots


def last_activity(history: Sequence[Transaction]) -> datetime | None:
    return max((t.created_at for t in history if t.type in _ACTIVITY), default=None)


def _expiries(history: Sequence[Transaction], policy: ExpiryPolicy) -> list[Expiring]:
    """Every lot left with the time it expires, soonest first."""
    lots = open_lots(history)
    if not policy.enabled or not lots:
        return []
    if policy.after_inactivity:
        active = last_activity(history) or lots[-1].earned_at
        return [Expiring(sum(lot.points for lot in lots), active + policy.life)]
    return [Expiring(lot.points, lot.earned_at + policy.life) for lot in lots]


def due(history: Sequence[Transaction], policy: ExpiryPolicy, now: datetime) -> int:
    """The points that have expired at `now`."""
    return sum(e.points for e in _expiries(history, policy) if e.at <= now)


def upcoming(
    history: Sequence[Transaction], policy: ExpiryPolicy, now: datetime
) -> Expiring | None:
    """The next points to expire after `now` if that falls within the notice period: the
    soonest expiry time and every point expiring at it."""
    if policy.notice_days <= 0:
        return None
    later = [e for e in _expiries(history, policy) if e.at > now]
    if not later or later[0].at > now + timedelta(days=policy.notice_days):
        return None
    soonest = later[0].at
    return Expiring(sum(e.points for e in later if e.at == soonest), soonest)


async def recent_history(
    store: LedgerStore, merchant_id: str, customer_id: str, policy: ExpiryPolicy, now: datetime
) -> list[Transaction]:
    """The newest part of the ledger that decides what expires after `now`, newest first.

    Debits consume the oldest lots first, so the open lots are the newest credits that add up
    to the balance (the oldest of them partly spent): after earned, the walk stops there, or
    at the first credit earned `policy.life` ago or earlier (its lot and every older one has
    expired by `now`); after inactivity, at the customer's last activity with the balance
    covered. A customer with a long history reads a page or two instead of all of it
    (GetPointsBalance with expiry on; the job still reads the whole ledger).
    """
    found: list[Transaction] = []
    before: int | None = None
    horizon = now - policy.life
    credits = 0
    active = False
    limit = RECENT_PAGE
    while True:
        page = await store.list_transactions(
            merchant_id, customer_id, limit=limit, before_sequence=before
        )
        for t in page:
            found.append(t)
            balance = found[0].balance_after
            if balance <= 0:
                return found
            if t.points > 0:
                credits += t.points
            active = active or t.type in _ACTIVITY
            if policy.after_inactivity:
                if active and credits >= balance:
                    return found
            elif credits >= balance or (t.points > 0 and t.created_at <= horizon):
                return found
        if len(page) < limit:
            return found
        before = page[-1].sequence
        # Most walks end in the first page; a long one (lots open over a year) takes bigger ones.
        limit = min(limit * 4, HISTORY_PAGE)


def upcoming_from_recent(
    recent: Sequence[Transaction], policy: ExpiryPolicy, now: datetime
) -> Expiring | None:
    """`upcoming` from `recent_history`'s newest-first part of the ledger."""
    if policy.notice_days <= 0 or not recent or recent[0].balance_after <= 0:
        return None
    balance = recent[0].balance_after
    lots: list[Lot] = []  # newest first
    left = balance
    for t in recent:
        if t.points > 0 and left > 0:
            lots.append(Lot(t.created_at, min(t.points, left)))
            left -= lots[-1].points
    if not lots:
        return None
    if policy.after_inactivity:
        active = next((t.created_at for t in recent if t.type in _ACTIVITY), lots[0].earned_at)
        expiries = [Expiring(balance, active + policy.life)]
    else:
        expiries = [Expiring(lot.points, lot.earned_at + policy.life) for lot in reversed(lots)]
    return _soonest_within_notice(expiries, policy, now)


def _soonest_within_notice(
    expiries: Sequence[Expiring], policy: ExpiryPolicy, now: datetime
) -> Expiring | None:
    later = [e for e in expiries if e.at > now]
    if not later or later[0].at > now + timedelta(days=policy.notice_days):
        return None
    soonest = later[0].at
    return Expiring(sum(e.points for e in later if e.at == soonest), soonest)


@dataclass
class ExpiryReport:
    customers: int = 0
    expired_points: int = 0
    expired_customers: int = 0
    notices: int = 0
    skipped: int = 0


class PointsExpiry:
    def __init__(self, ledger: Ledger, programs: ProgramCopies, *, clock: Clock = utc_now) -> None:
        self._ledger = ledger
        self._store = ledger.store
        self._programs = programs
        self._clock = clock

    async def _history(self, merchant_id: str, customer_id: str) -> list[Transaction]:
        return await ledger_history(self._store, merchant_id, customer_id)

    async def expiring(self, merchant_id: str, customer_id: str) -> Expiring | None:
        """What the balance shows as expiring soon (None when nothing is, or expiry is off)."""
        policy = await self._programs.derived(merchant_id, ExpiryPolicy.of)
        if not policy.enabled or policy.notice_days <= 0:
            return None
        now = self._clock()
        try:
            recent = await recent_history(self._store, merchant_id, customer_id, policy, now)
        except LedgerNotFound:
            return None
        return upcoming_from_recent(recent, policy, now)

    async def expire_customer(
        self, merchant_id: str, customer_id: str, policy: ExpiryPolicy, report: ExpiryReport
    ) -> None:
        now = self._clock()
        history = await self._history(merchant_id, customer_id)
        report.customers += 1
        points = due(history, policy, now)
        if points > 0:
            sequence = history[-1].sequence
            posting = Posting(
                merchant_id,
                customer_id,
                TransactionType.EXPIRE,
                -points,
                policy.reason,
                expected_sequence=sequence,
            )
            # Per customer: a merchant's idempotency keys are one namespace, and customers at
            # the same sequence are the rule (a key of the sequence alone let one of them
            # expire and the others fail as a reused key, every run).
            key = IdempotencyKey.internal(f"expire:{customer_id}:{sequence}", customer_id, points)
            try:
                result = await self._ledger.post(posting, key)
            except (LedgerMoved, InsufficientPoints, IdempotencyKeyReused):
                # Changed since read (a redemption, a concurrent run): next run recomputes.
                SKIPPED.inc()
                report.skipped += 1
                return
            if not result.replayed:
                EXPIRED.inc(points)
                report.expired_points += points
                report.expired_customers += 1
            history.append(result.transaction)
        notice = upcoming(history, policy, now)
        if notice is not None and await self._store.record_expiry_notice(
            merchant_id,
            customer_id,
            notice.at,
            expiring_event(customer_id, notice.points, notice.at, history[-1].balance_after),
        ):
            NOTICES.inc()
            report.notices += 1

    async def run_merchant(
        self, merchant_id: str, report: ExpiryReport | None = None
    ) -> ExpiryReport:
        report = report or ExpiryReport()
        policy = await self._programs.derived(merchant_id, ExpiryPolicy.of)
        if not policy.enabled:
            return report
        # Only the customers whose points may be due or noticed are read whole: the store
        # tells them from the rest a page at a time (expiry_candidates).
        now = self._clock()
        cutoff = now - policy.life + timedelta(days=policy.notice_days)
        after = ""
        while True:
            last, candidates = await self._store.expiry_candidates(
                merchant_id, after, CUSTOMER_PAGE, cutoff, policy.after_inactivity
            )
            for customer_id in candidates:
                await self.expire_customer(merchant_id, customer_id, policy, report)
            if not last:
                return report
            after = last

    async def run(self) -> ExpiryReport:
        """One pass over every merchant whose program lets points expire."""
        report = ExpiryReport()
        for merchant_id, raw in await self._store.program_copies():
            program = core_pb2.ProgramSettings.FromString(raw)
            if ExpiryPolicy.of(program).enabled:
                await self.run_merchant(merchant_id, report)
        log.info(
            "points expiry pass",
            customers=report.customers,
            expired_points=report.expired_points,
            notices=report.notices,
            skipped=report.skipped,
        )
        return report
