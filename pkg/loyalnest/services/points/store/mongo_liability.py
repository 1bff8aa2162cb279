"""The liability summary table on MongoDB (collection `liability_totals`, one document per
merchant), as store/postgres_liability.PostgresLiabilityTable keeps it on PostgreSQL: each
ledger event's movement is added once, its id recorded in the store's `processed_events` in
the same transaction.

Transactions are needed (a replica set or a sharded cluster): on a standalone server the
marker and the `$inc` cannot commit together, and either order miscounts after a crash
(lost, or added twice on redelivery), so the table is not kept there (its events are
acknowledged unapplied) and GetLiabilitySummary is LIABILITY_UNSUPPORTED. Whether the server
has them is asked when first needed, not at start: the store does not wait for its server.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Protocol, cast

from pymongo.client_session import ClientSession
from pymongo.write_concern import WriteConcern

from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import Handler
from loyalnest.platform.mongo import CODEC_OPTIONS, MongoCalls
from loyalnest.platform.mongo import now_millis as _now
from loyalnest.services.points.liability import (
    LedgerTotals,
    LiabilityUnsupported,
    ledger_movement,
)
from loyalnest.services.points.store.mongo import (
    PROCESSED_EVENTS,
    MongoLedgerStore,
    mark_processed,
)

LIABILITY_TOTALS = "liability_totals"
_WRITE_CONCERN = WriteConcern("majority")
_COLUMNS = ("outstanding", "earned", "redeemed", "expired", "adjusted", "reversed", "events")


class _Movement(Protocol):
    points: int


class MongoLiabilityTable:
    def __init__(self, store: MongoLedgerStore) -> None:
        self._store = store
        database = store.database
        self._client = database.client
        self._calls = MongoCalls(self._client)
        self._totals = database.get_collection(LIABILITY_TOTALS, codec_options=CODEC_OPTIONS)
        self._processed = database.get_collection(PROCESSED_EVENTS, codec_options=CODEC_OPTIONS)

    def handler(self) -> Handler:
        return self._handle

    async def _handle(self, event: ConsumedEvent) -> bool:
        """True when the event was added now, False on a redelivery (or no transactions)."""
        if not await self._store.uses_transactions():
            return False
        return await self._calls.run(partial(self._apply, event))

    def _apply(self, event: ConsumedEvent) -> bool:
        m = ledger_movement(event.event_type, cast(_Movement, event.payload).points)

        def apply(session: ClientSession) -> bool:
            if not mark_processed(self._processed, event, session):
                return False
            self._totals.update_one(
                {"_id": event.merchant_id},
                {
                    "$inc": {column: getattr(m, column) for column in _COLUMNS},
                    # merchant_id too: the store's erase_merchant deletes by it.
                    "$set": {"merchant_id": event.merchant_id, "updated_at": _now()},
                },
                upsert=True,
                session=session,
            )
            return True

        with self._client.start_session() as session:
            return session.with_transaction(apply, write_concern=_WRITE_CONCERN)

    async def totals(self, merchant_id: str) -> LedgerTotals:
        if not await self._store.uses_transactions():
            raise LiabilityUnsupported("MongoDB without transactions (a standalone server)")
        doc = await self._calls.run(partial(self._totals.find_one, {"_id": merchant_id}))
        if doc is None:
            return LedgerTotals()
        updated_at: datetime | None = doc.get("updated_at")
        return LedgerTotals(
            outstanding=int(doc["outstanding"]),
            earned=int(doc["earned"]),
            redeemed=int(doc["redeemed"]),
            expired=int(doc["expired"]),
            adjusted=int(doc["adjusted"]),
            reversed=int(doc["reversed"]),
            events=int(doc["events"]),
            updated_at=updated_at,
        )
