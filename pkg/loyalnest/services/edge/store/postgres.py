"""The edge service's PostgreSQL state: webhook records, dead letters, merchants' plans."""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from loyalnest.platform.events import outbox
from loyalnest.platform.postgres import Database
from loyalnest.services.edge.domain import Outcome
from loyalnest.services.edge.events import webhook_received
from loyalnest.services.edge.webhooks import Delivery

# The idempotency key and, only if it is new, the event's outbox row.
_ACCEPT = (
    "WITH claim AS ("
    " INSERT INTO webhook_idempotency_keys"
    " (shop_domain, event_id, merchant_id, topic, webhook_id, outcome)"
    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1)"
    f" INSERT INTO outbox {outbox.COLUMNS} SELECT {outbox.VALUES}"
    " WHERE EXISTS (SELECT 1 FROM claim) RETURNING 1"
)


class EdgeStore:
    def __init__(self, database: Database) -> None:
        self._pool = database.pool

    async def _claim(
        self, conn: AsyncConnection, delivery: Delivery, merchant_id: str, outcome: Outcome
    ) -> bool:
        """Records the event's first delivery; False when it was recorded before. A concurrent
        delivery of the same event waits on the key until the first one's transaction ends."""
        cursor = await conn.execute(
            "INSERT INTO webhook_idempotency_keys"
            " (shop_domain, event_id, merchant_id, topic, webhook_id, outcome)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
            (
                delivery.shop_domain,
                delivery.event_id,
                merchant_id,
                delivery.topic,
                delivery.webhook_id,
                outcome.value,
            ),
            prepare=True,
        )
        return await cursor.fetchone() is not None

    async def accept(self, delivery: Delivery, merchant_id: str, customer_id: str) -> Outcome:
        """Records the delivery and its webhook.received event together, once.

        One statement: atomic without BEGIN/COMMIT, and one round trip where a transaction
        took four (every new event comes here, and each round trip costs the process about
        as much CPU as the statement itself). A concurrent delivery of the same event waits
        on the key until ours commits, then inserts neither row: DUPLICATE."""
        event = outbox.row(
            merchant_id, webhook_received(delivery, customer_id), occurred_at=delivery.triggered_at
        )
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                _ACCEPT,
                (
                    delivery.shop_domain,
                    delivery.event_id,
                    merchant_id,
                    delivery.topic,
                    delivery.webhook_id,
                    Outcome.ACCEPTED.value,
                    *event.params,
                ),
                prepare=True,
            )
            recorded = await cursor.fetchone() is not None
        return Outcome.ACCEPTED if recorded else Outcome.DUPLICATE

    async def dead_letter(self, delivery: Delivery, merchant_id: str, reason: str) -> Outcome:
        """Keeps an unusable (but signed) delivery for an operator, once per event."""
        async with self._pool.connection() as conn, conn.transaction():
            if not await self._claim(conn, delivery, merchant_id, Outcome.DEAD_LETTERED):
                return Outcome.DUPLICATE
            await conn.execute(
                "INSERT INTO webhook_dead_letters"
                " (shop_domain, event_id, topic, webhook_id, headers, body, reason)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    delivery.shop_domain,
                    delivery.event_id,
                    delivery.topic,
                    delivery.webhook_id,
                    Jsonb(dict(delivery.headers)),
                    delivery.body,
                    reason,
                ),
            )
        return Outcome.DEAD_LETTERED

    # --- merchants' plans (rate-limit tiers) -----------------------------------------------

    async def plan_of(self, merchant_id: str) -> str | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT plan FROM merchant_plans WHERE merchant_id = %s",
                (merchant_id,),
                prepare=True,
            )
            row = await cursor.fetchone()
            return None if row is None else str(row[0])

    @staticmethod
    async def set_plan(conn: AsyncConnection, merchant_id: str, plan: str, version: int) -> None:
        """Keeps the plan of the newest settings version seen (events may arrive late)."""
        await conn.execute(
            "INSERT INTO merchant_plans (merchant_id, plan, settings_version)"
            " VALUES (%s, %s, %s) ON CONFLICT (merchant_id) DO UPDATE"
            " SET plan = excluded.plan, settings_version = excluded.settings_version,"
            " updated_at = now()"
            " WHERE merchant_plans.settings_version < excluded.settings_version",
            (merchant_id, plan, version),
        )
