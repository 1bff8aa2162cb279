"""PostgreSQL ledger store: a balance row per customer plus immutable transactions."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, astuple, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from google.protobuf.message import Message
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from loyalnest.platform import idempotency, personal_data
from loyalnest.platform.errors import NotFound
from loyalnest.platform.events import inbox, outbox
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.idempotency import IdempotencyKey, IdempotencyKeyReused
from loyalnest.platform.personal_data import CustomerExport, CustomerRef
from loyalnest.platform.postgres import Database
from loyalnest.services.points.domain import (
    TIER_ENTRY_REASON_PREFIX,
    Balance,
    Channel,
    InsufficientPoints,
    LedgerMoved,
    LedgerNotFound,
    LimitPeriod,
    Posting,
    PostingResult,
    Redemption,
    RedemptionGuard,
    RedemptionLimitReached,
    RedemptionStatus,
    Reward,
    RewardKind,
    RewardNotFound,
    Segment,
    TierInput,
    TierState,
    Transaction,
    TransactionType,
    pending_redemption,
)
from loyalnest.services.points.events import ledger_event
from loyalnest.services.points.liability import LiabilityFigures
from loyalnest.services.points.orders import (
    OrderAdjustment,
    OrderEarning,
    OrderSettlement,
    OrderStatus,
)
from loyalnest.services.points.rules import RuleEvent
from loyalnest.services.points.store import postgres_liability
from loyalnest.services.points.store.base import (
    CUSTOMER_TABLES,
    MERCHANT_TABLES,
    OrderCredit,
    RecordedOrder,
    erased_customer_id,
    reward_columns,
    reward_row,
)

_TIER_INPUTS = """
WITH page AS (
    SELECT customer_id FROM ledgers
    WHERE merchant_id = %(merchant)s AND customer_id > %(after)s
    ORDER BY customer_id LIMIT %(limit)s
), sums AS (
    SELECT t.customer_id,
        sum(t.points) FILTER (
            WHERE (t.type = 'earn' AND NOT starts_with(t.reason, %(entry)s))
               OR (t.type = 'reversal' AND t.points < 0)) AS earned,
        -sum(t.points) FILTER (
            WHERE t.type = 'redeem' OR (t.type = 'reversal' AND t.points > 0)) AS redeemed
    FROM points_transactions t
    WHERE t.merchant_id = %(merchant)s AND t.customer_id > %(after)s
      AND t.customer_id <= (SELECT max(customer_id) FROM page)
      AND (%(since)s::timestamptz IS NULL OR t.created_at >= %(since)s::timestamptz)
    GROUP BY t.customer_id
), tiers AS (
    -- The page's range, not a join on every tier row of the merchant.
    SELECT customer_id, tier_id, qualifying, term_end, changed_at, version
    FROM customer_tiers
    WHERE merchant_id = %(merchant)s AND customer_id > %(after)s
      AND customer_id <= (SELECT max(customer_id) FROM page)
)
SELECT p.customer_id, coalesce(s.earned, 0), coalesce(s.redeemed, 0),
    c.tier_id, c.qualifying, c.term_end, c.changed_at, c.version
FROM page p
LEFT JOIN sums s ON s.customer_id = p.customer_id
LEFT JOIN tiers c ON c.customer_id = p.customer_id
ORDER BY p.customer_id
"""

# One customer's tier_inputs (customer_tier_input): whether the ledger exists, the window's
# sums (domain.net_totals, as _TIER_INPUTS) and the tier row, in one round trip per
# evaluation instead of the whole ledger read into Python and the tier row read apart.
_CUSTOMER_TIER_INPUT = """
WITH sums AS (
    SELECT
        sum(t.points) FILTER (
            WHERE (t.type = 'earn' AND NOT starts_with(t.reason, %(entry)s))
               OR (t.type = 'reversal' AND t.points < 0)) AS earned,
        -sum(t.points) FILTER (
            WHERE t.type = 'redeem' OR (t.type = 'reversal' AND t.points > 0)) AS redeemed
    FROM points_transactions t
    WHERE t.merchant_id = %(merchant)s AND t.customer_id = %(customer)s
      AND (%(since)s::timestamptz IS NULL OR t.created_at >= %(since)s::timestamptz)
)
SELECT EXISTS (SELECT 1 FROM ledgers WHERE merchant_id = %(merchant)s
                                          AND customer_id = %(customer)s),
    coalesce(s.earned, 0), coalesce(s.redeemed, 0),
    c.tier_id, c.qualifying, c.term_end, c.changed_at, c.version
FROM sums s
LEFT JOIN customer_tiers c ON c.merchant_id = %(merchant)s AND c.customer_id = %(customer)s
"""

# A tier-aware order's reads (rule_events_and_tier): the tier row first (part 0, one row
# whether or not the customer has one), then the rule events (part 1), one round trip.
_RULE_EVENTS_AND_TIER = """
SELECT 0 AS part, NULL AS rule_id, NULL AS occurrence, NULL::bigint AS points,
    NULL::numeric AS amount, NULL::timestamptz AS at,
    c.tier_id, c.qualifying, c.term_end, c.changed_at, c.version
FROM (SELECT 1) AS one
LEFT JOIN customer_tiers c ON c.merchant_id = %(merchant)s AND c.customer_id = %(customer)s
UNION ALL
SELECT 1, rule_id, occurrence, points, amount, at, NULL, NULL, NULL, NULL, NULL
FROM rule_events
WHERE merchant_id = %(merchant)s AND customer_id = %(customer)s AND rule_id = ANY(%(rules)s)
  AND at >= %(since)s
ORDER BY part, at, occurrence
"""

# The expiry job's page (expiry_candidates): the page's ledgers with points, and for each
# whether its points may be due or noticed, from the transactions of the page's range.
_CANDIDATE_PAGE = """
WITH page AS (
    SELECT customer_id, balance FROM ledgers
    WHERE merchant_id = %(merchant)s AND customer_id > %(after)s AND balance > 0
    ORDER BY customer_id LIMIT %(limit)s
), recent AS (
    SELECT customer_id, {aggregate} AS value FROM points_transactions
    WHERE merchant_id = %(merchant)s AND customer_id > %(after)s
      AND customer_id <= (SELECT max(customer_id) FROM page) AND {condition}
    GROUP BY customer_id
)
SELECT p.customer_id, {candidate}
FROM page p LEFT JOIN recent r ON r.customer_id = p.customer_id
ORDER BY p.customer_id
"""
_EARNED_CANDIDATES = _CANDIDATE_PAGE.format(
    aggregate="sum(points)",
    condition="points > 0 AND created_at > %(cutoff)s",
    candidate="p.balance > coalesce(r.value, 0)",
)
_INACTIVE_CANDIDATES = _CANDIDATE_PAGE.format(
    aggregate="max(created_at)",
    condition="type IN ('earn', 'redeem')",
    candidate="r.value IS NULL OR r.value <= %(cutoff)s",
)

_COLUMNS = [field.name for field in fields(Transaction)]
_SELECT_COLUMNS = ", ".join(f"{c}::text AS {c}" if c == "transaction_id" else c for c in _COLUMNS)
_INSERT_TRANSACTION = (
    f"INSERT INTO points_transactions ({', '.join(_COLUMNS)})"
    f" VALUES ({', '.join(['%s'] * len(_COLUMNS))})"
)

_LEDGER_RETURNING = (
    " RETURNING balance, lifetime_earned, lifetime_redeemed, last_sequence, updated_at"
)
_POST_LEDGER = (
    "UPDATE ledgers SET balance = balance + %(points)s,"
    " lifetime_earned = lifetime_earned + %(earned)s,"
    " lifetime_redeemed = lifetime_redeemed + %(redeemed)s,"
    " last_sequence = last_sequence + 1, updated_at = now()"
    " WHERE merchant_id = %(merchant_id)s AND customer_id = %(customer_id)s"
    "   AND balance + %(points)s >= 0"
    "   AND (%(expected)s::bigint IS NULL OR last_sequence = %(expected)s::bigint)"
    + _LEDGER_RETURNING
)


def _credit_ledger(guard: str = "true", prefix: str = "") -> str:
    """_POST_LEDGER for a credit (no expected sequence) that opens the ledger if there is none;
    applied only when `guard` holds. `prefix`: of the points parameters' names."""
    points, earned, redeemed = (f"%({prefix}{name})s" for name in ("points", "earned", "redeemed"))
    return (
        "INSERT INTO ledgers AS l (merchant_id, customer_id, balance, lifetime_earned,"
        " lifetime_redeemed, last_sequence)"
        f" SELECT %(merchant_id)s, %(customer_id)s, {points}, {earned}, {redeemed}, 1"
        f" WHERE {guard}"
        f" ON CONFLICT (merchant_id, customer_id) DO UPDATE SET balance = l.balance + {points},"
        f" lifetime_earned = l.lifetime_earned + {earned},"
        f" lifetime_redeemed = l.lifetime_redeemed + {redeemed},"
        " last_sequence = l.last_sequence + 1, updated_at = now()"
        f" WHERE l.balance + {points} >= 0" + _LEDGER_RETURNING
    )


