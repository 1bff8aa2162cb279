"""Audit log rows written by the database itself, for tables whose every change is audited.

A service opts in by adding `MIGRATIONS` before its own migration directory and attaching
the trigger to a table in its migration:

    CREATE TRIGGER users_audit AFTER INSERT OR UPDATE OR DELETE ON users
        FOR EACH ROW EXECUTE FUNCTION audit_row_change('user_id', 'user_id', 'email_ciphertext');

Arguments: the row's id column, the column naming the user the row is about ('' if none),
then columns whose values never reach the log (ciphertexts, blind indexes: the log says
that they changed, not what to). A trigger, not application code, so no write path (a new
RPC, a consumer, a manual fix in psql) can forget it.

Who made the change: `set_actor` inside the writing transaction (the caller's token subject,
or the event that caused it); the trigger records it.
"""

from __future__ import annotations

from pathlib import Path

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus

MIGRATIONS = Path(__file__).parent / "migrations"
# A custom setting: transaction-local, read by audit_row_change().
ACTOR_SETTING = "loyalnest.actor"


async def set_actor(conn: AsyncConnection, actor: str) -> None:
    """Names who is changing rows in the current transaction (is_local: ends with it)."""
    if conn.info.transaction_status != TransactionStatus.INTRANS:
        # Outside a transaction the setting would vanish before the write it describes.
        raise RuntimeError("audit.set_actor() must run inside the writing transaction")
    await conn.execute("SELECT set_config(%s, %s, true)", (ACTOR_SETTING, actor), prepare=True)
