"""Gamification's record in PostgreSQL (schema `gamification`): badge rules, awarded badges,
customers' counters and leaderboard_rankings (what the Redis boards are rebuilt from).

Every change an event makes runs in the consumer's transaction (the event is claimed in the
same one), and every badge it earns is inserted there with its badge.awarded event: a
redelivered event is skipped, and the unique (merchant, customer, rule) award makes even a
second evaluation harmless. Rule creation and manual awards are audited (trigger) and
idempotent (`write_once`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row, dict_row

from loyalnest.platform import idempotency
from loyalnest.platform.events import outbox
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.personal_data import (
    erase_platform_rows,
    forget_sent_events,
    redact_unsent_events,
)
from loyalnest.platform.postgres import Database
from loyalnest.services.gamification import events
from loyalnest.services.gamification.domain import (
    ALL_TIME,
    Badge,
    BadgeRule,
    Progress,
    RuleKind,
    RuleNotFound,
    RuleProgress,
    month_of,
    period_keys,
    progress_toward,
)

_RULE_COLUMNS = "rule_id::text AS rule_id, merchant_id, name, kind, threshold, segment, created_at"
_BADGE_SELECT = (
    "SELECT b.badge_id::text AS badge_id, b.rule_id::text AS rule_id, r.name, r.kind,"
    " b.awarded_by, b.created_at AS awarded_at"
    " FROM customer_badges b JOIN badge_rules r USING (merchant_id, rule_id)"
)
_PROGRESS_COLUMNS = (
    "lifetime_points, orders, referrals, last_order_month, current_streak, best_streak, rfm_segment"
)


def _rule(row: dict[str, Any]) -> BadgeRule:
    return BadgeRule(**{**row, "kind": RuleKind(row["kind"])})


def _badge(row: dict[str, Any]) -> Badge:
    return Badge(**{**row, "kind": RuleKind(row["kind"])})


@dataclass(frozen=True)
class Score:
    """A customer's score on one board, as the Redis boards are to hold it."""

    period_key: str
    customer_id: str
    score: int
    listed: bool  # False: opted out of listings