_CREDIT_LEDGER = _credit_ledger()

_ORDER_COLUMNS = [field.name for field in fields(OrderEarning)]
_SELECT_ORDER = f"SELECT {', '.join(_ORDER_COLUMNS)} FROM order_earnings"
_INSERT_ORDER = (
    f"INSERT INTO order_earnings ({', '.join(_ORDER_COLUMNS)})"
    f" VALUES ({', '.join(f'%({c})s' for c in _ORDER_COLUMNS)})"
    " ON CONFLICT DO NOTHING RETURNING 1"
)
# An order approved on arrival and its credit in one statement (record_approved_order): the
# order row, then only if it is new the credit's key, then only if that is new the ledger's
# credit and its transaction row. Answers whether the row and the key were new, and the ledger
# after the credit; the caller adds the event (its envelope needs that ledger) and commits.
_RECORD_APPROVED_ORDER = (
    f"WITH placed AS ({_INSERT_ORDER}),"
    f" claimed AS (INSERT INTO idempotency_keys {idempotency.CLAIM_COLUMNS}"
    f" SELECT {idempotency.CLAIM_VALUES} WHERE EXISTS (SELECT 1 FROM placed)"
    " ON CONFLICT DO NOTHING RETURNING 1),"
    f" credited AS ({_credit_ledger('EXISTS (SELECT 1 FROM claimed)', prefix='credit_')}),"
    f" recorded AS (INSERT INTO points_transactions ({', '.join(_COLUMNS)})"
    " SELECT %(transaction_id)s::uuid, %(merchant_id)s, %(customer_id)s, last_sequence,"
    " %(credit_type)s, %(credit_points)s, %(credit_reason)s, updated_at, balance,"
    " lifetime_earned, lifetime_redeemed, %(credit_rule_id)s FROM credited)"
    " SELECT EXISTS (SELECT 1 FROM placed), EXISTS (SELECT 1 FROM claimed), c.balance,"
    " c.lifetime_earned, c.lifetime_redeemed, c.last_sequence, c.updated_at"
    " FROM (SELECT 1) AS one LEFT JOIN credited AS c ON true"
)
# Orders approved on arrival and their credits, set-wise (record_approved_orders): what
# _RECORD_APPROVED_ORDER does for one order, for many whose customers all differ (a statement
# may write a ledger row once). Its parameter is a JSON array of {"order": an order_earnings
# row, "credit": _CREDIT_FIELDS}; it answers a row per order, in their order. Rows are written
# in order of (merchant, customer), so two batches lock the ledgers they share in one order.
_CREDIT_FIELDS = (
    "transaction_id uuid, key_namespace text, key_value text, key_fingerprint text,"
    " credit_type text, credit_points bigint, credit_earned bigint, credit_redeemed bigint,"
    " credit_reason text, credit_rule_id text"
)
_RECORD_APPROVED_ORDERS = (
    "WITH input AS (SELECT e.n, o AS ord, o.merchant_id, o.order_id, o.customer_id, c.*"
    " FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS e(doc, n)"
    " CROSS JOIN LATERAL jsonb_populate_record(NULL::order_earnings, e.doc->'order') AS o"
    f" CROSS JOIN LATERAL jsonb_to_record(e.doc->'credit') AS c({_CREDIT_FIELDS})),"
    f" placed AS (INSERT INTO order_earnings ({', '.join(_ORDER_COLUMNS)})"
    f" SELECT {', '.join(f'(ord).{c}' for c in _ORDER_COLUMNS)} FROM input"
    " ORDER BY merchant_id, customer_id ON CONFLICT DO NOTHING RETURNING merchant_id, order_id),"
    f" claimed AS (INSERT INTO idempotency_keys {idempotency.CLAIM_COLUMNS}"
    " SELECT i.merchant_id, i.key_namespace, i.key_value, i.key_fingerprint, i.transaction_id"
    " FROM input AS i JOIN placed USING (merchant_id, order_id)"
    " ORDER BY i.merchant_id, i.customer_id"
    " ON CONFLICT DO NOTHING RETURNING merchant_id, namespace, idempotency_key),"
    " credited AS (INSERT INTO ledgers AS l (merchant_id, customer_id, balance, lifetime_earned,"
    " lifetime_redeemed, last_sequence)"
    " SELECT i.merchant_id, i.customer_id, i.credit_points, i.credit_earned, i.credit_redeemed, 1"
    " FROM input AS i JOIN claimed AS k ON k.merchant_id = i.merchant_id"
    " AND k.namespace = i.key_namespace AND k.idempotency_key = i.key_value"
    " ORDER BY i.merchant_id, i.customer_id"
    " ON CONFLICT (merchant_id, customer_id) DO UPDATE SET balance = l.balance + excluded.balance,"
    " lifetime_earned = l.lifetime_earned + excluded.lifetime_earned,"
    " lifetime_redeemed = l.lifetime_redeemed + excluded.lifetime_redeemed,"
    " last_sequence = l.last_sequence + 1, updated_at = now()"
    " WHERE l.balance + excluded.balance >= 0"
    " RETURNING merchant_id, customer_id, balance, lifetime_earned, lifetime_redeemed,"
    " last_sequence, updated_at),"
    f" recorded AS (INSERT INTO points_transactions ({', '.join(_COLUMNS)})"
    " SELECT i.transaction_id, i.merchant_id, i.customer_id, c.last_sequence, i.credit_type,"
    " i.credit_points, i.credit_reason, c.updated_at, c.balance, c.lifetime_earned,"
    " c.lifetime_redeemed, i.credit_rule_id"
    " FROM credited AS c JOIN input AS i USING (merchant_id, customer_id))"
    " SELECT p.order_id IS NOT NULL, k.idempotency_key IS NOT NULL, c.balance,"
    " c.lifetime_earned, c.lifetime_redeemed, c.last_sequence, c.updated_at"
    " FROM input AS i LEFT JOIN placed AS p USING (merchant_id, order_id)"
    " LEFT JOIN claimed AS k ON k.merchant_id = i.merchant_id"
    " AND k.namespace = i.key_namespace AND k.idempotency_key = i.key_value"
    " LEFT JOIN credited AS c ON c.merchant_id = i.merchant_id AND c.customer_id = i.customer_id"
    " ORDER BY i.n"
)
_SELECT_ADJUSTMENTS = (
    "SELECT adjustment_id, points, reason, applied FROM order_adjustments"
    " WHERE merchant_id = %s AND order_id = %s ORDER BY created_at, adjustment_id"
)


