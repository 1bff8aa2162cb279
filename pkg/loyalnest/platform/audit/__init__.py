"""Audit log rows written by the database itself, for tables whose every change is audited.

A service opts in by adding `MIGRATIONS` before its own migration directory and attaching
the trigger to a table in its migration:

    CREATE TRIGGER users_audit AFTER INSERT OR UPDATE OR DELETE ON users
        FOR EACH ROW EXECUTE FUNCTION audit_row_change('user_id', 'user_id', 'email_ciphertext');

Arguments: the row's id column, the column naming the user the row is about ('' if none),
then columns whose values never reach the log (ciphertexts, blind indexes: the log says
that they changed, not what to). A trigger, not application code, so no write path (a new
RPC, a consumer, a manual fix in psql) can forget it.

Who made the change: the writing transaction names its actor, the trigger records it.
`transaction(pool)` names the caller of the RPC being handled (its token's subject);
a consumer names the event that caused the change (`transaction(pool, actor_of_event(e))`);
`set_actor` names anyone inside a transaction the caller already holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from loyalnest.platform.auth.context import current_principal
from loyalnest.platform.events.envelope import ConsumedEvent

MIGRATIONS = Path(__file__).parent / "migrations"
# A custom setting: transaction-local, read by audit_row_change().
ACTOR_SETTING = "loyalnest.actor"


def current_actor() -> str:
    """The caller of the RPC being handled: its token's subject (UNAUTHENTICATED without)."""
    return current_principal().subject


def actor_of_event(event: ConsumedEvent) -> str:
    """A change made by a consumer is the event's: `event:<type>:<id>` finds it again."""
    return f"event:{event.event_type}:{event.event_id}"


async def set_actor(conn: AsyncConnection, actor: str) -> None:
    """Names who is changing rows in the current transaction (is_local: ends with it)."""
    if conn.info.transaction_status != TransactionStatus.INTRANS:
        # Outside a transaction the setting would vanish before the write it describes.
        raise RuntimeError("audit.set_actor() must run inside the writing transaction")
    await conn.execute("SELECT set_config(%s, %s, true)", (ACTOR_SETTING, actor), prepare=True)


@asynccontextmanager
async def transaction(
    pool: AsyncConnectionPool, actor: str | None = None
) -> AsyncIterator[AsyncConnection]:
    """A transaction whose audit rows name `actor`, by default the caller of the RPC."""
    # Resolved before a connection is taken: a call without a principal fails without one.
    named = current_actor() if actor is None else actor
    async with pool.connection() as conn, conn.transaction():
        await set_actor(conn, named)
        yield conn
