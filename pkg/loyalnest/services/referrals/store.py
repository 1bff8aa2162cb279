"""Referrals in PostgreSQL (schema `referrals`): codes, conversions, rewards due, the copy of
each merchant's program, and what Referrals learnt from orders (first orders, approvals).

Every read names the merchant. Writes of an RPC run with its idempotency key and audit rows
(`idempotency.write_once(..., audited=True)`); writes of a consumer run in the event's
transaction (`inbox`), their audit rows naming the event. A friend's order is decided under a
transaction-scoped advisory lock on the order, so its webhook and Points' approval of it,
arriving on two topics in any order and perhaps at once, never both miss each other.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row, dict_row

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.platform import audit, idempotency, personal_data
from loyalnest.platform.events import outbox
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.postgres import Database
from loyalnest.services.referrals import events
from loyalnest.services.referrals.domain import (
    Conversion,
    ConversionStatus,
    DiscountStatus,
    Progress,
    Referral,
    ReferralNotFound,
    ReferralStatus,
    Reward,
    Stats,
    conversion_reward_key,
    expiry,
    gives_discount,
    milestone_reward_key,
    milestones_reached,
    new_code,
    next_milestone,
    program_of,
    refusal,
)

_REFERRAL = (
    "SELECT merchant_id, referral_id::text AS referral_id, referrer_id, code, shop, status,"
    " created_at, expires_at, discount_status FROM referrals"
)
_CONVERSION = (
    "SELECT merchant_id, conversion_id::text AS conversion_id, referral_id::text AS referral_id,"
    " referrer_id, referee_id, order_id, status, refusal_reason, reward_points,"
    " (reward_points > 0 AND EXISTS (SELECT 1 FROM rewards r WHERE r.merchant_id ="
    " c.merchant_id AND r.reward_key = 'referral:' || c.conversion_id::text"
    " AND r.credited_at IS NOT NULL)) AS rewarded, created_at, completed_at FROM conversions c"
)


def _referral(row: dict[str, Any]) -> Referral:
    return Referral(
        **{
            **row,
            "status": ReferralStatus(row["status"]),
            "discount_status": DiscountStatus(row["discount_status"]),
        }
    )


def _conversion(row: dict[str, Any]) -> Conversion:
    return Conversion(**{**row, "status": ConversionStatus(row["status"])})


async def _lock(conn: AsyncConnection, *parts: str) -> None:
    """A lock until the transaction ends, on one order or one referrer of one merchant."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("/".join(parts),))


