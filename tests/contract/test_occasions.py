"""Anniversaries on every LedgerStore: the ledgers' opening times, paged, and the occasions job
crediting ANNIVERSARY once per customer and year, erased customers left out. (Birthdays come
from Users: tests/integration/test_program_occasions.py.)"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.personal_data import CustomerRef
from loyalnest.platform.program_settings import default_program
from loyalnest.services.points.domain import Posting, TransactionType
from loyalnest.services.points.ledger import Ledger
from loyalnest.services.points.occasions import Occasions
from loyalnest.services.points.store.base import ERASED_PREFIX, LedgerStore


async def test_anniversaries_once_a_year(store: LedgerStore) -> None:
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    ledger = Ledger(store, None)
    before = datetime.now(UTC) - timedelta(seconds=1)
    for customer in ("c-1", "c-2", "c-3"):
        posting = Posting(merchant, customer, TransactionType.EARN, 10, "welcome")
        await ledger.post(posting, IdempotencyKey.internal(f"welcome:{customer}"))
    after = datetime.now(UTC) + timedelta(seconds=1)

    first = await store.ledger_openings(merchant, "", 2)
    rest = await store.ledger_openings(merchant, first[-1][0], 2)
    assert [c for c, _ in first + rest] == ["c-1", "c-2", "c-3"]
    assert all(before <= opened <= after for _, opened in first + rest)

    program = default_program()
    program.version = 1
    program.earning_rules.add(
        rule_id="anniv", enabled=True, type=core_pb2.EARNING_RULE_TYPE_ANNIVERSARY, points=25
    )
    # Without Users to ask (no service credential), birthdays are skipped, not an error.
    program.earning_rules.add(
        rule_id="bday", enabled=True, type=core_pb2.EARNING_RULE_TYPE_BIRTHDAY, points=50
    )
    assert await store.save_program_settings(merchant, 1, program.SerializeToString())
    await store.erase_customer(merchant, CustomerRef("c-3"))  # its ledger stays, anonymous

    opened = first[0][1].astimezone(UTC).date()
    day = (
        opened.replace(year=opened.year + 1)
        if (opened.month, opened.day) != (2, 29)
        else (opened.replace(year=opened.year + 1, day=28))
    )
    occasions = Occasions(ledger, None)
    today = await occasions.run(opened)  # their first day: no anniversary yet
    assert today.awarded == 0
    report = await occasions.run(day)
    # Other merchants' programs in a shared store may have anniversaries of their own: only
    # this merchant's customers are counted here.
    for customer in ("c-1", "c-2"):
        balance = await store.get_balance(merchant, customer)
        assert balance.balance == 35, customer
    assert report.awarded >= 2
    again = await occasions.run(day)
    assert again.awarded == 0 and again.replayed >= 2
    assert (await store.get_balance(merchant, "c-1")).balance == 35
    anonymous = [c for c, _ in await store.ledger_openings(merchant, "", 10)
                 if c.startswith(ERASED_PREFIX)]  # fmt: skip
    assert len(anonymous) == 1
    assert (await store.get_balance(merchant, anonymous[0])).balance == 10


async def test_the_merchants_day_is_its_time_zones(store: LedgerStore) -> None:
    """Kiritimati (UTC+14) and UTC count different days: a merchant there gets the
    anniversary credited on its own day, counted in its zone, at a moment whose UTC day is
    not the anniversary in UTC."""
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    ledger = Ledger(store, None)
    posting = Posting(merchant, "c-1", TransactionType.EARN, 10, "welcome")
    await ledger.post(posting, IdempotencyKey.internal("welcome:c-1"))
    ((_, opened),) = await store.ledger_openings(merchant, "", 10)
    zone = ZoneInfo("Pacific/Kiritimati")
    joined = opened.astimezone(zone).date()
    target = (
        joined.replace(year=joined.year + 1)
        if (joined.month, joined.day) != (2, 29)
        else (joined.replace(year=joined.year + 1, day=28))
    )
    # Opened before 10:00 UTC, Kiritimati's day is UTC's: at 02:00 there, UTC is still on the
    # day before. Opened later, Kiritimati is a day ahead: at 20:00 there, UTC is on the
    # Kiritimati anniversary, a day after the UTC one. (02:00 always made the test depend on
    # the hour it ran at.)
    utc_anniversary = opened.astimezone(UTC).date().replace(year=target.year)
    same_day = joined == opened.astimezone(UTC).date()
    moment = datetime.combine(target, time(2 if same_day else 20), zone)
    assert moment.astimezone(UTC).date() != utc_anniversary

    program = default_program()
    program.version = 1
    program.earning_rules.add(
        rule_id="anniv", enabled=True, type=core_pb2.EARNING_RULE_TYPE_ANNIVERSARY, points=25
    )
    assert await store.save_program_settings(merchant, 1, program.SerializeToString())
    occasions = Occasions(ledger, None, clock=lambda: moment)
    await occasions.run()  # UTC's day: not the anniversary yet
    assert (await store.get_balance(merchant, "c-1")).balance == 10
    program.version, program.timezone = 2, "Pacific/Kiritimati"
    assert await store.save_program_settings(merchant, 2, program.SerializeToString())
    await occasions.run()
    assert (await store.get_balance(merchant, "c-1")).balance == 35
