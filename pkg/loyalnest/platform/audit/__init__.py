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
Automatically: an audited schema's pool (`AuditedPool`, which platform/postgres.Database
uses when the spec's migrations include `MIGRATIONS`) names the caller of the RPC being
handled (its verified token's subject; the row's merchant is the token's, by tenant
scoping) on every connection it hands out during that RPC, so no call site has to remember
it, and writes in autocommit are covered too. Explicitly, overriding that for one
transaction: a consumer names the event that caused the change
(`transaction(pool, actor_of_event(e))`), a job itself (`transaction(pool, "job:...")`), and
`set_actor` anyone inside a transaction the caller already holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from loyalnest.platform.auth.context import current_principal, principal_if_any
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


class AuditedPool(AsyncConnectionPool[AsyncConnection[TupleRow]]):
    """The pool of an audited schema: a connection taken while an RPC is handled names that
    RPC's caller as the session's actor, so the audit rows of whatever it writes (in a
    transaction or autocommit) say who did it; taken outside one (a consumer, a job), it
    names nobody unless the transaction does (`transaction(pool, actor)`, `set_actor`, which
    override it, transaction-locally). One `set_config` round trip when the actor differs
    from what the connection last named, none when it is the same."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The actor each connection's session names now (a fresh session: none).
        self._named: WeakKeyDictionary[AsyncConnection[TupleRow], str] = WeakKeyDictionary()

    @asynccontextmanager
    async def connection(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 (the pool's signature, overridden)
    ) -> AsyncIterator[AsyncConnection[TupleRow]]:
        async with super().connection(timeout) as conn:
            caller = principal_if_any()
            actor = caller.subject if caller is not None else ""
            if self._named.get(conn, "") != actor:
                await conn.execute(
                    "SELECT set_config(%s, %s, false)", (ACTOR_SETTING, actor), prepare=True
                )
                self._named[conn] = actor
            yield conn


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
