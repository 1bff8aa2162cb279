"""Paid plans' Shopify subscriptions (plan_subscriptions) and the one paying for the current
plan (plan_billing), in PostgreSQL.

Every change here takes the merchant's program lock first (ProgramStore.load for_change), so a
ChangePlan and a webhook of the same merchant apply one after the other, and a plan changes in
the same transaction as the subscription that decides it. The calls to Shopify (`subscribe`,
`cancel`) run inside the transaction that claims the request's idempotency key: a retry of the
same key waits for the first call and gets its answer, so one key asks Shopify once; a failed
call rolls back and leaves the key free. Holding a connection over an HTTP call is acceptable
for an RPC this rare.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from psycopg import AsyncConnection

from loyalnest.platform import idempotency
from loyalnest.platform.events import inbox
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.observability import get_logger
from loyalnest.platform.postgres import Database
from loyalnest.services.core.domain import (
    SUBSCRIPTION_ACTIVE,
    SUBSCRIPTION_ENDED,
    SUBSCRIPTION_FINAL,
    SUBSCRIPTION_NAME_PREFIX,
    SUBSCRIPTION_PENDING,
    NewSubscription,
    PlanChange,
    PlanChangeStatus,
    PlanLimits,
    SubscriptionUpdate,
    status_change_applies,
    with_plan,
)
from loyalnest.services.core.store.program import ProgramStore

log = get_logger(__name__)

_APPLIED = "applied"
_SUBSCRIPTION_REF = "subscription:"


class BillingStore:
    def __init__(self, database: Database, programs: ProgramStore) -> None:
        self._pool = database.pool
        self._programs = programs

    async def request_paid_plan(
        self,
        merchant_id: str,
        plan: str,
        *,
        key: IdempotencyKey,
        subscribe: Callable[[], Awaitable[NewSubscription]],
    ) -> PlanChange:
        """A subscription to `plan` at Shopify (`subscribe`), recorded PENDING; the program
        is unchanged. A merchant on `plan` already gets APPLIED and no subscription. A retry
        with `key` returns the first answer."""

        async def write(conn: AsyncConnection) -> tuple[PlanChange, str]:
            current = await self._programs.load(conn, merchant_id, for_change=True)
            if current.plan.plan == plan:
                return PlanChange(current, PlanChangeStatus.APPLIED), _APPLIED
            created = await subscribe()
            await conn.execute(
                "INSERT INTO plan_subscriptions (subscription_id, merchant_id, plan, status,"
                " confirmation_url, test) VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    created.subscription_id,
                    merchant_id,
                    plan,
                    created.status,
                    created.confirmation_url,
                    created.test,
                ),
            )
            change = PlanChange(
                current,
                PlanChangeStatus.PENDING_APPROVAL,
                created.subscription_id,
                created.confirmation_url,
            )
            return change, _SUBSCRIPTION_REF + created.subscription_id

        return await idempotency.write_once(
            self._pool, merchant_id, key, write=write, replay=self._replay(merchant_id)
        )

    async def change_to_free_plan(
        self,
        merchant_id: str,
        plan: PlanLimits,
        *,
        key: IdempotencyKey,
        cancel: Callable[[str], Awaitable[None]],
    ) -> PlanChange:
        """Moves the merchant to the free `plan` at once, cancelling the subscription that paid
        for its plan (at Shopify, `cancel`, then here)."""
        changed = False

        async def write(conn: AsyncConnection) -> tuple[PlanChange, str]:
            nonlocal changed
            await self._programs.load(conn, merchant_id, for_change=True)
            paying = await _paying_subscription(conn, merchant_id)
            if paying is not None:
                await cancel(paying)
                await _end_paying(conn, merchant_id, paying, "CANCELLED", None)
            after, changed = await self._programs.save(
                conn, merchant_id, lambda current: with_plan(current, plan)
            )
            return PlanChange(after, PlanChangeStatus.APPLIED), _APPLIED

        change = await idempotency.write_once(
            self._pool, merchant_id, key, write=write, replay=self._replay(merchant_id)
        )
        if changed:
            await self._programs.invalidate(merchant_id)
        return change

    def _replay(self, merchant_id: str) -> Callable[[AsyncConnection, str], Awaitable[PlanChange]]:
        async def replay(conn: AsyncConnection, reference: str) -> PlanChange:
            current = await self._programs.load(conn, merchant_id)
            if not reference.startswith(_SUBSCRIPTION_REF):
                return PlanChange(current, PlanChangeStatus.APPLIED)
            subscription_id = reference.removeprefix(_SUBSCRIPTION_REF)
            cursor = await conn.execute(
                "SELECT confirmation_url FROM plan_subscriptions WHERE subscription_id = %s",
                (subscription_id,),
            )
            row = await cursor.fetchone()
            return PlanChange(
                current,
                PlanChangeStatus.PENDING_APPROVAL,
                subscription_id,
                row[0] if row else "",
            )

        return replay

    async def apply_update(self, event: ConsumedEvent, update: SubscriptionUpdate) -> bool:
        """Applies Shopify's report of a subscription's status (app_subscriptions/update), once
        per event: ACTIVE puts the merchant on the subscription's plan; the end (CANCELLED,
        EXPIRED, FROZEN) of the subscription paying for the current plan takes it back to
        the default plan; anything else only records the status."""
        merchant_id = event.merchant_id
        changed = False
        async with self._pool.connection() as conn, conn.transaction():
            if not await inbox.claim(conn, event):
                return False
            await self._programs.load(conn, merchant_id, for_change=True)
            cursor = await conn.execute(
                "SELECT merchant_id, plan, status, status_updated_at FROM plan_subscriptions"
                " WHERE subscription_id = %s FOR UPDATE",
                (update.subscription_id,),
            )
            row = await cursor.fetchone()
            if row is None:
                plan = self._plan_named(update.name)
                if plan is None:
                    log.warning(
                        "app_subscriptions/update of a subscription Core never asked for; ignored",
                        merchant_id=merchant_id,
                        subscription_id=update.subscription_id,
                        name=update.name,
                    )
                    return True
                # Created at Shopify by a ChangePlan whose transaction then failed to commit:
                # its name says the plan it was for.
                await conn.execute(
                    "INSERT INTO plan_subscriptions (subscription_id, merchant_id, plan, status,"
                    " confirmation_url, test) VALUES (%s, %s, %s, %s, '', false)",
                    (update.subscription_id, merchant_id, plan, SUBSCRIPTION_PENDING),
                )
                row = (merchant_id, plan, SUBSCRIPTION_PENDING, None)
            owner, plan, status, status_updated_at = row
            if owner != merchant_id:
                log.warning(
                    "app_subscriptions/update names another merchant's subscription; ignored",
                    merchant_id=merchant_id,
                    subscription_id=update.subscription_id,
                )
                return True
            if not status_change_applies(status, status_updated_at, update):
                log.info(
                    "stale or repeated subscription update; nothing to do",
                    merchant_id=merchant_id,
                    subscription_id=update.subscription_id,
                    status=update.status,
                    held=status,
                )
                return True
            await conn.execute(
                "UPDATE plan_subscriptions SET status = %s, status_updated_at = %s,"
                " updated_at = now() WHERE subscription_id = %s",
                (update.status, update.updated_at, update.subscription_id),
            )
            paying = await _paying_subscription(conn, merchant_id)
            if update.status == SUBSCRIPTION_ACTIVE:
                limits = self._programs.plans.get(plan)
                if limits is None:
                    log.error(
                        "an approved subscription names a plan no longer configured",
                        merchant_id=merchant_id,
                        plan=plan,
                    )
                    return True
                await conn.execute(
                    "INSERT INTO plan_billing (merchant_id, subscription_id) VALUES (%s, %s)"
                    " ON CONFLICT (merchant_id) DO UPDATE SET"
                    " subscription_id = excluded.subscription_id, updated_at = now()",
                    (merchant_id, update.subscription_id),
                )
                _, changed = await self._programs.save(
                    conn, merchant_id, lambda current: with_plan(current, limits)
                )
                log.info("paid plan approved", merchant_id=merchant_id, plan=plan, previous=paying)
            elif update.status in SUBSCRIPTION_ENDED and paying == update.subscription_id:
                await conn.execute(
                    "DELETE FROM plan_billing WHERE merchant_id = %s", (merchant_id,)
                )
                changed = await self._to_default_plan(conn, merchant_id)
                log.info(
                    "paid plan ended: back to the default plan",
                    merchant_id=merchant_id,
                    plan=plan,
                    status=update.status,
                )
        if changed:
            await self._programs.invalidate(merchant_id)
        return True

    async def end_for_uninstall(self, event: ConsumedEvent, at: datetime | None) -> bool:
        """merchant.uninstalled: Shopify ends an app's charges with its install, so the paid
        plan ends here too (a reinstall starts on the default plan) and pending
        subscriptions can no longer be approved."""
        merchant_id = event.merchant_id
        changed = False
        async with self._pool.connection() as conn, conn.transaction():
            if not await inbox.claim(conn, event):
                return False
            await self._programs.load(conn, merchant_id, for_change=True)
            await conn.execute("DELETE FROM plan_billing WHERE merchant_id = %s", (merchant_id,))
            await conn.execute(
                "UPDATE plan_subscriptions SET status = 'CANCELLED',"
                " status_updated_at = coalesce(%s, now()), updated_at = now()"
                " WHERE merchant_id = %s AND NOT (status = ANY(%s))",
                (at, merchant_id, sorted(SUBSCRIPTION_FINAL)),
            )
            current = await self._programs.load(conn, merchant_id)
            if self._programs.plans.price(current.plan.plan) is not None:
                changed = await self._to_default_plan(conn, merchant_id)
        if changed:
            await self._programs.invalidate(merchant_id)
        return True

    async def _to_default_plan(self, conn: AsyncConnection, merchant_id: str) -> bool:
        default = self._programs.plans.default_plan()
        _, changed = await self._programs.save(
            conn, merchant_id, lambda current: with_plan(current, default)
        )
        return changed

    def _plan_named(self, name: str) -> str | None:
        """The paid plan a subscription's name (`subscription_name`) stands for."""
        if not name.startswith(SUBSCRIPTION_NAME_PREFIX):
            return None
        plan = name.removeprefix(SUBSCRIPTION_NAME_PREFIX)
        return plan if self._programs.plans.price(plan) is not None else None


async def _paying_subscription(conn: AsyncConnection, merchant_id: str) -> str | None:
    cursor = await conn.execute(
        "SELECT subscription_id FROM plan_billing WHERE merchant_id = %s FOR UPDATE",
        (merchant_id,),
    )
    row = await cursor.fetchone()
    return None if row is None else str(row[0])


async def _end_paying(
    conn: AsyncConnection,
    merchant_id: str,
    subscription_id: str,
    status: str,
    at: datetime | None,
) -> None:
    await conn.execute("DELETE FROM plan_billing WHERE merchant_id = %s", (merchant_id,))
    await conn.execute(
        "UPDATE plan_subscriptions SET status = %s, status_updated_at = coalesce(%s, now()),"
        " updated_at = now() WHERE subscription_id = %s",
        (status, at, subscription_id),
    )