def _order(row: dict[str, Any]) -> OrderEarning:
    return OrderEarning(**{**row, "status": OrderStatus(row["status"])})


def _transaction(row: dict[str, Any]) -> Transaction:
    return Transaction(**{**row, "type": TransactionType(row["type"])})


def _posted(posting: Posting, transaction_id: str, ledger: Sequence[Any]) -> Transaction:
    """The transaction of `posting`, from the ledger row its update returned
    (_LEDGER_RETURNING)."""
    balance, earned, redeemed, sequence, created_at = ledger
    return Transaction(
        transaction_id=transaction_id,
        merchant_id=posting.merchant_id,
        customer_id=posting.customer_id,
        sequence=sequence,
        type=posting.type,
        points=posting.points,
        reason=posting.reason,
        created_at=created_at,
        balance_after=balance,
        lifetime_earned_after=earned,
        lifetime_redeemed_after=redeemed,
        rule_id=posting.rule_id,
    )


def _order_row(earning: OrderEarning) -> dict[str, Any]:
    """The order as the parameters of an order_earnings row (_ORDER_COLUMNS)."""
    return {
        **{name: getattr(earning, name) for name in _ORDER_COLUMNS},
        "status": str(earning.status),
    }


def _credit_params(posting: Posting, key: IdempotencyKey, transaction_id: str) -> dict[str, Any]:
    """An order's credit as the parameters of _RECORD_APPROVED_ORDER (and the fields of
    _RECORD_APPROVED_ORDERS' credits): its key's claim, its transaction, its posting."""
    return {
        **idempotency.claim_params(posting.merchant_id, key, transaction_id),
        "transaction_id": transaction_id,
        "credit_type": str(posting.type),
        "credit_points": posting.points,
        "credit_earned": posting.earned,
        "credit_redeemed": posting.redeemed,
        "credit_reason": posting.reason,
        "credit_rule_id": posting.rule_id,
    }


def _json(value: object) -> str:
    """`value` as JSON for a `%s::jsonb` parameter (Decimal amounts as exact strings)."""
    return orjson.dumps(value, default=_exact).decode()