class ReferralStore:
    def __init__(self, database: Database) -> None:
        self._pool = database.pool

    async def ping(self) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("SELECT 1")

    # ---- program and shop -----------------------------------------------------------

    async def save_program(
        self, conn: AsyncConnection, merchant_id: str, settings: core_pb2.ProgramSettings
    ) -> None:
        """Keeps the newer of the stored and the given version."""
        await conn.execute(
            "INSERT INTO program_settings (merchant_id, version, settings) VALUES (%s, %s, %s)"
            " ON CONFLICT (merchant_id) DO UPDATE SET version = EXCLUDED.version,"
            " settings = EXCLUDED.settings, updated_at = now()"
            " WHERE program_settings.version < EXCLUDED.version",
            (merchant_id, settings.version, settings.SerializeToString(deterministic=True)),
        )

    @staticmethod
    async def _program(conn: AsyncConnection, merchant_id: str) -> core_pb2.ReferralProgram:
        cursor = await conn.execute(
            "SELECT settings FROM program_settings WHERE merchant_id = %s", (merchant_id,)
        )
        row = await cursor.fetchone()
        return program_of(None if row is None else core_pb2.ProgramSettings.FromString(row[0]))

    async def program(self, merchant_id: str) -> core_pb2.ReferralProgram:
        async with self._pool.connection() as conn:
            return await self._program(conn, merchant_id)

    async def shop(self, merchant_id: str) -> str | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT shop FROM shops WHERE merchant_id = %s", (merchant_id,)
            )
            row = await cursor.fetchone()
            return None if row is None else str(row[0])

    async def save_shop(self, merchant_id: str, shop: str) -> None:
        async with self._pool.connection() as conn:
            await self.remember_shop(conn, merchant_id, shop)

    @staticmethod
    async def remember_shop(conn: AsyncConnection, merchant_id: str, shop: str) -> None:
        await conn.execute(
            "INSERT INTO shops (merchant_id, shop) VALUES (%s, %s)"
            " ON CONFLICT (merchant_id) DO UPDATE SET shop = EXCLUDED.shop"
            " WHERE shops.shop <> EXCLUDED.shop",
            (merchant_id, shop),
        )

    # ---- referrals ------------------------------------------------------------------

    @staticmethod
    async def _find(
        conn: AsyncConnection, merchant_id: str, *, referral_id: str = "", code: str = ""
    ) -> Referral | None:
        cursor = conn.cursor(row_factory=dict_row)
        if referral_id:
            await cursor.execute(
                f"{_REFERRAL} WHERE merchant_id = %s AND referral_id = %s",
                (merchant_id, referral_id),
            )
        else:
            await cursor.execute(
                f"{_REFERRAL} WHERE merchant_id = %s AND code = %s", (merchant_id, code)
            )
        row = await cursor.fetchone()
        return None if row is None else _referral(row)

    async def get(self, merchant_id: str, *, referral_id: str = "", code: str = "") -> Referral:
        async with self._pool.connection() as conn:
            found = await self._find(conn, merchant_id, referral_id=referral_id, code=code)
        if found is None:
            raise ReferralNotFound(referral_id or code)
        return found

    async def active_for(
        self, merchant_id: str, referrer_id: str, *, shop: str, key: IdempotencyKey
    ) -> Referral:
        """The referrer's active referral, created (with referral.created) if there is none
        or it expired. Once per idempotency key; every key of one referrer gets the same
        referral while it is active."""

        async def write(conn: AsyncConnection) -> tuple[Referral, str]:
            await _lock(conn, merchant_id, "referrer", referrer_id)
            await conn.execute(
                "UPDATE referrals SET status = 'expired' WHERE merchant_id = %s"
                " AND referrer_id = %s AND status = 'active' AND expires_at <= now()",
                (merchant_id, referrer_id),
            )
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"{_REFERRAL} WHERE merchant_id = %s AND referrer_id = %s AND status = 'active'",
                (merchant_id, referrer_id),
            )
            row = await cursor.fetchone()
            if row is not None:
                found = _referral(row)
                return found, found.referral_id
            program = await self._program(conn, merchant_id)
            referral_id = str(uuid.uuid4())
            discount = DiscountStatus.PENDING if gives_discount(program) else DiscountStatus.NONE
            await cursor.execute(
                "INSERT INTO referrals (merchant_id, referral_id, referrer_id, code, shop,"
                " discount_status) VALUES (%s, %s, %s, %s, %s, %s) RETURNING created_at",
                (merchant_id, referral_id, referrer_id, new_code(), shop, discount.value),
            )
            created = await cursor.fetchone()
            assert created is not None
            expires_at = expiry(program, created["created_at"])
            if expires_at is not None:
                await conn.execute(
                    "UPDATE referrals SET expires_at = %s"
                    " WHERE merchant_id = %s AND referral_id = %s",
                    (expires_at, merchant_id, referral_id),
                )
            referral = await self._find(conn, merchant_id, referral_id=referral_id)
            assert referral is not None
            await outbox.enqueue(conn, merchant_id, events.referral_created(referral, "link"))
            return referral, referral_id

        async def replay(conn: AsyncConnection, referral_id: str) -> Referral:
            found = await self._find(conn, merchant_id, referral_id=referral_id)
            assert found is not None  # referrals are never deleted but by erasure
            return found

        return await idempotency.write_once(
            self._pool, merchant_id, key, write=write, replay=replay, audited=True
        )

    async def conversions(self, merchant_id: str, referral_id: str) -> list[Conversion]:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"{_CONVERSION} WHERE merchant_id = %s AND referral_id = %s"
                " ORDER BY created_at, conversion_id",
                (merchant_id, referral_id),
            )
            return [_conversion(row) for row in await cursor.fetchall()]

    async def progress(self, merchant_id: str, referrer_id: str) -> Progress:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'completed'),"
                " count(*) FILTER (WHERE status = 'pending')"
                " FROM conversions WHERE merchant_id = %s AND referrer_id = %s",
                (merchant_id, referrer_id),
            )
            counts = await cursor.fetchone()
            assert counts is not None
            cursor = await conn.execute(
                "SELECT coalesce(sum(points), 0) FROM rewards WHERE merchant_id = %s"
                " AND referrer_id = %s AND credited_at IS NOT NULL",
                (merchant_id, referrer_id),
            )
            earned = await cursor.fetchone()
            assert earned is not None
            program = await self._program(conn, merchant_id)
        upcoming = next_milestone(program, int(counts[0]))
        return Progress(
            referrer_id=referrer_id,
            completed=int(counts[0]),
            pending=int(counts[1]),
            points_earned=int(earned[0]),
            next_milestone=upcoming.referrals if upcoming else 0,
            next_milestone_bonus_points=upcoming.bonus_points if upcoming else 0,
        )

    async def click(self, code: str) -> Referral | None:
        """Counts a click on the code's link; the referral, or None for an unknown code."""
        async with self._pool.connection() as conn, conn.transaction():
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(f"{_REFERRAL} WHERE code = %s LIMIT 1", (code,))
            row = await cursor.fetchone()
            if row is None:
                return None
            referral = _referral(row)
            await conn.execute(
                "INSERT INTO clicks (merchant_id, referral_id, hour, clicks)"
                " VALUES (%s, %s, date_trunc('hour', now()), 1)"
                " ON CONFLICT (merchant_id, referral_id, hour)"
                " DO UPDATE SET clicks = clicks.clicks + 1",
                (referral.merchant_id, referral.referral_id),
            )
            return referral

    async def stats(self, merchant_id: str, start: datetime, end: datetime) -> Stats:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT"
                " (SELECT count(*) FROM referrals WHERE merchant_id = %(m)s"
                "  AND created_at >= %(s)s AND created_at < %(e)s),"
                " (SELECT coalesce(sum(clicks), 0) FROM clicks WHERE merchant_id = %(m)s"
                "  AND hour >= date_trunc('hour', %(s)s::timestamptz) AND hour < %(e)s),"
                " (SELECT count(*) FROM conversions WHERE merchant_id = %(m)s"
                "  AND status = 'completed' AND completed_at >= %(s)s AND completed_at < %(e)s),"
                " (SELECT count(*) FROM conversions WHERE merchant_id = %(m)s"
                "  AND status = 'refused' AND created_at >= %(s)s AND created_at < %(e)s)",
                {"m": merchant_id, "s": start, "e": end},
            )
            row = await cursor.fetchone()
        assert row is not None
        return Stats(*(int(value) for value in row))

    # ---- conversions ----------------------------------------------------------------

    @staticmethod
    async def _conversion_of_order(
        conn: AsyncConnection, merchant_id: str, order_id: str
    ) -> Conversion | None:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(
            f"{_CONVERSION} WHERE merchant_id = %s AND order_id = %s", (merchant_id, order_id)
        )
        row = await cursor.fetchone()
        return None if row is None else _conversion(row)

    @staticmethod
    async def _conversion(
        conn: AsyncConnection, merchant_id: str, conversion_id: str
    ) -> Conversion:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(
            f"{_CONVERSION} WHERE merchant_id = %s AND conversion_id = %s",
            (merchant_id, conversion_id),
        )
        row = await cursor.fetchone()
        assert row is not None
        return _conversion(row)

    @staticmethod
    async def first_order(
        conn: AsyncConnection, merchant_id: str, customer_id: str, order_id: str
    ) -> bool:
        """Records the customer's first order seen; True when `order_id` is it."""
        cursor = await conn.execute(
            "INSERT INTO customer_orders (merchant_id, customer_id, first_order_id)"
            " VALUES (%s, %s, %s) ON CONFLICT (merchant_id, customer_id)"
            " DO UPDATE SET first_order_id = customer_orders.first_order_id"
            " RETURNING first_order_id",
            (merchant_id, customer_id, order_id),
        )
        row = await cursor.fetchone()
        assert row is not None
        return bool(row[0] == order_id)

    async def convert(
        self,
        conn: AsyncConnection,
        merchant_id: str,
        referral: Referral,
        referee_id: str,
        order_id: str,
        *,
        at: datetime,
        first_order: bool,
        approved: bool,
    ) -> Conversion:
        """Records the referee's conversion under `referral`: refused with its reason, or
        pending, or completed at once when `approved` (the order was approved already, or
        a completion by hand). Call under the order's lock (`lock_order`)."""
        await _lock(conn, merchant_id, "referee", referee_id)
        cursor = await conn.execute(
            "SELECT 1 FROM conversions WHERE merchant_id = %s AND referee_id = %s"
            " AND status IN ('pending', 'completed')",
            (merchant_id, referee_id),
        )
        already = await cursor.fetchone() is not None
        refused = refusal(
            referral, referee_id, at=at, first_order=first_order, already_referred=already
        )
        conversion_id = str(uuid.uuid4())
        await conn.execute(
            "INSERT INTO conversions (merchant_id, conversion_id, referral_id, referrer_id,"
            " referee_id, order_id, status, refusal_reason)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                merchant_id,
                conversion_id,
                referral.referral_id,
                referral.referrer_id,
                referee_id,
                order_id,
                (ConversionStatus.REFUSED if refused else ConversionStatus.PENDING).value,
                refused.value if refused else "",
            ),
        )
        if refused is None and approved:
            await self._complete(conn, merchant_id, conversion_id)
        return await self._conversion(conn, merchant_id, conversion_id)

    async def _complete(self, conn: AsyncConnection, merchant_id: str, conversion_id: str) -> None:
        """Completes a pending conversion: its reward and the milestones now reached are due,
        referral.completed goes out. Under the referrer's lock, so milestones count right."""
        pending = await self._conversion(conn, merchant_id, conversion_id)
        await _lock(conn, merchant_id, "referrer", pending.referrer_id)
        program = await self._program(conn, merchant_id)
        points = program.referrer_reward_points
        cursor = await conn.execute(
            "UPDATE conversions SET status = 'completed', completed_at = now(), reward_points = %s"
            " WHERE merchant_id = %s AND conversion_id = %s AND status = 'pending' RETURNING 1",
            (points, merchant_id, conversion_id),
        )
        if await cursor.fetchone() is None:
            return  # completed or cancelled meanwhile
        if points > 0:
            await self._due(
                conn,
                Reward(
                    merchant_id,
                    conversion_reward_key(conversion_id),
                    pending.referrer_id,
                    points,
                    f"referral:{pending.referee_id}",
                ),
            )
        cursor = await conn.execute(
            "SELECT count(*) FROM conversions WHERE merchant_id = %s AND referrer_id = %s"
            " AND status = 'completed'",
            (merchant_id, pending.referrer_id),
        )
        completed = await cursor.fetchone()
        assert completed is not None
        for milestone in milestones_reached(program, int(completed[0])):
            await self._due(
                conn,
                Reward(
                    merchant_id,
                    milestone_reward_key(pending.referrer_id, milestone.referrals),
                    pending.referrer_id,
                    milestone.bonus_points,
                    f"referral-milestone:{milestone.referrals}",
                ),
            )
        done = await self._conversion(conn, merchant_id, conversion_id)
        await outbox.enqueue(conn, merchant_id, events.referral_completed(done))

    @staticmethod
    async def _due(conn: AsyncConnection, reward: Reward) -> None:
        # The key is unique: a milestone reached again (after a refusal elsewhere) is not
        # due twice.
        await conn.execute(
            "INSERT INTO rewards (merchant_id, reward_key, referrer_id, points, reason)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (reward.merchant_id, reward.key, reward.referrer_id, reward.points, reward.reason),
        )

    async def lock_order(self, conn: AsyncConnection, merchant_id: str, order_id: str) -> None:
        await _lock(conn, merchant_id, "order", order_id)

    async def order_converted(self, conn: AsyncConnection, merchant_id: str, order_id: str) -> bool:
        return await self._conversion_of_order(conn, merchant_id, order_id) is not None

    async def order_approved(
        self, conn: AsyncConnection, merchant_id: str, order_id: str
    ) -> str | None:
        """Records Points' approval of the order and completes its pending conversion; the
        referral whose conversion completed, if any."""
        await self.lock_order(conn, merchant_id, order_id)
        cursor = await conn.execute(
            "INSERT INTO order_approvals (merchant_id, order_id) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING RETURNING 1",
            (merchant_id, order_id),
        )
        if await cursor.fetchone() is None:
            return None
        conversion = await self._conversion_of_order(conn, merchant_id, order_id)
        if conversion is not None and conversion.status is ConversionStatus.PENDING:
            await self._complete(conn, merchant_id, conversion.conversion_id)
            return conversion.referral_id
        return None

    @staticmethod
    async def was_approved(conn: AsyncConnection, merchant_id: str, order_id: str) -> bool:
        cursor = await conn.execute(
            "SELECT 1 FROM order_approvals WHERE merchant_id = %s AND order_id = %s",
            (merchant_id, order_id),
        )
        return await cursor.fetchone() is not None

    async def order_cancelled(
        self, conn: AsyncConnection, merchant_id: str, order_id: str
    ) -> str | None:
        """A pending conversion of a cancelled order earns nothing (once approved, Points
        has taken the order as kept, and so does Referrals); its referral, if any."""
        await self.lock_order(conn, merchant_id, order_id)
        cursor = await conn.execute(
            "UPDATE conversions SET status = 'cancelled' WHERE merchant_id = %s"
            " AND order_id = %s AND status = 'pending' RETURNING referral_id::text",
            (merchant_id, order_id),
        )
        row = await cursor.fetchone()
        return None if row is None else str(row[0])

    async def find_referral(
        self, conn: AsyncConnection, merchant_id: str, codes: list[str]
    ) -> Referral | None:
        for code in codes:
            found = await self._find(conn, merchant_id, code=code)
            if found is not None:
                return found
        return None

    async def complete_by_hand(
        self,
        merchant_id: str,
        referral: Referral,
        referee_id: str,
        order_id: str,
        *,
        key: IdempotencyKey,
    ) -> Conversion:
        """A conversion completed by a merchant's staff (audited: the rows name the caller),
        once per idempotency key; the fraud rules still refuse it with their reason."""

        async def write(conn: AsyncConnection) -> tuple[Conversion, str]:
            if order_id:
                await self.lock_order(conn, merchant_id, order_id)
                existing = await self._conversion_of_order(conn, merchant_id, order_id)
                if existing is not None:
                    return existing, existing.conversion_id
            cursor = await conn.execute(
                "SELECT first_order_id FROM customer_orders WHERE merchant_id = %s"
                " AND customer_id = %s",
                (merchant_id, referee_id),
            )
            seen = await cursor.fetchone()
            first = seen is None or (bool(order_id) and seen[0] == order_id)
            moment = await now(conn)
            conversion = await self.convert(
                conn,
                merchant_id,
                referral,
                referee_id,
                order_id,
                at=moment,
                first_order=first,
                approved=True,
            )
            return conversion, conversion.conversion_id

        async def replay(conn: AsyncConnection, conversion_id: str) -> Conversion:
            return await self._conversion(conn, merchant_id, conversion_id)

        return await idempotency.write_once(
            self._pool, merchant_id, key, write=write, replay=replay, audited=True
        )

    # ---- rewards --------------------------------------------------------------------

    async def rewards_due(self, limit: int, merchant_id: str | None = None) -> list[Reward]:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=class_row(Reward))
            await cursor.execute(
                "SELECT merchant_id, reward_key AS key, referrer_id, points, reason FROM rewards"
                " WHERE credited_at IS NULL AND (%(m)s::text IS NULL OR merchant_id = %(m)s)"
                " AND next_attempt_at <= now() ORDER BY created_at LIMIT %(limit)s",
                {"m": merchant_id, "limit": limit},
            )
            return await cursor.fetchall()

    async def credited(self, reward: Reward) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE rewards SET credited_at = now(), attempts = attempts + 1, last_error = ''"
                " WHERE merchant_id = %s AND reward_key = %s AND credited_at IS NULL",
                (reward.merchant_id, reward.key),
            )

    async def credit_failed(self, reward: Reward, error: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                # Refused (e.g. a merchant Auth does not know): tried again 2, 4, 8 ...
                # seconds later, at most an hour apart.
                "UPDATE rewards SET attempts = attempts + 1, last_error = %s,"
                " next_attempt_at = now()"
                " + make_interval(secs => least(3600, power(2, attempts + 1)))"
                " WHERE merchant_id = %s AND reward_key = %s",
                (error[:500], reward.merchant_id, reward.key),
            )

    # ---- friend discounts -----------------------------------------------------------

    async def discount_created(self, referral: Referral) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE referrals SET discount_status = 'created', discount_error = '',"
                " discount_attempts = discount_attempts + 1"
                " WHERE merchant_id = %s AND referral_id = %s",
                (referral.merchant_id, referral.referral_id),
            )

    async def discount_failed(self, referral: Referral, error: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE referrals SET discount_error = %s,"
                " discount_attempts = discount_attempts + 1, discount_next_attempt_at = now()"
                " + make_interval(secs => least(3600, power(2, discount_attempts + 1)))"
                " WHERE merchant_id = %s AND referral_id = %s",
                (error[:500], referral.merchant_id, referral.referral_id),
            )

    async def discounts_pending(self, limit: int, moment: datetime) -> list[Referral]:
        """Active referrals whose code Shopify has not taken yet and whose next try is due
        (2, 4, 8 ... seconds after a failure, at most an hour apart)."""
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"{_REFERRAL} WHERE discount_status = 'pending' AND status = 'active'"
                " AND discount_next_attempt_at <= %s ORDER BY created_at LIMIT %s",
                (moment, limit),
            )
            return [_referral(row) for row in await cursor.fetchall()]

    # ---- expiry ---------------------------------------------------------------------

    async def expire_due(self) -> int:
        """Marks every active referral past its expiry EXPIRED (the scheduled sweep)."""
        async with audit.transaction(self._pool, "job:referrals:expiry") as conn:
            cursor = await conn.execute(
                "UPDATE referrals SET status = 'expired' WHERE status = 'active'"
                " AND expires_at <= now()"
            )
            return cursor.rowcount

    # ---- personal data (issue 18's contract) ----------------------------------------

    async def export_customer(self, merchant_id: str, customer_id: str) -> dict[str, Any]:
        """Everything kept about one customer, as referrer and as referred friend."""
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"{_REFERRAL} WHERE merchant_id = %s AND referrer_id = %s ORDER BY created_at",
                (merchant_id, customer_id),
            )
            referrals = [
                {
                    **row,
                    "created_at": row["created_at"].isoformat(),
                    "expires_at": row["expires_at"].isoformat() if row["expires_at"] else None,
                }
                for row in await cursor.fetchall()
            ]
            await cursor.execute(
                f"{_CONVERSION} WHERE merchant_id = %s AND (referrer_id = %s OR referee_id = %s)"
                " ORDER BY created_at",
                (merchant_id, customer_id, customer_id),
            )
            conversions = [
                {
                    **row,
                    "created_at": row["created_at"].isoformat(),
                    "completed_at": row["completed_at"].isoformat()
                    if row["completed_at"]
                    else None,
                }
                for row in await cursor.fetchall()
            ]
            await cursor.execute(
                "SELECT reward_key, points, reason, created_at, credited_at FROM rewards"
                " WHERE merchant_id = %s AND referrer_id = %s ORDER BY created_at",
                (merchant_id, customer_id),
            )
            rewards = [
                {
                    **row,
                    "created_at": row["created_at"].isoformat(),
                    "credited_at": row["credited_at"].isoformat() if row["credited_at"] else None,
                }
                for row in await cursor.fetchall()
            ]
            await cursor.execute(
                "SELECT first_order_id FROM customer_orders WHERE merchant_id = %s"
                " AND customer_id = %s",
                (merchant_id, customer_id),
            )
            first = await cursor.fetchone()
            # The invites the customer sent (the friend's address only while still queued).
            await cursor.execute(
                "SELECT invite_id::text AS invite_id, referral_id::text AS referral_id,"
                " channel, recipient, status, provider, created_at, sent_at FROM invites"
                " WHERE merchant_id = %s AND referrer_id = %s ORDER BY created_at",
                (merchant_id, customer_id),
            )
            invites = [
                {
                    **row,
                    "created_at": row["created_at"].isoformat(),
                    "sent_at": row["sent_at"].isoformat() if row["sent_at"] else None,
                }
                for row in await cursor.fetchall()
            ]
        return {
            "referrals": referrals,
            "conversions": conversions,
            "rewards": rewards,
            "first_order_id": first["first_order_id"] if first else None,
            "invites": invites,
        }

    async def erase_customer(self, merchant_id: str, customer_id: str) -> int:
        """Forgets the customer: their referrals (codes stop working), their conversions as
        referrer or friend, their rewards and first order. Rewards already credited stay in
        Points' ledger, which erases its own data. Returns the rows deleted (0 on a repeat)."""
        erased = 0
        async with audit.transaction(self._pool, "job:referrals:erase-customer") as conn:
            for statement, params in (
                (
                    "DELETE FROM rewards WHERE merchant_id = %s AND referrer_id = %s",
                    (merchant_id, customer_id),
                ),
                (
                    "DELETE FROM conversions WHERE merchant_id = %s AND (referrer_id = %s"
                    " OR referee_id = %s)",
                    (merchant_id, customer_id, customer_id),
                ),
                (
                    "DELETE FROM referrals WHERE merchant_id = %s AND referrer_id = %s",
                    (merchant_id, customer_id),
                ),
                (
                    "DELETE FROM customer_orders WHERE merchant_id = %s AND customer_id = %s",
                    (merchant_id, customer_id),
                ),
            ):
                erased += (await conn.execute(statement, params)).rowcount
            # Events about their referrals (as referrer or friend) still to be published;
            # a reward owed to the other party still reaches Points (README "GDPR").
            erased += await personal_data.redact_unsent_events(conn, merchant_id, (customer_id,))
        return erased

    async def erase_merchant(self, merchant_id: str) -> int:
        erased = 0
        async with audit.transaction(self._pool, "job:referrals:erase-merchant") as conn:
            for table in (
                "rewards",
                "clicks",
                "conversions",
                "referrals",
                "customer_orders",
                "order_approvals",
                "shops",
                "program_settings",
            ):
                cursor = await conn.execute(
                    f"DELETE FROM {table} WHERE merchant_id = %s", (merchant_id,)
                )
                erased += cursor.rowcount
            erased += await personal_data.erase_platform_rows(conn, merchant_id)
        return erased


async def now(conn: AsyncConnection) -> datetime:
    cursor = await conn.execute("SELECT now()")
    row = await cursor.fetchone()
    assert row is not None
    value: datetime = row[0]
    return value
