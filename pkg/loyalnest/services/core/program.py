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
from loyalnest.services.core.cache import ProgramCache
from loyalnest.services.core.domain import (
    PlanCatalogue,
    ProgramSettings,
    is_change,
)

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
        key: IdempotencyKey | None = None,
        expected_version: int = 0,
        event: ConsumedEvent | None = None,
    ) -> ProgramSettings:
        """Applies `change`; saves and announces a new version only when something changed.

        With `key`, a retry returns the current program without changing it again; with
        `event`, a redelivered event changes nothing.
        """
        async with self._pool.connection() as conn, conn.transaction():
            if key is not None and await idempotency.claim(conn, merchant_id, key) is not None:
                return await self.load(conn, merchant_id)
            if event is not None and not await inbox.claim(conn, event):
                return await self.load(conn, merchant_id)
            before = await self.load(conn, merchant_id, for_change=True)
            if expected_version and expected_version != before.version:
                raise Aborted(
                    f"the program is at version {before.version}, not {expected_version}:"
                    " read it again and reapply the change"
                )
            after = change(before)
            changed = is_change(before, after)
            if changed:
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
            else:
                after = before
            if key is not None:
                await idempotency.record(conn, merchant_id, key, str(after.version))
        # After commit: dropping it earlier would let a concurrent read re-cache the old state.
        if changed and self._cache:
            await self._cache.invalidate(merchant_id)
        return after