def _exact(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class _NotAtOnce(Exception):
    """The one-statement path of an order cannot finish it: roll back, take the usual one."""


def _credits_the_order(earning: OrderEarning, posting: Posting) -> bool:
    """A credit of the order's own customer that may open their ledger (_credit_ledger): what
    _RECORD_APPROVED_ORDER writes, its ledger parameters shared with the order row."""
    return (
        posting.opens_ledger
        and posting.expected_sequence is None
        and (posting.merchant_id, posting.customer_id) == (earning.merchant_id, earning.customer_id)
    )


class PostgresLedgerStore:
    def __init__(self, database: Database) -> None:
        self._pool = database.pool
        self._database = database

    async def ping(self) -> None:
        await self._database.ping()

    async def get_balance(self, merchant_id: str, customer_id: str) -> Balance:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT customer_id, balance, lifetime_earned, lifetime_redeemed, updated_at,"
                " last_sequence"
                " FROM ledgers WHERE merchant_id = %s AND customer_id = %s",
                (merchant_id, customer_id),
                prepare=True,
            )
            row = await cursor.fetchone()
        if row is None:
            raise LedgerNotFound(customer_id)
        return Balance(*row)

    async def post(self, posting: Posting, key: IdempotencyKey) -> PostingResult:
        async def apply(conn: AsyncConnection) -> tuple[PostingResult, str]:
            transaction = await self._apply(conn, posting)
            return PostingResult.of(transaction), transaction.transaction_id

        async def replay(conn: AsyncConnection, transaction_id: str) -> PostingResult:
            transaction = await self._transaction_by_id(conn, transaction_id)
            return PostingResult.of(transaction, replayed=True)

        return await idempotency.write_once(
            self._pool, posting.merchant_id, key, write=apply, replay=replay
        )

    async def _post_in(
        self, conn: AsyncConnection, posting: Posting, key: IdempotencyKey
    ) -> PostingResult:
        """`post` inside the caller's transaction (write_once's steps on its connection),
        the transaction's id chosen first and claimed with the key: no `record` statement."""
        transaction_id = str(uuid.uuid4())
        earlier = await idempotency.claim(conn, posting.merchant_id, key, result_ref=transaction_id)
        if earlier is not None:
            return PostingResult.of(await self._transaction_by_id(conn, earlier), replayed=True)
        return PostingResult.of(await self._apply(conn, posting, transaction_id))

    async def _apply(
        self, conn: AsyncConnection, posting: Posting, transaction_id: str | None = None
    ) -> Transaction:
        ledger_key = (posting.merchant_id, posting.customer_id)
        params = {
            "expected": posting.expected_sequence,
            "points": posting.points,
            "earned": posting.earned,
            "redeemed": posting.redeemed,
            "merchant_id": posting.merchant_id,
            "customer_id": posting.customer_id,
        }
        if posting.opens_ledger and posting.expected_sequence is None:
            # A credit that may open the ledger: one upsert, not an insert and an update.
            cursor = await conn.execute(_CREDIT_LEDGER, params, prepare=True)
        else:
            if posting.opens_ledger:
                await conn.execute(
                    "INSERT INTO ledgers (merchant_id, customer_id) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING",
                    ledger_key,
                )
            # The row lock plus the guard in WHERE make concurrent debits unable to overdraw.
            cursor = await conn.execute(_POST_LEDGER, params, prepare=True)
        updated = await cursor.fetchone()
        if updated is None:
            cursor = await conn.execute(
                "SELECT balance, last_sequence FROM ledgers"
                " WHERE merchant_id = %s AND customer_id = %s",
                ledger_key,
            )
            current = await cursor.fetchone()
            if current is None:
                raise LedgerNotFound(posting.customer_id)
            if posting.expected_sequence not in (None, current[1]):
                raise LedgerMoved(posting.customer_id, posting.expected_sequence)
            raise InsufficientPoints(posting.customer_id, current[0], -posting.points)
        transaction = _posted(posting, transaction_id or str(uuid.uuid4()), updated)
        row = astuple(transaction)
        await conn.execute(
            _INSERT_TRANSACTION,
            tuple(str(v) if isinstance(v, TransactionType) else v for v in row),
            prepare=True,
        )
        # After the UPDATE above: the ledger row's lock orders one customer's events.
        await outbox.enqueue(
            conn,
            posting.merchant_id,
            ledger_event(transaction),
            occurred_at=transaction.created_at,
        )
        return transaction

    async def open_ledger(
        self, merchant_id: str, customer_id: str, *, event: ConsumedEvent
    ) -> bool:
        async with self._pool.connection() as conn, conn.transaction():
            if not await inbox.claim(conn, event):
                return False
            await conn.execute(
                "INSERT INTO ledgers (merchant_id, customer_id) VALUES (%s, %s)"
                " ON CONFLICT DO NOTHING",
                (merchant_id, customer_id),
            )
            return True

    async def _transaction_by_id(self, conn: AsyncConnection, transaction_id: str) -> Transaction:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(
            f"SELECT {_SELECT_COLUMNS} FROM points_transactions WHERE transaction_id = %s",
            (transaction_id,),
        )
        row = await cursor.fetchone()
        if row is None:  # pragma: no cover - written in the same transaction as the key
            raise RuntimeError(f"transaction {transaction_id} recorded for a key is missing")
        return _transaction(row)

    async def list_transactions(
        self, merchant_id: str, customer_id: str, *, limit: int, before_sequence: int | None
    ) -> list[Transaction]:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"SELECT {_SELECT_COLUMNS} FROM points_transactions"
                " WHERE merchant_id = %s AND customer_id = %s AND sequence < %s"
                " ORDER BY sequence DESC LIMIT %s",
                (
                    merchant_id,
                    customer_id,
                    2**63 - 1 if before_sequence is None else before_sequence,
                    limit,
                ),
            )
            rows = await cursor.fetchall()
            if not rows:
                exists = await conn.execute(
                    "SELECT 1 FROM ledgers WHERE merchant_id = %s AND customer_id = %s",
                    (merchant_id, customer_id),
                )
                if await exists.fetchone() is None:
                    raise LedgerNotFound(customer_id)
        return [_transaction(row) for row in rows]

    # ---- rewards catalog and redemptions ------------------------------------------------

    async def create_reward(self, reward: Reward, fingerprint: str) -> Reward:
        row = {**reward_row(reward), "request_fingerprint": fingerprint}
        async with self._pool.connection() as conn:
            await conn.execute(
                f"INSERT INTO rewards ({', '.join(row)})"
                f" VALUES ({', '.join(f'%({c})s' for c in row)}) ON CONFLICT DO NOTHING",
                row,
            )
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"SELECT {_REWARD_COLUMNS}, request_fingerprint FROM rewards"
                " WHERE merchant_id = %s AND reward_id = %s",
                (reward.merchant_id, reward.reward_id),
            )
            stored = await cursor.fetchone()
        assert stored is not None  # inserted above or before
        if stored.pop("request_fingerprint") != fingerprint:
            raise IdempotencyKeyReused()
        return _reward(stored)

    async def get_reward(self, merchant_id: str, reward_id: str) -> Reward:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"SELECT {_REWARD_COLUMNS} FROM rewards WHERE merchant_id = %s AND reward_id = %s",
                (merchant_id, reward_id),
            )
            row = await cursor.fetchone()
        if row is None:
            raise RewardNotFound(reward_id)
        return _reward(row)

    async def update_reward(
        self, merchant_id: str, reward_id: str, changes: Mapping[str, object]
    ) -> Reward:
        params = reward_columns(changes)
        assignments = [sql.SQL("updated_at = now()")] + [
            sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name))
            for name in sorted(changes)
        ]
        query = sql.SQL(
            "UPDATE rewards SET {} WHERE merchant_id = %(merchant_id)s"
            " AND reward_id = %(reward_id)s RETURNING {}"
        ).format(sql.SQL(", ").join(assignments), sql.SQL(_REWARD_COLUMNS))
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                query, {**params, "merchant_id": merchant_id, "reward_id": reward_id}
            )
            row = await cursor.fetchone()
        if row is None:
            raise RewardNotFound(reward_id)
        return _reward(row)

    async def list_rewards(
        self, merchant_id: str, *, active_only: bool, limit: int, offset: int
    ) -> list[Reward]:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"SELECT {_REWARD_COLUMNS} FROM rewards WHERE merchant_id = %s"
                " AND (active OR NOT %s) ORDER BY created_at, reward_id LIMIT %s OFFSET %s",
                (merchant_id, active_only, limit, offset),
            )
            rows = await cursor.fetchall()
        return [_reward(row) for row in rows]

    async def record_redemption(self, redemption: Redemption) -> Redemption:
        async with self._pool.connection() as conn:
            return await self._insert_redemption(conn, redemption)

    async def redeem(
        self, posting: Posting, key: IdempotencyKey, reward: Reward, guard: RedemptionGuard
    ) -> tuple[PostingResult, Redemption]:
        async def apply(conn: AsyncConnection) -> tuple[tuple[PostingResult, Redemption], str]:
            if guard.refusal is not None:
                raise guard.refusal
            if guard.limit_max:
                # The ledger row's lock first: a concurrent redemption of this customer waits
                # here until the one before commits, and the count (a new snapshot per
                # statement) then sees its redemption.
                await conn.execute(
                    "SELECT 1 FROM ledgers WHERE merchant_id = %s AND customer_id = %s FOR UPDATE",
                    (posting.merchant_id, posting.customer_id),
                )
                # Counting stops at the limit: the work is bounded by it, not by history.
                cursor = await conn.execute(
                    "SELECT count(*) FROM (SELECT 1 FROM reward_redemptions"
                    " WHERE merchant_id = %s AND customer_id = %s AND reward_id = %s"
                    " AND created_at >= %s AND status IN ('pending', 'completed') LIMIT %s) r",
                    (
                        posting.merchant_id,
                        posting.customer_id,
                        reward.reward_id,
                        guard.since,
                        guard.limit_max,
                    ),
                )
                counted = await cursor.fetchone()
                if counted is not None and counted[0] >= guard.limit_max:
                    raise RedemptionLimitReached(
                        reward.reward_id, reward.limit_max, reward.limit_period
                    )
            transaction = await self._apply(conn, posting)
            if guard.tier_ids:
                # After the debit (the ledger row, then the tier row: erase_customer's order).
                # FOR SHARE waits for a tier change in flight (save_tier's UPDATE of the row)
                # and reads what it committed; one that starts later waits for this debit.
                cursor = await conn.execute(
                    "SELECT tier_id, qualifying, term_end, changed_at, version FROM customer_tiers"
                    " WHERE merchant_id = %s AND customer_id = %s FOR SHARE",
                    (posting.merchant_id, posting.customer_id),
                )
                row = await cursor.fetchone()
                refused = guard.tier_refusal(
                    reward.reward_id, None if row is None else TierState(*row)
                )
                if refused is not None:
                    raise refused  # the debit rolls back with the transaction
            redemption = await self._insert_redemption(
                conn, pending_redemption(transaction, reward)
            )
            return (PostingResult.of(transaction), redemption), transaction.transaction_id

        async def replay(
            conn: AsyncConnection, transaction_id: str
        ) -> tuple[PostingResult, Redemption]:
            transaction = await self._transaction_by_id(conn, transaction_id)
            # A debit posted before redemptions were written with it may lack its row.
            redemption = await self._insert_redemption(
                conn, pending_redemption(transaction, reward)
            )
            return PostingResult.of(transaction, replayed=True), redemption

        return await idempotency.write_once(
            self._pool, posting.merchant_id, key, write=apply, replay=replay
        )

    async def _insert_redemption(self, conn: AsyncConnection, redemption: Redemption) -> Redemption:
        row = {**asdict(redemption), "status": str(redemption.status)}
        await conn.execute(
            f"INSERT INTO reward_redemptions ({_REDEMPTION_COLUMNS})"
            f" VALUES ({', '.join(f'%({c})s' for c in _REDEMPTION_FIELDS)})"
            " ON CONFLICT DO NOTHING",
            row,
        )
        return await self._redemption(conn, redemption.merchant_id, redemption.redemption_id)

    async def redemption_counts(
        self, merchant_id: str, customer_id: str, since: Mapping[str, datetime]
    ) -> dict[str, int]:
        counts = dict.fromkeys(since, 0)
        if not since:
            return counts
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT reward_id::text, created_at FROM reward_redemptions"
                " WHERE merchant_id = %s AND customer_id = %s AND reward_id = ANY(%s::uuid[])"
                " AND created_at >= %s AND status IN ('pending', 'completed')",
                (merchant_id, customer_id, list(since), min(since.values())),
            )
            for reward_id, created_at in await cursor.fetchall():
                if created_at >= since[reward_id]:
                    counts[reward_id] += 1
        return counts

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
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE reward_redemptions SET status = %(status)s,"
                " discount_code = CASE WHEN %(code)s = '' THEN discount_code ELSE %(code)s END,"
                " gift_card_id = CASE WHEN %(card)s = '' THEN gift_card_id ELSE %(card)s END,"
                " gift_card_last_characters = CASE WHEN %(last)s = ''"
                "   THEN gift_card_last_characters ELSE %(last)s END,"
                " failure = %(failure)s, updated_at = now()"
                " WHERE merchant_id = %(merchant_id)s AND redemption_id = %(redemption_id)s"
                " AND status = %(from_status)s",
                {
                    "status": str(status),
                    "code": discount_code,
                    "card": gift_card_id,
                    "last": gift_card_last_characters,
                    "failure": failure,
                    "merchant_id": merchant_id,
                    "redemption_id": redemption_id,
                    "from_status": str(from_status),
                },
            )
            return await self._redemption(conn, merchant_id, redemption_id)

    async def get_redemption(self, merchant_id: str, redemption_id: str) -> Redemption:
        async with self._pool.connection() as conn:
            return await self._redemption(conn, merchant_id, redemption_id)

    async def _redemption(
        self, conn: AsyncConnection, merchant_id: str, redemption_id: str
    ) -> Redemption:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(
            f"SELECT {_REDEMPTION_SELECT} FROM reward_redemptions"
            " WHERE merchant_id = %s AND redemption_id = %s",
            (merchant_id, redemption_id),
        )
        row = await cursor.fetchone()
        if row is None:
            raise NotFound("reward_redemption", redemption_id)
        return Redemption(**{**row, "status": RedemptionStatus(row["status"])})

    # ---- earning from orders ------------------------------------------------------------

    async def save_program_settings(self, merchant_id: str, version: int, settings: bytes) -> bool:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "INSERT INTO program_settings_copies (merchant_id, version, settings)"
                " VALUES (%s, %s, %s) ON CONFLICT (merchant_id) DO UPDATE"
                " SET version = excluded.version, settings = excluded.settings, updated_at = now()"
                " WHERE program_settings_copies.version < excluded.version RETURNING 1",
                (merchant_id, version, settings),
            )
            return await cursor.fetchone() is not None

    async def program_settings(self, merchant_id: str) -> bytes | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT settings FROM program_settings_copies WHERE merchant_id = %s",
                (merchant_id,),
                prepare=True,
            )
            row = await cursor.fetchone()
        return None if row is None else bytes(row[0])

    async def program_copies(self) -> list[tuple[str, bytes]]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute("SELECT merchant_id, settings FROM program_settings_copies")
            return [(merchant_id, bytes(raw)) for merchant_id, raw in await cursor.fetchall()]

    # ---- earning rules ------------------------------------------------------------------

    async def rule_events(
        self, merchant_id: str, customer_id: str, since: Mapping[str, datetime]
    ) -> dict[str, list[RuleEvent]]:
        found: dict[str, list[RuleEvent]] = {rule_id: [] for rule_id in since}
        if not since:
            return found
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT rule_id, occurrence, points, amount, at FROM rule_events"
                " WHERE merchant_id = %s AND customer_id = %s AND rule_id = ANY(%s)"
                " AND at >= %s ORDER BY at, occurrence",
                (merchant_id, customer_id, list(since), min(since.values())),
            )
            for rule_id, occurrence, points, amount, at in await cursor.fetchall():
                if at >= since[rule_id]:
                    found[rule_id].append(RuleEvent(rule_id, occurrence, points, amount, at))
        return found

    async def rule_events_and_tier(
        self, merchant_id: str, customer_id: str, since: Mapping[str, datetime]
    ) -> tuple[dict[str, list[RuleEvent]], TierState | None]:
        if not since:
            return {}, await self.customer_tier(merchant_id, customer_id)
        found: dict[str, list[RuleEvent]] = {rule_id: [] for rule_id in since}
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                _RULE_EVENTS_AND_TIER,
                {
                    "merchant": merchant_id,
                    "customer": customer_id,
                    "rules": list(since),
                    "since": min(since.values()),
                },
            )
            rows = await cursor.fetchall()
        tier_id, *state = rows[0][6:]  # part 0: always there, first
        for _, rule_id, occurrence, points, amount, at, *_ in rows[1:]:
            if at >= since[rule_id]:
                found[rule_id].append(RuleEvent(rule_id, occurrence, points, amount, at))
        return found, None if tier_id is None else TierState(tier_id, *state)

    async def record_rule_events(
        self, merchant_id: str, customer_id: str, events: Sequence[RuleEvent]
    ) -> None:
        if not events:
            return
        async with self._pool.connection() as conn, conn.transaction():
            cursor = conn.cursor()
            await cursor.executemany(
                "INSERT INTO rule_events (merchant_id, customer_id, rule_id, occurrence, points,"
                " amount, at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [
                    (merchant_id, customer_id, e.rule_id, e.occurrence, e.points, e.amount, e.at)
                    for e in events
                ],
            )

    # ---- VIP tiers ----------------------------------------------------------------------

    async def save_customer_segment(
        self, merchant_id: str, customer_id: str, segment: str, at: datetime
    ) -> bool:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "INSERT INTO customer_segments (merchant_id, customer_id, segment, scored_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (merchant_id, customer_id) DO UPDATE"
                " SET segment = excluded.segment, scored_at = excluded.scored_at"
                " WHERE customer_segments.scored_at < excluded.scored_at",
                (merchant_id, customer_id, segment, at),
            )
            return cursor.rowcount > 0

    async def customer_segment(self, merchant_id: str, customer_id: str) -> str:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT segment FROM customer_segments WHERE merchant_id = %s AND customer_id = %s",
                (merchant_id, customer_id),
            )
            row = await cursor.fetchone()
        return "" if row is None else str(row[0])

    async def customer_tier(self, merchant_id: str, customer_id: str) -> TierState | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT tier_id, qualifying, term_end, changed_at, version FROM customer_tiers"
                " WHERE merchant_id = %s AND customer_id = %s",
                (merchant_id, customer_id),
            )
            row = await cursor.fetchone()
        return None if row is None else TierState(*row)

    async def save_tier(
        self,
        merchant_id: str,
        customer_id: str,
        expected: TierState | None,
        new: TierState,
        event: Message | None,
    ) -> bool:
        values = (new.tier_id, new.qualifying, new.term_end, new.changed_at)
        async with self._pool.connection() as conn, conn.transaction():
            if expected is None:
                cursor = await conn.execute(
                    "INSERT INTO customer_tiers (tier_id, qualifying, term_end, changed_at,"
                    " merchant_id, customer_id) VALUES (%s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT DO NOTHING RETURNING 1",
                    (*values, merchant_id, customer_id),
                )
            else:
                cursor = await conn.execute(
                    "UPDATE customer_tiers SET tier_id = %s, qualifying = %s, term_end = %s,"
                    " changed_at = %s, version = version + 1"
                    " WHERE merchant_id = %s AND customer_id = %s AND version = %s RETURNING 1",
                    (*values, merchant_id, customer_id, expected.version),
                )
            if await cursor.fetchone() is None:
                return False
            if event is not None:
                await outbox.enqueue(conn, merchant_id, event)
            return True

    async def ledger_customers(self, merchant_id: str, after: str, limit: int) -> list[str]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT customer_id FROM ledgers WHERE merchant_id = %s AND customer_id > %s"
                " ORDER BY customer_id LIMIT %s",
                (merchant_id, after, limit),
            )
            return [row[0] for row in await cursor.fetchall()]

    async def tier_inputs(
        self, merchant_id: str, after: str, limit: int, since: datetime | None
    ) -> list[TierInput]:
        # One statement per page: the page's ledgers, their window sums (the transactions of
        # the page's customer range, read through the (merchant, customer, sequence) index)
        # and their tier rows. The sums are domain.net_totals in SQL.
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                _TIER_INPUTS,
                {
                    "merchant": merchant_id,
                    "after": after,
                    "limit": limit,
                    "since": since,
                    "entry": TIER_ENTRY_REASON_PREFIX,
                },
            )
            rows = await cursor.fetchall()
        return [
            TierInput(
                customer_id,
                int(earned),
                int(redeemed),
                None if tier_id is None else TierState(tier_id, *state),
            )
            for customer_id, earned, redeemed, tier_id, *state in rows
        ]

    async def customer_tier_input(
        self, merchant_id: str, customer_id: str, since: datetime | None
    ) -> TierInput:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                _CUSTOMER_TIER_INPUT,
                {
                    "merchant": merchant_id,
                    "customer": customer_id,
                    "since": since,
                    "entry": TIER_ENTRY_REASON_PREFIX,
                },
            )
            row = await cursor.fetchone()
        assert row is not None  # an aggregate without GROUP BY: always one row
        exists, earned, redeemed, tier_id, *state = row
        if not exists:
            raise LedgerNotFound(customer_id)
        return TierInput(
            customer_id,
            int(earned),
            int(redeemed),
            None if tier_id is None else TierState(tier_id, *state),
        )

    async def tier_job_cursor(self, merchant_id: str) -> str | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT after_customer FROM tier_job_progress WHERE merchant_id = %s",
                (merchant_id,),
            )
            row = await cursor.fetchone()
        return None if row is None else str(row[0])

    async def save_tier_job_cursor(self, merchant_id: str, after: str | None) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            if after is None:
                await conn.execute(
                    "DELETE FROM tier_job_progress WHERE merchant_id = %s", (merchant_id,)
                )
                return
            # Under the lock erase_customer takes to rewrite the cursor, and only while the
            # customer still has a ledger: one erased since the page was read must not land
            # in the cursor after the erasure looked (the previous cursor stays: a crash
            # then redoes one page, as it would anyway).
            await _lock_tier_job(conn, merchant_id)
            await conn.execute(
                "INSERT INTO tier_job_progress (merchant_id, after_customer)"
                " SELECT %(m)s, %(c)s WHERE EXISTS (SELECT 1 FROM ledgers"
                " WHERE merchant_id = %(m)s AND customer_id = %(c)s)"
                " ON CONFLICT (merchant_id) DO UPDATE"
                " SET after_customer = excluded.after_customer, updated_at = now()",
                {"m": merchant_id, "c": after},
            )

    async def ledger_openings(
        self, merchant_id: str, after: str, limit: int
    ) -> list[tuple[str, datetime]]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT customer_id, created_at FROM ledgers"
                " WHERE merchant_id = %s AND customer_id > %s ORDER BY customer_id LIMIT %s",
                (merchant_id, after, limit),
            )
            return [(customer_id, opened) for customer_id, opened in await cursor.fetchall()]

    # ---- points expiry ------------------------------------------------------------------

    async def liability(
        self, merchant_id: str, now: datetime, horizon_days: int
    ) -> LiabilityFigures:
        # One snapshot: the outstanding points and the breakage read the same ledger.
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return await postgres_liability.liability(conn, merchant_id, now, horizon_days)

    async def customers_with_points(self, merchant_id: str, after: str, limit: int) -> list[str]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT customer_id FROM ledgers WHERE merchant_id = %s AND customer_id > %s"
                " AND balance > 0 ORDER BY customer_id LIMIT %s",
                (merchant_id, after, limit),
            )
            return [row[0] for row in await cursor.fetchall()]

    async def expiry_candidates(
        self, merchant_id: str, after: str, limit: int, cutoff: datetime, after_inactivity: bool
    ) -> tuple[str, list[str]]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                _INACTIVE_CANDIDATES if after_inactivity else _EARNED_CANDIDATES,
                {"merchant": merchant_id, "after": after, "limit": limit, "cutoff": cutoff},
            )
            rows = await cursor.fetchall()
        last = rows[-1][0] if len(rows) == limit else ""
        return last, [customer_id for customer_id, candidate in rows if candidate]

    async def record_expiry_notice(
        self, merchant_id: str, customer_id: str, expire_at: datetime, event: Message
    ) -> bool:
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "INSERT INTO points_expiry_notices (merchant_id, customer_id, expire_at)"
                " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                (merchant_id, customer_id, expire_at),
            )
            if await cursor.fetchone() is None:
                return False
            await outbox.enqueue(conn, merchant_id, event)
            return True

    async def record_order(self, earning: OrderEarning) -> tuple[OrderEarning, bool]:
        # Shallow: asdict() deep-copies every field (Decimal, datetimes) for nothing.
        row = _order_row(earning)
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_INSERT_ORDER, row)
            if await cursor.fetchone() is not None:
                return earning, True
            stored = await self._order(conn, earning.merchant_id, earning.order_id)
        assert stored is not None  # the conflict proves the row exists; orders are never deleted
        return stored, False

    async def orders_since(
        self, merchant_id: str, since: datetime, limit: int
    ) -> list[OrderEarning]:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"{_SELECT_ORDER} WHERE merchant_id = %s AND created_at >= %s"
                " AND status <> 'not_earning' ORDER BY created_at, order_id LIMIT %s",
                (merchant_id, since, limit),
            )
            return [_order(row) for row in await cursor.fetchall()]

    async def count_orders(self, merchant_id: str, since: datetime) -> int:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM order_earnings"
                " WHERE merchant_id = %s AND created_at >= %s AND status <> 'not_earning'",
                (merchant_id, since),
            )
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def add_order_adjustment(
        self, merchant_id: str, order_id: str, adjustment: OrderAdjustment
    ) -> OrderAdjustment | None:
        async with self._pool.connection() as conn, conn.transaction():
            # The order's row lock serialises adjustments, so the cap below holds.
            cursor = await conn.execute(
                "SELECT points FROM order_earnings WHERE merchant_id = %s AND order_id = %s"
                " FOR UPDATE",
                (merchant_id, order_id),
            )
            order = await cursor.fetchone()
            if order is None:
                return None
            rows = conn.cursor(row_factory=dict_row)
            await rows.execute(
                "SELECT adjustment_id, points, reason, applied FROM order_adjustments"
                " WHERE merchant_id = %s AND order_id = %s",
                (merchant_id, order_id),
            )
            existing = {
                row["adjustment_id"]: OrderAdjustment(**row) for row in await rows.fetchall()
            }
            if adjustment.adjustment_id in existing:
                return existing[adjustment.adjustment_id]
            remaining = order[0] - sum(a.points for a in existing.values())
            capped = OrderAdjustment(
                adjustment.adjustment_id,
                max(0, min(adjustment.points, remaining)),
                adjustment.reason,
            )
            await conn.execute(
                "INSERT INTO order_adjustments (merchant_id, order_id, adjustment_id, points,"
                " reason) VALUES (%s, %s, %s, %s, %s)",
                (merchant_id, order_id, capped.adjustment_id, capped.points, capped.reason),
            )
            return capped

    async def _order(
        self, conn: AsyncConnection, merchant_id: str, order_id: str, *, lock: bool = False
    ) -> OrderEarning | None:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(
            f"{_SELECT_ORDER} WHERE merchant_id = %s AND order_id = %s"
            + (" FOR UPDATE" if lock else ""),
            (merchant_id, order_id),
        )
        row = await cursor.fetchone()
        return None if row is None else _order(row)

    async def _adjustments(
        self, conn: AsyncConnection, merchant_id: str, order_id: str
    ) -> list[OrderAdjustment]:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(_SELECT_ADJUSTMENTS, (merchant_id, order_id))
        return [OrderAdjustment(**row) for row in await cursor.fetchall()]

    async def order_settlement(self, merchant_id: str, order_id: str) -> OrderSettlement | None:
        async with self._pool.connection() as conn:
            earning = await self._order(conn, merchant_id, order_id)
            if earning is None:
                return None
            return OrderSettlement(earning, await self._adjustments(conn, merchant_id, order_id))

    async def orders_to_settle(self, now: datetime, limit: int) -> list[OrderSettlement]:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"{_SELECT_ORDER} WHERE (status = 'pending' AND approve_at <= %(now)s)"
                "   OR status = 'approving'"
                " UNION ALL"
                f" {_SELECT_ORDER} o WHERE status = 'approved' AND EXISTS ("
                "   SELECT 1 FROM order_adjustments a WHERE NOT a.applied"
                "     AND a.merchant_id = o.merchant_id AND a.order_id = o.order_id)"
                " ORDER BY approve_at LIMIT %(limit)s",
                {"now": now, "limit": limit},
            )
            earnings = [_order(row) for row in await cursor.fetchall()]
            return [
                OrderSettlement(e, await self._adjustments(conn, e.merchant_id, e.order_id))
                for e in earnings
            ]

    async def begin_order_approval(self, merchant_id: str, order_id: str) -> OrderSettlement | None:
        async with self._pool.connection() as conn, conn.transaction():
            earning = await self._order(conn, merchant_id, order_id, lock=True)
            if earning is None:
                return None
            adjustments = await self._adjustments(conn, merchant_id, order_id)
            if earning.status is not OrderStatus.PENDING:
                return OrderSettlement(earning, adjustments)
            approved = max(0, earning.points - sum(a.points for a in adjustments))
            await conn.execute(
                "UPDATE order_adjustments SET applied = true"
                " WHERE merchant_id = %s AND order_id = %s",
                (merchant_id, order_id),
            )
            await conn.execute(
                "UPDATE order_earnings SET status = 'approving', approved_points = %s"
                " WHERE merchant_id = %s AND order_id = %s",
                (approved, merchant_id, order_id),
            )
            return OrderSettlement(
                dataclasses.replace(
                    earning, status=OrderStatus.APPROVING, approved_points=approved
                ),
                [dataclasses.replace(a, applied=True) for a in adjustments],
            )

    async def approve_order(
        self, merchant_id: str, order_id: str, credit: OrderCredit | None
    ) -> PostingResult | None:
        # One checkout and one commit for the credit and the status (they were two).
        async with self._pool.connection() as conn, conn.transaction():
            result = None if credit is None else await self._post_in(conn, *credit)
            await conn.execute(
                "UPDATE order_earnings SET status = 'approved'"
                " WHERE merchant_id = %s AND order_id = %s AND status = 'approving'",
                (merchant_id, order_id),
                prepare=True,
            )
        return result

    async def record_approved_order(
        self, earning: OrderEarning, credit: OrderCredit | None
    ) -> RecordedOrder:
        # The order row, the credit and its key commit together: no APPROVING row, no
        # status update, one checkout (were three). A redelivery waits on the order's
        # unique key until this commits, then finds it.
        row = _order_row(earning)
        if credit is not None and _credits_the_order(earning, credit[0]):
            recorded = await self._record_approved_order_at_once(row, earning, *credit)
            if recorded is not None:
                return recorded
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(_INSERT_ORDER, row, prepare=True)
            if await cursor.fetchone() is None:
                stored = await self._order(conn, earning.merchant_id, earning.order_id)
                assert stored is not None  # the conflict proves the row exists
                return stored, False, None
            result = None if credit is None else await self._post_in(conn, *credit)
        return earning, True, result

    async def _record_approved_order_at_once(
        self, row: dict[str, Any], earning: OrderEarning, posting: Posting, key: IdempotencyKey
    ) -> tuple[OrderEarning, bool, PostingResult | None] | None:
        """The order, its credit and its event in one statement and the event's: what
        record_approved_order does, in 4 round trips instead of 7 (the dearest part of an
        order's CPU, bench/README.md). None, having written nothing, when the credit's key was
        claimed before (a replay, or the key reused): the usual path sorts that out."""
        transaction_id = str(uuid.uuid4())
        params = {**row, **_credit_params(posting, key, transaction_id)}
        try:
            async with self._pool.connection() as conn, conn.transaction():
                cursor = await conn.execute(_RECORD_APPROVED_ORDER, params, prepare=True)
                answer = await cursor.fetchone()
                assert answer is not None  # the final SELECT always answers one row
                placed, claimed, *ledger = answer
                if not placed:
                    stored = await self._order(conn, earning.merchant_id, earning.order_id)
                    assert stored is not None  # the conflict proves the row exists
                    return stored, False, None
                if not claimed or ledger[0] is None:
                    raise _NotAtOnce()  # rolls the order row back
                transaction = _posted(posting, transaction_id, ledger)
                await outbox.enqueue(
                    conn,
                    posting.merchant_id,
                    ledger_event(transaction),
                    occurred_at=transaction.created_at,
                )
        except _NotAtOnce:
            return None
        return earning, True, PostingResult.of(transaction)

    async def record_approved_orders(
        self, items: Sequence[tuple[OrderEarning, OrderCredit]]
    ) -> list[RecordedOrder | None]:
        # Runs of orders of distinct customers, each in one transaction of one statement
        # and one outbox INSERT, whatever its length (record_approved_order: a transaction
        # of two statements per order).
        recorded: list[RecordedOrder | None] = [None] * len(items)
        runs: list[list[int]] = [[]]
        customers: set[tuple[str, str]] = set()  # of the last run
        for index, (earning, (posting, _)) in enumerate(items):
            if not _credits_the_order(earning, posting):
                continue  # record_approved_order's usual path: None
            customer = (earning.merchant_id, earning.customer_id)
            if customer in customers:
                runs.append([])
                customers.clear()
            runs[-1].append(index)
            customers.add(customer)
        for run in filter(None, runs):
            answers = await self._record_approved_run([items[index] for index in run])
            for index, answer in zip(run, answers, strict=True):
                recorded[index] = answer
        return recorded

    async def _record_approved_run(
        self, run: Sequence[tuple[OrderEarning, OrderCredit]]
    ) -> list[RecordedOrder | None]:
        """Records the orders of `run` (distinct customers) in one transaction: per order
        what record_approved_order answers, None for one recorded before. None for all,
        having written nothing, when a credit's key was claimed before (a replay, or the key
        reused): record_approved_order sorts each out then."""
        credits = [
            (earning, posting, _credit_params(posting, key, str(uuid.uuid4())))
            for earning, (posting, key) in run
        ]
        documents = [
            {"order": _order_row(earning), "credit": credit} for earning, _, credit in credits
        ]
        found: list[RecordedOrder | None] = []
        try:
            async with self._pool.connection() as conn, conn.transaction():
                cursor = await conn.execute(
                    _RECORD_APPROVED_ORDERS, (_json(documents),), prepare=True
                )
                events = []
                for (earning, posting, credit), (placed, claimed, *ledger) in zip(
                    credits, await cursor.fetchall(), strict=True
                ):
                    if not placed:
                        # Recorded before: the usual path reads the stored order.
                        found.append(None)
                        continue
                    if not claimed or ledger[0] is None:
                        raise _NotAtOnce()  # rolls every order of the run back
                    transaction = _posted(posting, credit["transaction_id"], ledger)
                    events.append(
                        outbox.row(
                            posting.merchant_id,
                            ledger_event(transaction),
                            occurred_at=transaction.created_at,
                        )
                    )
                    found.append((earning, True, PostingResult.of(transaction)))
                await outbox.enqueue_many(conn, events)
        except _NotAtOnce:
            return [None] * len(run)
        return found

    async def mark_adjustment_applied(
        self, merchant_id: str, order_id: str, adjustment_id: str
    ) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE order_adjustments SET applied = true"
                " WHERE merchant_id = %s AND order_id = %s AND adjustment_id = %s",
                (merchant_id, order_id, adjustment_id),
            )

    # ---- personal data (loyalnest.platform.personal_data) -------------------------------

    async def export_customer(self, merchant_id: str, customer: CustomerRef) -> CustomerExport:
        customer_id = customer.shopify_customer_id
        params = (merchant_id, customer_id)
        data: dict[str, Any] = {}
        async with self._pool.connection() as conn:
            # A cursor's row factory: the pooled connection's stays the default.
            cursor = conn.cursor(row_factory=dict_row)
            for name, query in (
                (
                    "ledger",
                    "SELECT balance, lifetime_earned, lifetime_redeemed, created_at, updated_at"
                    " FROM ledgers WHERE merchant_id = %s AND customer_id = %s",
                ),
                (
                    "transactions",
                    f"SELECT {_SELECT_COLUMNS} FROM points_transactions"
                    " WHERE merchant_id = %s AND customer_id = %s ORDER BY sequence",
                ),
                (
                    "redemptions",
                    "SELECT redemption_id::text, reward_id::text, points, status, discount_code,"
                    " gift_card_id, gift_card_last_characters, expires_at, created_at"
                    " FROM reward_redemptions"
                    " WHERE merchant_id = %s AND customer_id = %s ORDER BY created_at",
                ),
                (
                    "orders",
                    "SELECT order_id, points, eligible_amount, currency, status, created_at"
                    " FROM order_earnings WHERE merchant_id = %s AND customer_id = %s"
                    " ORDER BY created_at",
                ),
                (
                    "tier",
                    "SELECT tier_id, qualifying, term_end, changed_at FROM customer_tiers"
                    " WHERE merchant_id = %s AND customer_id = %s",
                ),
                (
                    "segment",
                    "SELECT segment, scored_at FROM customer_segments"
                    " WHERE merchant_id = %s AND customer_id = %s",
                ),
                (
                    "rule_events",
                    "SELECT rule_id, occurrence, points, amount, at FROM rule_events"
                    " WHERE merchant_id = %s AND customer_id = %s ORDER BY at, occurrence",
                ),
                (
                    "expiry_notices",
                    "SELECT expire_at, created_at FROM points_expiry_notices"
                    " WHERE merchant_id = %s AND customer_id = %s ORDER BY expire_at",
                ),
            ):
                await cursor.execute(query, params)
                rows = await cursor.fetchall()
                if rows:
                    data[name] = rows[0] if name in _SINGLE_ROW_SECTIONS else rows
        return CustomerExport(data)

    async def erase_customer(self, merchant_id: str, customer: CustomerRef) -> int:
        """The customer's ledger, history, redemptions, orders, tier, rule decisions and
        expiry notices move to the erasure's anonymous id (CustomerRef.anonymous_id, the one
        every service uses for this customer): amounts stay (liability, reports, the tier the
        balance earned), the identity goes."""
        customer_id = customer.shopify_customer_id
        erased = 0
        async with self._pool.connection() as conn, conn.transaction():
            anonymous = await _anonymous_ledger_id(conn, merchant_id, customer)
            params = {"m": merchant_id, "c": customer_id, "a": anonymous}
            cursor = await conn.execute(
                "INSERT INTO ledgers (merchant_id, customer_id, balance, lifetime_earned,"
                " lifetime_redeemed, last_sequence, created_at, updated_at)"
                " SELECT merchant_id, %(a)s, balance, lifetime_earned, lifetime_redeemed,"
                " last_sequence, created_at, now() FROM ledgers"
                " WHERE merchant_id = %(m)s AND customer_id = %(c)s FOR UPDATE",
                params,
            )
            erased += cursor.rowcount
            for table in CUSTOMER_TABLES:
                erased += (
                    await conn.execute(
                        sql.SQL(
                            "UPDATE {} SET customer_id = %(a)s"
                            " WHERE merchant_id = %(m)s AND customer_id = %(c)s"
                        ).format(sql.Identifier(table)),
                        params,
                    )
                ).rowcount
            await conn.execute(
                "DELETE FROM ledgers WHERE merchant_id = %(m)s AND customer_id = %(c)s", params
            )
            # The tier job's resume cursor may name them: it becomes the customer before
            # them (by id, the anonymous ledger aside), so a resumed run neither skips anyone
            # nor redoes the customers it had done.
            await _lock_tier_job(conn, merchant_id)
            await conn.execute(
                "UPDATE tier_job_progress SET updated_at = now(), after_customer = coalesce("
                " (SELECT max(customer_id) FROM ledgers WHERE merchant_id = %(m)s"
                " AND customer_id < %(c)s AND customer_id <> %(a)s), '')"
                " WHERE merchant_id = %(m)s AND after_customer = %(c)s",
                params,
            )
            # A segment is about the person and carries no amount: it goes, not moved.
            erased += (
                await conn.execute(
                    "DELETE FROM customer_segments"
                    " WHERE merchant_id = %(m)s AND customer_id = %(c)s",
                    params,
                )
            ).rowcount
            # Its events not yet published follow the ledger to the anonymous id.
            await personal_data.redact_unsent_events(
                conn, merchant_id, customer.identifiers(), anonymous
            )
            await personal_data.forget_sent_events(conn, merchant_id, customer_id)
            await personal_data.forget_internal_keys_naming(conn, merchant_id, customer_id)
        return erased

    async def erase_merchant(self, merchant_id: str) -> int:
        erased = 0
        async with self._pool.connection() as conn, conn.transaction():
            for table in MERCHANT_TABLES:
                erased += (
                    await conn.execute(
                        sql.SQL("DELETE FROM {} WHERE merchant_id = %s").format(
                            sql.Identifier(table)
                        ),
                        (merchant_id,),
                    )
                ).rowcount
            erased += await personal_data.erase_platform_rows(conn, merchant_id)
        return erased


