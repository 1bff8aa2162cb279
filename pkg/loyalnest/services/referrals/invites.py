"""Invites: a friend invited to a referral by email or SMS (issue 16 item 6).

SendInvite only queues a row (with the program's daily caps checked under a lock, so two
concurrent invites cannot both take the last one); the send job (`sending.py`) takes due
rows, delivers them and records the outcome here. A failed or sent invite forgets the
friend's address: it was only needed to send.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row, dict_row

from loyalnest.gen.events.v1 import admin_features_pb2
from loyalnest.platform import idempotency
from loyalnest.platform.errors import QuotaExceeded
from loyalnest.platform.events import outbox
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.postgres import Database
from loyalnest.services.referrals.domain import Referral

# E.164: "+", a country code not starting with 0, at most 15 digits in all.
E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
# Deliberately loose (the provider is the judge): one "@", a dot in the domain, no spaces.
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MAX_EMAIL = 254
TEMPLATE_ID = "referral_invite"


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class InviteStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class Invite:
    merchant_id: str
    invite_id: str
    referral_id: str
    referrer_id: str
    channel: str
    status: str
    provider: str
    fallback_used: bool
    failure_reason: str
    created_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True)
class DueInvite:
    """An invite the send job took, with what it needs to send it."""

    merchant_id: str
    invite_id: str
    referral_id: str
    referrer_id: str
    channel: str
    recipient: str
    code: str
    shop: str
    attempts: int
    ses_claimed: bool


class DailyInviteCap(QuotaExceeded):
    def __init__(self, whom: str, cap: int) -> None:
        super().__init__(
            f"the program allows {cap} invites per {whom} per day (UTC); try again tomorrow",
            subject=f"referrals/invites/daily_per_{whom}",
        )


_INVITE = (
    "SELECT merchant_id, invite_id::text AS invite_id, referral_id::text AS referral_id,"
    " referrer_id, channel, status, provider, fallback_used, failure_reason, created_at,"
    " sent_at FROM invites"
)


def _day_start(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


class InviteStore:
    def __init__(self, database: Database) -> None:
        self._pool = database.pool

    async def queue(
        self,
        referral: Referral,
        channel: Channel,
        recipient: str,
        *,
        per_referrer: int,
        per_merchant: int,
        key: IdempotencyKey,
    ) -> Invite:
        """A queued invite, once per key; DailyInviteCap past a cap (0: none)."""
        merchant_id = referral.merchant_id

        async def write(conn: AsyncConnection) -> tuple[Invite, str]:
            # One lock per merchant: the merchant's cap is counted and taken atomically.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"{merchant_id}/invites",),
            )
            cursor = await conn.execute("SELECT now() AT TIME ZONE 'UTC'")
            row = await cursor.fetchone()
            assert row is not None
            day = _day_start(row[0])
            cursor = await conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE referrer_id = %s) FROM invites"
                " WHERE merchant_id = %s AND created_at >= %s::timestamp AT TIME ZONE 'UTC'",
                (referral.referrer_id, merchant_id, day),
            )
            counts = await cursor.fetchone()
            assert counts is not None
            if per_referrer and counts[1] >= per_referrer:
                raise DailyInviteCap("referrer", per_referrer)
            if per_merchant and counts[0] >= per_merchant:
                raise DailyInviteCap("merchant", per_merchant)
            invite_id = str(uuid.uuid4())
            await conn.execute(
                "INSERT INTO invites (merchant_id, invite_id, referral_id, referrer_id, channel,"
                " recipient) VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    merchant_id,
                    invite_id,
                    referral.referral_id,
                    referral.referrer_id,
                    channel.value,
                    recipient,
                ),
            )
            return await self._get(conn, merchant_id, invite_id), invite_id

        async def replay(conn: AsyncConnection, invite_id: str) -> Invite:
            return await self._get(conn, merchant_id, invite_id)

        return await idempotency.write_once(
            self._pool, merchant_id, key, write=write, replay=replay, audited=True
        )

    @staticmethod
    async def _get(conn: AsyncConnection, merchant_id: str, invite_id: str) -> Invite:
        cursor = conn.cursor(row_factory=class_row(Invite))
        await cursor.execute(
            f"{_INVITE} WHERE merchant_id = %s AND invite_id = %s", (merchant_id, invite_id)
        )
        found = await cursor.fetchone()
        assert found is not None
        return found

    async def of_referral(self, merchant_id: str, referral_id: str) -> list[Invite]:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=class_row(Invite))
            await cursor.execute(
                f"{_INVITE} WHERE merchant_id = %s AND referral_id = %s"
                " ORDER BY created_at DESC, invite_id",
                (merchant_id, referral_id),
            )
            return await cursor.fetchall()

    async def counts(self, merchant_id: str, start: datetime, end: datetime) -> tuple[int, int]:
        """Invites created in [start, end) that were sent, and that failed."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'sent'),"
                " count(*) FILTER (WHERE status = 'failed') FROM invites"
                " WHERE merchant_id = %s AND created_at >= %s AND created_at < %s",
                (merchant_id, start, end),
            )
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    # ---- the send job -----------------------------------------------------------------

    async def take_due(self, limit: int, lease: timedelta) -> list[DueInvite]:
        """Up to `limit` queued invites whose time has come, leased to this job for `lease`
        (another replica skips them; a job that dies leaves them to the next after it)."""
        async with self._pool.connection() as conn, conn.transaction():
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                "UPDATE invites i SET next_attempt_at = now() + %s, attempts = i.attempts + 1"
                " FROM referrals r WHERE (i.merchant_id, i.invite_id) IN ("
                "  SELECT merchant_id, invite_id FROM invites WHERE status = 'queued'"
                "  AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT %s"
                "  FOR UPDATE SKIP LOCKED)"
                " AND r.merchant_id = i.merchant_id AND r.referral_id = i.referral_id"
                " RETURNING i.merchant_id, i.invite_id::text AS invite_id,"
                " i.referral_id::text AS referral_id, i.referrer_id, i.channel, i.recipient,"
                " r.code, r.shop, i.attempts, i.ses_claimed_at IS NOT NULL AS ses_claimed",
                (lease, limit),
            )
            rows: list[dict[str, Any]] = await cursor.fetchall()
        return [DueInvite(**row) for row in rows]

    async def claim_ses(self, invite: DueInvite) -> bool:
        """The send-once guard: True for the one caller that may call SES for the invite
        (committed before the call, so a crash after it never leads to a second email)."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "UPDATE invites SET ses_claimed_at = now() WHERE merchant_id = %s"
                " AND invite_id = %s AND ses_claimed_at IS NULL RETURNING 1",
                (invite.merchant_id, invite.invite_id),
            )
            return await cursor.fetchone() is not None

    async def finish(
        self,
        invite: DueInvite,
        status: InviteStatus,
        *,
        provider: str,
        fallback_used: bool = False,
        reason: str = "",
    ) -> bool:
        """Records the outcome (once: False if the invite was no longer queued) and announces
        it as email_event.created, in one transaction."""
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "UPDATE invites SET status = %s, provider = %s, fallback_used = %s,"
                " failure_reason = %s, recipient = '',"
                " sent_at = CASE WHEN %s = 'sent' THEN now() END"
                " WHERE merchant_id = %s AND invite_id = %s AND status = 'queued' RETURNING 1",
                (
                    status.value,
                    provider,
                    fallback_used,
                    reason[:500],
                    status.value,
                    invite.merchant_id,
                    invite.invite_id,
                ),
            )
            if await cursor.fetchone() is None:
                return False
            await outbox.enqueue(
                conn,
                invite.merchant_id,
                admin_features_pb2.EmailEventCreated(
                    email_event_id=invite.invite_id,
                    # The friend has no customer id yet: the event follows the referrer's.
                    customer_id=invite.referrer_id,
                    template_id=TEMPLATE_ID,
                    provider=provider,
                    status=admin_features_pb2.EMAIL_STATUS_SENT
                    if status is InviteStatus.SENT
                    else admin_features_pb2.EMAIL_STATUS_FAILED,
                ),
            )
        return True

    # ---- personal data ------------------------------------------------------------------
