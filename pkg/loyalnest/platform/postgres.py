"""PostgreSQL for a service: a schema of its own, versioned migrations, an async pool."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.abc import Query
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from loyalnest.platform import audit
from loyalnest.platform.config import DatabaseSettings
from loyalnest.platform.observability import get_logger

log = get_logger(__name__)


def require_transaction(conn: AsyncConnection, refusal: str) -> None:
    """Raises RuntimeError(`refusal`) unless `conn` is inside an open transaction: for
    writes that must commit with the caller's change (an outbox row, an inbox claim), never
    on their own."""
    if conn.info.transaction_status != TransactionStatus.INTRANS:
        raise RuntimeError(refusal)


PLATFORM_MIGRATIONS = Path(__file__).parent / "migrations"
_SCHEMA_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class DatabaseSpec:
    """A service's PostgreSQL schema and its migration directories (platform ones implied)."""

    schema: str
    migration_dirs: tuple[Path, ...]

    def migrate(self, database_url: str) -> list[str]:
        return migrate(database_url, self.schema, self.migration_dirs)


def _yoyo_url(database_url: str, schema: str) -> str:
    scheme, sep, rest = database_url.partition("://")
    if not sep or scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"expected a postgresql:// URL, got {scheme!r}")
    joiner = "&" if "?" in rest else "?"
    return f"postgresql+psycopg://{rest}{joiner}schema={schema}"


def migrate(database_url: str, schema: str, migration_dirs: Sequence[Path]) -> list[str]:
    """Creates the schema and applies pending migrations (platform ones first).

    Blocking; safe to run from several processes at once (yoyo takes a lock).
    Returns the ids of the migrations applied by this call.
    """
    # yoyo (and sqlparse, ~1.6 MiB) only where migrations run: in Kubernetes a Job runs
    # them, and the serving processes never load it.
    from yoyo import get_backend, read_migrations

    if not _SCHEMA_RE.match(schema):
        raise ValueError(f"invalid schema name {schema!r}")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    backend = get_backend(_yoyo_url(database_url, schema))
    try:
        migrations = read_migrations(str(PLATFORM_MIGRATIONS), *map(str, migration_dirs))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return [m.id for m in pending]
    finally:
        backend.connection.close()


class Database:
    """A service's pool, scoped to its schema through search_path."""

    def __init__(self, settings: DatabaseSettings, spec: DatabaseSpec) -> None:
        self.settings = settings
        self.spec = spec
        schema = spec.schema
        audited = audit.MIGRATIONS in spec.migration_dirs
        # An audited schema's connections name the RPC's caller by themselves.
        pool_class = audit.AuditedPool if audited else AsyncConnectionPool
        self.pool = pool_class(
            settings.database_url,
            min_size=settings.db_pool_min_size,
            max_size=settings.db_pool_max_size,
            kwargs={
                # Reads are one round trip instead of BEGIN/SELECT/COMMIT; writes open
                # explicit transactions (`conn.transaction()`).
                "autocommit": True,
                "options": f"-c search_path={schema}",
                "connect_timeout": max(1, round(settings.db_connect_timeout_seconds)),
            },
            timeout=settings.db_connect_timeout_seconds,
            reconnect_timeout=0,  # keep trying forever; health reports the outage
            name=f"loyalnest-{schema}",
            open=False,
        )

    async def open(self) -> None:
        # wait=False: the server starts (health NOT_SERVING) even while PostgreSQL is down.
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    async def migrate(self) -> None:
        applied = await asyncio.to_thread(self.spec.migrate, self.settings.database_url)
        if applied:
            log.info("migrations applied", schema=self.spec.schema, migrations=applied)

    async def ping(self) -> None:
        try:
            async with self.pool.connection() as conn:
                await conn.execute("SELECT 1")
        except psycopg.Error:
            # Drop connections broken by a restart so requests don't trip over them.
            await self.pool.check()
            raise


@contextmanager
def unique_violations(errors: Mapping[str, Callable[[], Exception]]) -> Iterator[None]:
    """Raises `errors[constraint]()` for a unique violation of a named constraint (a taken
    email, a taken name): the caller's domain error instead of psycopg's. Other violations
    pass unchanged."""
    try:
        yield
    except psycopg.errors.UniqueViolation as exc:
        error = errors.get(exc.diag.constraint_name or "")
        if error is None:
            raise
        raise error() from exc


class IdleProbe:
    """For a loop that polls a table in a transaction (the outbox relay, the audit shipper).

    After a round that found nothing (`found_nothing`), `worth_a_round` first asks one cheap
    statement, `pending` (an EXISTS on an index), and the round runs only when it answers
    true. An idle poller then pays one statement per poll instead of BEGIN, its locks, its
    read and COMMIT. The hint is per poller; the statement decides.
    """

    def __init__(self, pool: AsyncConnectionPool, pending: Query) -> None:
        self._pool = pool
        self._pending = pending
        self.found_nothing = False

    async def worth_a_round(self) -> bool:
        if not self.found_nothing:
            return True
        async with self._pool.connection() as conn:
            cursor = await conn.execute(self._pending, prepare=True)
            row = await cursor.fetchone()
        return bool(row and row[0])