async def _anonymous_ledger_id(
    conn: AsyncConnection, merchant_id: str, customer: CustomerRef
) -> str:
    """The erasure's id for the customer, unless a ledger has it already: another service's
    redacted event consumed meanwhile (Users' `user.created` opens a ledger) may have opened
    one, and two ledgers' histories cannot merge. Then a random id, as before: the amounts
    stay consistent, only the mesh-wide match is lost for this rare race."""
    anonymous = customer.anonymous_id(customer.shopify_customer_id)
    cursor = await conn.execute(
        "SELECT 1 FROM ledgers WHERE merchant_id = %s AND customer_id = %s",
        (merchant_id, anonymous),
    )
    return erased_customer_id() if await cursor.fetchone() else anonymous


async def _lock_tier_job(conn: AsyncConnection, merchant_id: str) -> None:
    """The merchant's tier job cursor lock, held to the transaction's end: serialises an
    erasure's rewrite of the cursor with the job's save of it."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
        (f"points-tier-job:{merchant_id}",),
    )


# The export sections that are one row (the rest are lists).
_SINGLE_ROW_SECTIONS = frozenset({"ledger", "tier", "segment"})

_REWARD_COLUMNS = ", ".join(
    f"{f.name}::text AS {f.name}" if f.name == "reward_id" else f.name for f in fields(Reward)
)
_REDEMPTION_FIELDS = [f.name for f in fields(Redemption)]
_REDEMPTION_COLUMNS = ", ".join(_REDEMPTION_FIELDS)
_REDEMPTION_SELECT = ", ".join(
    f"{c}::text AS {c}" if c in {"redemption_id", "reward_id"} else c for c in _REDEMPTION_FIELDS
)


def _reward(row: dict[str, Any]) -> Reward:
    return Reward(
        **{
            **row,
            "kind": RewardKind(row["kind"]),
            "limit_period": LimitPeriod(row["limit_period"]),
            "product_ids": tuple(row["product_ids"]),
            "collection_ids": tuple(row["collection_ids"]),
            "tier_ids": tuple(row["tier_ids"]),
            "channels": tuple(Channel(c) for c in row["channels"]),
            "eligible_segments": tuple(Segment(s) for s in row["eligible_segments"]),
        }
    )
