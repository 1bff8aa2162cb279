"""The merchant's program in PostgreSQL (program_settings), cached in `config:{merchant_id}`.

Every change runs in one transaction that locks the merchant's program, saves the next
version and enqueues program_settings.updated with the whole state; the cache entry is
dropped once that transaction has committed.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf import json_format
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from loyalnest.platform import idempotency
from loyalnest.platform.errors import Aborted
from loyalnest.platform.events import inbox, outbox
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.postgres import Database
from loyalnest.platform.program_settings import default_program
from loyalnest.services.core import events
from loyalnest.services.core.domain import (
    PlanCatalogue,
    ProgramSettings,
    is_change,
)
from loyalnest.services.core.store.cache import ProgramCache

# A change of the program: the current state (version 0 when never saved) -> the new one.
Change = Callable[[ProgramSettings], ProgramSettings]


def _to_json(settings: ProgramSettings) -> dict[str, object]:
    unversioned = ProgramSettings()
    unversioned.CopyFrom(settings)
    unversioned.ClearField("version")
    return json_format.MessageToDict(unversioned, preserving_proto_field_name=True)


def _from_row(version: int, data: dict[str, object]) -> ProgramSettings:
    # ignore_unknown_fields: a row written by a newer release stays readable by an older one.
    settings = json_format.ParseDict(data, ProgramSettings(), ignore_unknown_fields=True)
    settings.version = version
    return settings


class ProgramStore:
    def __init__(
        self, database: Database, plans: PlanCatalogue, cache: ProgramCache | None
    ) -> None:
        self._pool = database.pool
        self.plans = plans
        self._cache = cache

    async def load(
        self, conn: AsyncConnection, merchant_id: str, *, for_change: bool = False
    ) -> ProgramSettings:
        """The merchant's program as stored, or the defaults (version 0) when never saved.

        for_change (inside a transaction): serialises changes of this merchant's program until
        commit, also while no row exists yet (two first saves must not both insert).
        """
        if for_change:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('core.program:' || %s, 0))",
                (merchant_id,),
            )
        cursor = await conn.execute(
            "SELECT version, settings FROM program_settings WHERE merchant_id = %s",
            (merchant_id,),
            prepare=True,
        )
        row = await cursor.fetchone()
        if row is None:
            return default_program(self.plans.default_plan())
        return _from_row(row[0], row[1])

    async def get(self, merchant_id: str) -> ProgramSettings:
        settings = await self._cache.get(merchant_id) if self._cache else None
        if settings is None:
            async with self._pool.connection() as conn:
                settings = await self.load(conn, merchant_id)
            if self._cache:
                await self._cache.put(merchant_id, settings)
        return settings

    async def change(
        self,
        merchant_id: str,
        change: Change,
        *,
        key: IdempotencyKey,
        expected_version: int = 0,
    ) -> ProgramSettings:
        """Applies `change` for an RPC; a retry with `key` returns the current program
        without changing it again."""
        changed = False

        async def save(conn: AsyncConnection) -> tuple[ProgramSettings, str]:
            nonlocal changed
            after, changed = await self.save(conn, merchant_id, change, expected_version)
            return after, str(after.version)

        settings = await idempotency.write_once(
            self._pool,
            merchant_id,
            key,
            write=save,
            replay=lambda conn, _version: self.load(conn, merchant_id),
        )
        if changed:
            await self.invalidate(merchant_id)
        return settings

    async def apply_event(self, event: ConsumedEvent, change: Change) -> ProgramSettings:
        """Applies `change` for a consumed event; a redelivered event changes nothing."""
        merchant_id = event.merchant_id
        async with self._pool.connection() as conn, conn.transaction():
            if not await inbox.claim(conn, event):
                return await self.load(conn, merchant_id)
            after, changed = await self.save(conn, merchant_id, change)
        if changed:
            await self.invalidate(merchant_id)
        return after

    async def save(
        self, conn: AsyncConnection, merchant_id: str, change: Change, expected_version: int = 0
    ) -> tuple[ProgramSettings, bool]:
        """Saves and announces a new version only when `change` changes something, inside the
        caller's transaction; the new state and whether it did. The caller drops the cached
        copy (`invalidate`) once its transaction has committed."""
        before = await self.load(conn, merchant_id, for_change=True)
        if expected_version and expected_version != before.version:
            raise Aborted(
                f"the program is at version {before.version}, not {expected_version}:"
                " read it again and reapply the change"
            )
        after = change(before)
        if not is_change(before, after):
            return before, False
        after.version = before.version + 1
        await conn.execute(
            "INSERT INTO program_settings (merchant_id, version, settings)"
            " VALUES (%(merchant)s, %(version)s, %(settings)s)"
            " ON CONFLICT (merchant_id) DO UPDATE SET version = excluded.version,"
            " settings = excluded.settings, updated_at = now()",
            {
                "merchant": merchant_id,
                "version": after.version,
                "settings": Jsonb(_to_json(after)),
            },
        )
        await outbox.enqueue(conn, merchant_id, events.program_settings_updated(after))
        return after, True

    async def invalidate(self, merchant_id: str) -> None:
        # After commit: dropping it earlier would let a concurrent read re-cache the old state.
        if self._cache:
            await self._cache.invalidate(merchant_id)
