"""Merchant integrations' secrets (integrations.IntegrationStore), on whichever database holds
the ledger: PostgreSQL (`integrations`, audited) or MongoDB (collection `integrations`).
The secrets are stored as the ciphertexts integrations.py hands over, never in clear."""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from functools import partial
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row

from loyalnest.platform.mongo import CODEC_OPTIONS, Document, MongoCalls
from loyalnest.platform.postgres import Database
from loyalnest.services.points.integrations import Integration

if TYPE_CHECKING:
    from pymongo.collection import Collection
    from pymongo.database import Database as MongoDatabase

# pymongo (~6 MiB a process) is imported by the MongoDB store's methods only: a Points on
# PostgreSQL never loads it (bench/README.md, "Memory").

INTEGRATIONS = "integrations"
_COLUMNS = (
    "merchant_id, integration_id::text AS integration_id, name, generation, secret,"
    " previous_secret, previous_valid_until, secret_key, created_at, rotated_at"
)


def _integration(row: dict[str, Any]) -> Integration:
    values = {k: v for k, v in row.items() if k != "_id"}
    for name in ("secret", "previous_secret"):
        if values[name] is not None:
            values[name] = bytes(values[name])
    return Integration(**values)


class PostgresIntegrationStore:
    def __init__(self, database: Database) -> None:
        self._pool = database.pool

    async def create_integration(self, integration: Integration) -> Integration:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO integrations (merchant_id, integration_id, name, generation, secret,"
                " previous_secret, previous_valid_until, secret_key, created_at, rotated_at)"
                " VALUES (%(merchant_id)s, %(integration_id)s, %(name)s, %(generation)s,"
                " %(secret)s, %(previous_secret)s, %(previous_valid_until)s, %(secret_key)s,"
                " %(created_at)s, %(rotated_at)s) ON CONFLICT (integration_id) DO NOTHING",
                asdict(integration),
            )
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"SELECT {_COLUMNS} FROM integrations WHERE integration_id = %s",
                (integration.integration_id,),
            )
            row = await cursor.fetchone()
        assert row is not None  # inserted, or there before
        return _integration(row)

    async def get_integration(self, integration_id: str) -> Integration | None:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"SELECT {_COLUMNS} FROM integrations WHERE integration_id = %s",
                (integration_id,),
            )
            row = await cursor.fetchone()
        return _integration(row) if row is not None else None

    async def list_integrations(self, merchant_id: str) -> list[Integration]:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"SELECT {_COLUMNS} FROM integrations WHERE merchant_id = %s"
                " ORDER BY created_at, integration_id",
                (merchant_id,),
            )
            return [_integration(row) for row in await cursor.fetchall()]

    async def rotate_integration(self, rotated: Integration) -> bool:
        async with self._pool.connection() as conn:
            updated = await conn.execute(
                "UPDATE integrations SET generation = %(generation)s, secret = %(secret)s,"
                " previous_secret = %(previous_secret)s,"
                " previous_valid_until = %(previous_valid_until)s, secret_key = %(secret_key)s,"
                " rotated_at = %(rotated_at)s"
                " WHERE integration_id = %(integration_id)s AND merchant_id = %(merchant_id)s"
                " AND generation = %(generation)s - 1",
                asdict(rotated),
            )
            return updated.rowcount == 1


class MongoIntegrationStore:
    def __init__(self, database: MongoDatabase[Document]) -> None:
        self._calls = MongoCalls(database.client)
        self._collection: Collection[Document] = database.get_collection(
            INTEGRATIONS, codec_options=CODEC_OPTIONS
        )

    async def ensure_indexes(self) -> None:
        from pymongo import ASCENDING

        await self._calls.run(
            partial(
                self._collection.create_index,
                [("merchant_id", ASCENDING), ("created_at", ASCENDING)],
                name="merchant_listing",
            )
        )

    async def create_integration(self, integration: Integration) -> Integration:
        return await self._calls.run(partial(self._create, integration))

    def _create(self, integration: Integration) -> Integration:
        from pymongo.errors import DuplicateKeyError

        # A retry (or a concurrent first call) finds the id taken: the stored one answers.
        with contextlib.suppress(DuplicateKeyError):
            self._collection.insert_one({"_id": integration.integration_id, **asdict(integration)})
        found = self._collection.find_one({"_id": integration.integration_id})
        assert found is not None
        return _integration(found)

    async def get_integration(self, integration_id: str) -> Integration | None:
        found = await self._calls.run(partial(self._collection.find_one, {"_id": integration_id}))
        return _integration(found) if found is not None else None

    async def list_integrations(self, merchant_id: str) -> list[Integration]:
        from pymongo import ASCENDING

        def listing() -> list[Integration]:
            cursor = self._collection.find({"merchant_id": merchant_id}).sort(
                [("created_at", ASCENDING), ("_id", ASCENDING)]
            )
            return [_integration(doc) for doc in cursor]

        return await self._calls.run(listing)

    async def rotate_integration(self, rotated: Integration) -> bool:
        changes = asdict(rotated)
        for fixed in ("merchant_id", "integration_id", "name", "created_at"):
            del changes[fixed]
        result = await self._calls.run(
            partial(
                self._collection.update_one,
                {
                    "_id": rotated.integration_id,
                    "merchant_id": rotated.merchant_id,
                    "generation": rotated.generation - 1,
                },
                {"$set": changes},
            )
        )
        return result.modified_count == 1