class GamificationStore:
    def __init__(self, database: Database) -> None:
        self._pool = database.pool

    # ---- rules ---------------------------------------------------------------------------

    async def create_rule(
        self,
        merchant_id: str,
        *,
        name: str,
        kind: RuleKind,
        threshold: int,
        segment: str,
        key: IdempotencyKey,
    ) -> BadgeRule:
        async def insert(conn: AsyncConnection) -> tuple[BadgeRule, str]:
            rule_id = str(uuid.uuid4())
            await conn.execute(
                "INSERT INTO badge_rules (rule_id, merchant_id, name, kind, threshold, segment)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (rule_id, merchant_id, name, kind.value, threshold, segment),
            )
            return await self._rule(conn, merchant_id, rule_id), rule_id

        return await idempotency.write_once(
            self._pool,
            merchant_id,
            key,
            write=insert,
            replay=lambda conn, rule_id: self._rule(conn, merchant_id, rule_id),
            audited=True,
        )

    @staticmethod
    async def _rule(conn: AsyncConnection, merchant_id: str, rule_id: str) -> BadgeRule:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(
            f"SELECT {_RULE_COLUMNS} FROM badge_rules WHERE merchant_id = %s AND rule_id = %s",
            (merchant_id, rule_id),
        )
        row = await cursor.fetchone()
        if row is None:
            raise RuleNotFound(rule_id)
        return _rule(row)

    @staticmethod
    async def _rules(conn: AsyncConnection, merchant_id: str) -> list[BadgeRule]:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(
            f"SELECT {_RULE_COLUMNS} FROM badge_rules WHERE merchant_id = %s"
            " ORDER BY created_at, rule_id",
            (merchant_id,),
            prepare=True,
        )
        return [_rule(row) for row in await cursor.fetchall()]

    async def list_rules(self, merchant_id: str) -> list[BadgeRule]:
        async with self._pool.connection() as conn:
            return await self._rules(conn, merchant_id)

    # ---- badges --------------------------------------------------------------------------

    @staticmethod
    async def _award(
        conn: AsyncConnection, merchant_id: str, customer_id: str, rule: BadgeRule, by: str
    ) -> str | None:
        """Inserts the award with its badge.awarded; None when the customer held it."""
        badge_id = str(uuid.uuid4())
        cursor = await conn.execute(
            "INSERT INTO customer_badges"
            " (badge_id, merchant_id, customer_id, rule_id, badge_type, awarded_by)"
            " VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (merchant_id, customer_id, rule_id) DO NOTHING RETURNING 1",
            (badge_id, merchant_id, customer_id, rule.rule_id, rule.kind.value, by),
            prepare=True,
        )
        if await cursor.fetchone() is None:
            return None
        await outbox.enqueue(conn, merchant_id, events.badge_awarded(badge_id, customer_id, rule))
        return badge_id

    @staticmethod
    async def _badge_of(
        conn: AsyncConnection, merchant_id: str, customer_id: str, rule_id: str
    ) -> Badge:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(
            f"{_BADGE_SELECT} WHERE b.merchant_id = %s AND b.customer_id = %s AND b.rule_id = %s",
            (merchant_id, customer_id, rule_id),
        )
        row = await cursor.fetchone()
        if row is None:  # pragma: no cover - the caller inserted or found it in this transaction
            raise RuleNotFound(rule_id)
        return _badge(row)

    async def award_manually(
        self, merchant_id: str, customer_id: str, rule_id: str, key: IdempotencyKey
    ) -> Badge:
        """The rule's badge for the customer, awarded by the caller (audited) unless held."""

        async def award(conn: AsyncConnection) -> tuple[Badge, str]:
            rule = await self._rule(conn, merchant_id, rule_id)
            await self._award(conn, merchant_id, customer_id, rule, "manual")
            return await self._badge_of(conn, merchant_id, customer_id, rule_id), rule_id

        return await idempotency.write_once(
            self._pool,
            merchant_id,
            key,
            write=award,
            replay=lambda conn, ref: self._badge_of(conn, merchant_id, customer_id, ref),
            audited=True,
        )

    async def customer_badges(
        self, merchant_id: str, customer_id: str
    ) -> tuple[list[Badge], list[RuleProgress]]:
        """The customer's badges, and progress toward every rule's badge they lack."""
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"{_BADGE_SELECT} WHERE b.merchant_id = %s AND b.customer_id = %s"
                " ORDER BY b.created_at, b.badge_id",
                (merchant_id, customer_id),
            )
            badges = [_badge(row) for row in await cursor.fetchall()]
            progress = await self._progress(conn, merchant_id, customer_id, lock=False)
            rules = await self._rules(conn, merchant_id)
        held = {badge.rule_id for badge in badges}
        toward = [
            progress_toward(rule, progress)
            for rule in rules
            if rule.rule_id not in held and rule.kind != RuleKind.MANUAL
        ]
        return badges, toward

    # ---- what events change (inside the consumer's transaction) --------------------------

    @staticmethod
    async def _progress(
        conn: AsyncConnection, merchant_id: str, customer_id: str, *, lock: bool
    ) -> Progress:
        if lock:
            # Creates the row first, so two first events of a customer serialise on it.
            await conn.execute(
                "INSERT INTO customer_progress (merchant_id, customer_id) VALUES (%s, %s)"
                " ON CONFLICT DO NOTHING",
                (merchant_id, customer_id),
                prepare=True,
            )
        cursor = conn.cursor(row_factory=class_row(Progress))
        await cursor.execute(
            f"SELECT {_PROGRESS_COLUMNS} FROM customer_progress"
            " WHERE merchant_id = %s AND customer_id = %s" + (" FOR UPDATE" if lock else ""),
            (merchant_id, customer_id),
            prepare=True,
        )
        return await cursor.fetchone() or Progress()

    @staticmethod
    async def _save_progress(
        conn: AsyncConnection, merchant_id: str, customer_id: str, p: Progress
    ) -> None:
        await conn.execute(
            "UPDATE customer_progress SET lifetime_points = %s, orders = %s, referrals = %s,"
            " last_order_month = %s, current_streak = %s, best_streak = %s, rfm_segment = %s"
            " WHERE merchant_id = %s AND customer_id = %s",
            (
                p.lifetime_points,
                p.orders,
                p.referrals,
                p.last_order_month,
                p.current_streak,
                p.best_streak,
                p.rfm_segment,
                merchant_id,
                customer_id,
            ),
            prepare=True,
        )

    async def _evaluate(
        self, conn: AsyncConnection, merchant_id: str, customer_id: str, progress: Progress
    ) -> list[str]:
        """Awards every badge whose rule the customer now meets; the new badges' ids."""
        awarded = []
        for rule in await self._rules(conn, merchant_id):
            if progress_toward(rule, progress).met:
                badge_id = await self._award(conn, merchant_id, customer_id, rule, "rule")
                if badge_id is not None:
                    awarded.append(badge_id)
        return awarded

    async def apply_points(
        self,
        conn: AsyncConnection,
        merchant_id: str,
        customer_id: str,
        *,
        delta: int,
        lifetime_after: int,
        order: bool,
        occurred_at: datetime,
    ) -> list[str]:
        """A credit (or a reversal, negative `delta`) of the customer's points: counters,
        scores on the boards of `occurred_at`'s periods, badges. Returns new badge ids."""
        progress = await self._progress(conn, merchant_id, customer_id, lock=True)
        progress = Progress(**{**progress.__dict__, "lifetime_points": max(0, lifetime_after)})
        if order:
            progress = progress.with_order(month_of(occurred_at))
        await self._save_progress(conn, merchant_id, customer_id, progress)
        for period_key in period_keys(occurred_at):
            # All time is the ledger's lifetime total (absolute: a replay cannot inflate it);
            # a month or week adds what was earned in it, never below zero.
            absolute = period_key == ALL_TIME
            await conn.execute(
                "INSERT INTO leaderboard_rankings (merchant_id, period_key, customer_id, score)"
                " VALUES (%s, %s, %s, greatest(%s, 0))"
                " ON CONFLICT (merchant_id, period_key, customer_id) DO UPDATE SET"
                " score = CASE WHEN %s THEN EXCLUDED.score"
                "  ELSE greatest(leaderboard_rankings.score + %s, 0) END,"
                " updated_at = now()",
                (
                    merchant_id,
                    period_key,
                    customer_id,
                    progress.lifetime_points if absolute else delta,
                    absolute,
                    delta,
                ),
                prepare=True,
            )
        return await self._evaluate(conn, merchant_id, customer_id, progress)

    async def apply_referral(
        self, conn: AsyncConnection, merchant_id: str, referrer_id: str
    ) -> list[str]:
        progress = await self._progress(conn, merchant_id, referrer_id, lock=True)
        progress = Progress(**{**progress.__dict__, "referrals": progress.referrals + 1})
        await self._save_progress(conn, merchant_id, referrer_id, progress)
        return await self._evaluate(conn, merchant_id, referrer_id, progress)

    async def apply_segment(
        self, conn: AsyncConnection, merchant_id: str, customer_id: str, segment: str
    ) -> list[str]:
        progress = await self._progress(conn, merchant_id, customer_id, lock=True)
        progress = Progress(**{**progress.__dict__, "rfm_segment": segment})
        await self._save_progress(conn, merchant_id, customer_id, progress)
        return await self._evaluate(conn, merchant_id, customer_id, progress)

    # ---- leaderboards --------------------------------------------------------------------

    async def scores_of(
        self, merchant_id: str, customer_id: str, period_keys_: Sequence[str]
    ) -> list[Score]:
        """The customer's scores on those boards, for the Redis boards to hold."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT r.period_key, r.score, NOT coalesce(p.leaderboard_opt_out, false)"
                " FROM leaderboard_rankings r LEFT JOIN customer_progress p"
                "  USING (merchant_id, customer_id)"
                " WHERE r.merchant_id = %s AND r.customer_id = %s AND r.period_key = ANY(%s)",
                (merchant_id, customer_id, list(period_keys_)),
            )
            return [
                Score(row[0], customer_id, int(row[1]), bool(row[2]))
                for row in await cursor.fetchall()
            ]

    async def board(
        self, merchant_id: str, period_key: str, chunk_size: int = 10_000
    ) -> AsyncIterator[list[tuple[str, int, bool]]]:
        """Every score of a board, `chunk_size` rows at a time (customer id, score, listed):
        what a lost Redis board is rebuilt from, streamed (a server-side cursor) rather than
        a million rows held at once."""
        async with self._pool.connection() as conn, conn.transaction():
            cursor = conn.cursor(f"board_{uuid.uuid4().hex}")
            await cursor.execute(
                "SELECT r.customer_id, r.score, NOT coalesce(p.leaderboard_opt_out, false)"
                " FROM leaderboard_rankings r LEFT JOIN customer_progress p"
                "  USING (merchant_id, customer_id)"
                " WHERE r.merchant_id = %s AND r.period_key = %s",
                (merchant_id, period_key),
            )
            while rows := await cursor.fetchmany(chunk_size):
                yield [(row[0], int(row[1]), bool(row[2])) for row in rows]

    async def changed_since(
        self, merchant_id: str, period_key: str, since: datetime
    ) -> list[Score]:
        """Scores of a board written since `since`: what a rebuild's snapshot may have missed."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT r.customer_id, r.score, NOT coalesce(p.leaderboard_opt_out, false)"
                " FROM leaderboard_rankings r LEFT JOIN customer_progress p"
                "  USING (merchant_id, customer_id)"
                " WHERE r.merchant_id = %s AND r.period_key = %s AND r.updated_at >= %s",
                (merchant_id, period_key, since),
            )
            return [
                Score(period_key, row[0], int(row[1]), bool(row[2]))
                for row in await cursor.fetchall()
            ]

    async def page(
        self, merchant_id: str, period_key: str, offset: int, limit: int
    ) -> list[tuple[str, int]]:
        """A page of the listing from PostgreSQL (when Redis cannot answer), in Redis' order:
        score, then customer id, both descending."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT r.customer_id, r.score FROM leaderboard_rankings r"
                " LEFT JOIN customer_progress p USING (merchant_id, customer_id)"
                " WHERE r.merchant_id = %s AND r.period_key = %s"
                " AND NOT coalesce(p.leaderboard_opt_out, false)"
                " ORDER BY r.score DESC, r.customer_id DESC OFFSET %s LIMIT %s",
                (merchant_id, period_key, offset, limit),
            )
            return [(row[0], int(row[1])) for row in await cursor.fetchall()]

    async def rank(
        self, merchant_id: str, period_key: str, customer_id: str
    ) -> tuple[int, int] | None:
        """(rank, score) among everyone on the board, opted out included; None: no score."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT 1 + (SELECT count(*) FROM leaderboard_rankings o"
                "  WHERE o.merchant_id = r.merchant_id AND o.period_key = r.period_key"
                "  AND (o.score, o.customer_id) > (r.score, r.customer_id)), r.score"
                " FROM leaderboard_rankings r"
                " WHERE r.merchant_id = %s AND r.period_key = %s AND r.customer_id = %s",
                (merchant_id, period_key, customer_id),
            )
            row = await cursor.fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    async def set_opt_out(
        self, merchant_id: str, customer_id: str, opted_out: bool, key: IdempotencyKey
    ) -> bool:
        async def write(conn: AsyncConnection) -> tuple[bool, str]:
            await conn.execute(
                "INSERT INTO customer_progress (merchant_id, customer_id, leaderboard_opt_out)"
                " VALUES (%s, %s, %s) ON CONFLICT (merchant_id, customer_id)"
                " DO UPDATE SET leaderboard_opt_out = EXCLUDED.leaderboard_opt_out",
                (merchant_id, customer_id, opted_out),
            )
            return opted_out, str(opted_out).lower()

        return await idempotency.write_once(
            self._pool,
            merchant_id,
            key,
            write=write,
            replay=_replay_bool,
        )

    async def period_keys_of(self, merchant_id: str, customer_id: str) -> list[str]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT period_key FROM leaderboard_rankings"
                " WHERE merchant_id = %s AND customer_id = %s",
                (merchant_id, customer_id),
            )
            return [row[0] for row in await cursor.fetchall()]

    # ---- personal data (the platform's export/erase contract) ----------------------------

    async def export_customer(self, merchant_id: str, customer_id: str) -> dict[str, Any]:
        badges, _ = await self.customer_badges(merchant_id, customer_id)
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"SELECT {_PROGRESS_COLUMNS}, leaderboard_opt_out FROM customer_progress"
                " WHERE merchant_id = %s AND customer_id = %s",
                (merchant_id, customer_id),
            )
            progress = await cursor.fetchone()
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                "SELECT period_key, score FROM leaderboard_rankings"
                " WHERE merchant_id = %s AND customer_id = %s ORDER BY period_key",
                (merchant_id, customer_id),
            )
            rankings = await cursor.fetchall()
        return {
            "badges": [
                {
                    "badge_id": b.badge_id,
                    "name": b.name,
                    "kind": b.kind.value,
                    "awarded_by": b.awarded_by,
                    "awarded_at": b.awarded_at.isoformat(),
                }
                for b in badges
            ],
            "progress": progress,
            "leaderboard_rankings": rankings,
        }

    async def erase_customer(self, merchant_id: str, customer_id: str) -> int:
        """The customer's badges, counters and scores, the audit rows naming them (the
        deletes' own included) and their published badge.awarded outbox rows; idempotent.
        `Leaderboards.erase_customer` also takes them off the Redis boards."""
        erased = 0
        async with self._pool.connection() as conn, conn.transaction():
            for table in ("customer_badges", "customer_progress", "leaderboard_rankings"):
                cursor = await conn.execute(
                    f"DELETE FROM {table} WHERE merchant_id = %s AND customer_id = %s",
                    (merchant_id, customer_id),
                )
                erased += cursor.rowcount
            # After the deletes: their audit rows (written by trigger, in this transaction)
            # hold the customer's id too.
            await conn.execute(
                "DELETE FROM audit_logs WHERE merchant_id = %s AND user_id = %s",
                (merchant_id, customer_id),
            )
            erased += await redact_unsent_events(conn, merchant_id, (customer_id,))
            erased += await forget_sent_events(conn, merchant_id, customer_id)
        return erased

    async def erase_merchant(self, merchant_id: str) -> int:
        erased = 0
        async with self._pool.connection() as conn, conn.transaction():
            for table in (
                "customer_badges",
                "customer_progress",
                "leaderboard_rankings",
                "badge_rules",
            ):
                cursor = await conn.execute(
                    f"DELETE FROM {table} WHERE merchant_id = %s", (merchant_id,)
                )
                erased += cursor.rowcount
            erased += await erase_platform_rows(conn, merchant_id)
        return erased


async def _replay_bool(conn: AsyncConnection, reference: str) -> bool:
    return reference == "true"
