"""Occasions: the BIRTHDAY and ANNIVERSARY earning rules, credited by a daily job.

    BIRTHDAY      the customers Users says celebrate today (ListBirthdays: Users keeps the
                  birthday, with the customer's consent, sealed; Points never sees a date,
                  only who celebrates on the day it asks about);
    ANNIVERSARY   the customers whose ledger was opened (they joined the program) on this day
                  of an earlier year (Points' own ledgers).

The day is the merchant's: today in the program's `timezone` (UTC when unset) at the time of
the run (`loyalnest points occasions`, the chart's hourly CronJob, so each merchant's day is
credited within an hour of its start), or one given for every merchant (`--date`, to catch up
a day missed). A ledger's opening is dated in the same zone. 29 February celebrates on
28 February in a year without one. Each award is a ledger credit keyed per (rule, customer,
year): a second run the same day (a retry, a concurrent run, a rerun after a crash half-way)
replays the first credit instead of crediting again, so the job can always be run again. The
credit names its rule (`rule_id`, shown in the customer's history and on points.earned).

Tier-only rules (`eligible_tiers`): the customer's tier as Points holds it when the job awards
(the same stored tier orders see); a customer outside the tiers is skipped (counted
`not_eligible`) and, since nothing is posted, a rerun that day after an upgrade awards.

Merchants: every program copy with an enabled occasion rule active on the day, while the
program is enabled and Auth knows the merchant as installed (MerchantGate, when a service
credential is configured). A merchant whose birthdays Users cannot give (Users down, Auth
refusing the token) is reported failed and the others go on: the job then exits non-zero and
its next run (or a rerun) finishes it.
"""

from __future__ import annotations

import calendar
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Protocol

import grpc
from prometheus_client import Counter

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.gen.users.v1 import users_pb2, users_pb2_grpc
from loyalnest.platform.auth.context import acting_for
from loyalnest.platform.earning_rules import program_timezone
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.merchants import MerchantGate
from loyalnest.platform.observability import get_logger
from loyalnest.services.points.domain import Posting, TransactionType
from loyalnest.services.points.earning import Clock, utc_now
from loyalnest.services.points.ledger import Ledger
from loyalnest.services.points.rules import Rule
from loyalnest.services.points.store.base import ERASED_PREFIX
from loyalnest.services.points.tier_policy import live_tier

log = get_logger(__name__)

AWARDS = Counter(
    "loyalnest_points_occasion_awards_total",
    "Occasion credits, by rule type (birthday, anniversary) and outcome (awarded, replayed,"
    " not_eligible: outside a tier-only rule's tiers).",
    ["occasion", "outcome"],
)

BIRTHDAY = "birthday"
ANNIVERSARY = "anniversary"
_TYPES: dict[int, str] = {
    core_pb2.EARNING_RULE_TYPE_BIRTHDAY: BIRTHDAY,
    core_pb2.EARNING_RULE_TYPE_ANNIVERSARY: ANNIVERSARY,
}
LEDGER_PAGE = 500
BIRTHDAY_PAGE = 100  # ListBirthdays' largest page


class BirthdaySource(Protocol):
    def celebrating(self, merchant_id: str, day: date) -> AsyncIterator[str]:
        """The merchant's customers whose birthday is celebrated on `day`."""
        ...


class UsersBirthdays:
    """Users' ListBirthdays (internal), called with Points' own service token for the
    merchant through its declared call to `users` (platform/calls.py)."""

    def __init__(self, users: users_pb2_grpc.UsersServiceStub) -> None:
        self._users = users

    async def celebrating(self, merchant_id: str, day: date) -> AsyncIterator[str]:
        token = ""
        while True:
            with acting_for(merchant_id):
                page = await self._users.ListBirthdays(
                    users_pb2.ListBirthdaysRequest(
                        year=day.year,
                        month=day.month,
                        day=day.day,
                        page_size=BIRTHDAY_PAGE,
                        page_token=token,
                    )
                )
            for customer_id in page.customer_ids:
                yield customer_id
            token = page.next_page_token
            if not token:
                return


def anniversary_on(joined: datetime, day: date, zone: tzinfo = UTC) -> bool:
    """Whether `day` is an anniversary (the first or a later one) of `joined`, both as the
    merchant's `zone` counts days."""
    joined = joined.astimezone(zone)
    if joined.year >= day.year:
        return False
    if (joined.month, joined.day) == (day.month, day.day):
        return True
    return (
        (joined.month, joined.day) == (2, 29)
        and (day.month, day.day) == (2, 28)
        and not calendar.isleap(day.year)
    )


def occasion_rules(program: core_pb2.ProgramSettings, day: date) -> list[Rule]:
    """The enabled BIRTHDAY and ANNIVERSARY rules whose [start, end) meets `day` (the
    merchant's, in the program's time zone)."""
    if not program.program_enabled:
        return []
    start = datetime.combine(day, time(), program_timezone(program))
    end = start + timedelta(days=1)
    return [
        rule
        for rule in (Rule.of(r) for r in program.earning_rules if r.enabled)
        if rule.type in _TYPES
        and (rule.start is None or rule.start < end)
        and (rule.end is None or rule.end > start)
    ]


@dataclass
class OccasionReport:
    day: date
    merchants: int = 0
    awarded: int = 0
    points: int = 0
    # Credits a run before this one (the same day) had posted already.
    replayed: int = 0
    # Occasions of customers outside a tier-only rule's tiers (nothing credited).
    not_eligible: int = 0
    failed_merchants: list[str] = field(default_factory=list)


class Occasions:
    def __init__(
        self,
        ledger: Ledger,
        birthdays: BirthdaySource | None,
        *,
        merchants: MerchantGate | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._ledger = ledger
        self._store = ledger.store
        self._birthdays = birthdays
        self._merchants = merchants
        self._clock = clock

    async def run(self, day: date | None = None) -> OccasionReport:
        """One pass over every merchant for `day` (default: each merchant's today, in its
        program's time zone); idempotent."""
        now = self._clock()
        report = OccasionReport(day or now.astimezone(UTC).date())
        for merchant_id, raw in sorted(await self._store.program_copies()):
            program = core_pb2.ProgramSettings.FromString(raw)
            zone = program_timezone(program)
            merchant_day = day or now.astimezone(zone).date()
            rules = occasion_rules(program, merchant_day)
            if not rules:
                continue
            if self._merchants is not None and not await self._merchants.allows(
                merchant_id, what="occasions"
            ):
                continue
            report.merchants += 1
            try:
                await self._merchant(merchant_id, program, rules, merchant_day, zone, report)
            except grpc.aio.AioRpcError as error:
                # Users or Auth could not answer for this merchant: the others go on, a
                # rerun finishes it (what was credited is not credited again).
                log.warning(
                    "occasions of a merchant failed",
                    merchant_id=merchant_id,
                    code=error.code().name,
                    details=error.details(),
                )
                report.failed_merchants.append(merchant_id)
        log.info(
            "occasions credited",
            day=report.day.isoformat(),
            merchants=report.merchants,
            awarded=report.awarded,
            points=report.points,
            replayed=report.replayed,
            not_eligible=report.not_eligible,
            failed=len(report.failed_merchants),
        )
        return report

    async def _merchant(
        self,
        merchant_id: str,
        program: core_pb2.ProgramSettings,
        rules: list[Rule],
        day: date,
        zone: tzinfo,
        report: OccasionReport,
    ) -> None:
        anniversaries = [r for r in rules if r.type == core_pb2.EARNING_RULE_TYPE_ANNIVERSARY]
        if anniversaries:
            async for customer_id in self._anniversaries(merchant_id, day, zone):
                await self._celebrate(merchant_id, program, customer_id, anniversaries, day, report)
        birthdays = [r for r in rules if r.type == core_pb2.EARNING_RULE_TYPE_BIRTHDAY]
        if birthdays and self._birthdays is None:
            # No service credential: nobody to ask (credit_occasions warned once).
            log.info("birthday rules skipped: no Users to ask", merchant_id=merchant_id)
        elif birthdays and self._birthdays is not None:
            async for customer_id in self._birthdays.celebrating(merchant_id, day):
                if customer_id.startswith(ERASED_PREFIX):
                    continue
                await self._celebrate(merchant_id, program, customer_id, birthdays, day, report)

    async def _anniversaries(self, merchant_id: str, day: date, zone: tzinfo) -> AsyncIterator[str]:
        after = ""
        while True:
            page = await self._store.ledger_openings(merchant_id, after, LEDGER_PAGE)
            for customer_id, joined in page:
                # An erased customer's ledger stays (anonymous, its amounts): nobody to fête.
                if not customer_id.startswith(ERASED_PREFIX) and anniversary_on(joined, day, zone):
                    yield customer_id
            if len(page) < LEDGER_PAGE:
                return
            after = page[-1][0]

    async def _celebrate(
        self,
        merchant_id: str,
        program: core_pb2.ProgramSettings,
        customer_id: str,
        rules: list[Rule],
        day: date,
        report: OccasionReport,
    ) -> None:
        """Each of `rules` for the customer's occasion, tier-only (segment-only) ones if the
        customer is in one of their tiers (RFM segments) now: each read once, only when a
        rule asks."""
        tier_id = segment = ""
        if any(r.tiers for r in rules):
            now = self._clock()
            tier_id = await live_tier(self._store, program, merchant_id, customer_id, now)
        if any(r.segments for r in rules):
            segment = await self._store.customer_segment(merchant_id, customer_id)
        for rule in rules:
            if rule.eligible(tier_id, segment):
                await self._award(merchant_id, customer_id, rule, day, report)
            else:
                report.not_eligible += 1
                AWARDS.labels(_TYPES[rule.type], "not_eligible").inc()

    async def _award(
        self, merchant_id: str, customer_id: str, rule: Rule, day: date, report: OccasionReport
    ) -> None:
        occasion = _TYPES[rule.type]
        posting = Posting(
            merchant_id,
            customer_id,
            TransactionType.EARN,
            rule.points,
            occasion,
            rule_id=rule.rule_id,
        )
        # Once per (rule, customer, year); the amount is left out of the fingerprint, so a
        # rerun after the merchant changed the rule's points replays the first credit.
        key = IdempotencyKey.internal(f"rule:{rule.rule_id}:{customer_id}:{day.year}", customer_id)
        result = await self._ledger.post(posting, key)
        if result.replayed:
            report.replayed += 1
        else:
            report.awarded += 1
            report.points += result.transaction.points
        AWARDS.labels(occasion, "replayed" if result.replayed else "awarded").inc()
