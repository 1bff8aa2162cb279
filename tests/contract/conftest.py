"""The `store` fixture: every contract test runs once per LedgerStore implementation, and
once more for MongoDB's path without transactions (a standalone server).

MongoDB runs against the server in LOYALNEST_TEST_MONGO_URL when set, else against
mongomock-ng; the fake's test ids say so (`mongo-FAKE-mongomock`), so a green run on the fake
is never mistaken for one against a real server.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import mongomock_ng
import pymongo
import pytest

from loyalnest.platform.postgres import Database
from loyalnest.services.points.service import DATABASE, PointsSettings
from loyalnest.services.points.store.base import LedgerStore
from loyalnest.services.points.store.mongo import MongoLedgerStore
from loyalnest.services.points.store.postgres import PostgresLedgerStore

MONGO_URL = os.environ.get("LOYALNEST_TEST_MONGO_URL")
MONGO_ID = "mongo" if MONGO_URL else "mongo-FAKE-mongomock"

MongoStoreFactory = Callable[..., Awaitable[MongoLedgerStore]]


@pytest.fixture
async def postgres_store(database_url: str) -> AsyncIterator[PostgresLedgerStore]:
    database = Database(PointsSettings(database_url=database_url), DATABASE)
    await database.open()
    try:
        await database.migrate()
        yield PostgresLedgerStore(database)
    finally:
        await database.close()


@pytest.fixture
async def mongo_store_factory() -> AsyncIterator[MongoStoreFactory]:
    """Builds stores on one fresh database; options go to MongoLedgerStore."""
    name = f"loyalnest_test_{uuid.uuid4().hex[:12]}"
    fake: pymongo.MongoClient[dict[str, Any]] | None = (
        mongomock_ng.MongoClient() if MONGO_URL is None else None
    )
    stores: list[MongoLedgerStore] = []

    async def build(**options: Any) -> MongoLedgerStore:
        if fake is not None:
            store = MongoLedgerStore(fake[name], **options)
        else:
            assert MONGO_URL is not None
            store = MongoLedgerStore.connect(MONGO_URL, name, **options)
        stores.append(store)
        await store.ensure_indexes()
        return store

    yield build
    for store in stores:
        await store.close()
    if MONGO_URL is not None:
        client: pymongo.MongoClient[dict[str, Any]]
        with pymongo.MongoClient(MONGO_URL) as client:
            client.drop_database(name)


@pytest.fixture
async def mongo_store(mongo_store_factory: MongoStoreFactory) -> MongoLedgerStore:
    return await mongo_store_factory()


@pytest.fixture
async def mongo_without_transactions_store(
    mongo_store_factory: MongoStoreFactory,
) -> MongoLedgerStore:
    """The path taken on a standalone server, which has no transactions."""
    return await mongo_store_factory(transactions=False)


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Switches threads far more often than CPython's default 5 ms.

    Store code running in worker threads (pymongo, mongomock-ng) otherwise rarely loses the
    GIL mid-operation, and races there would pass unseen.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@pytest.fixture(
    params=["postgres", "mongo", "mongo_without_transactions"],
    ids=["postgres", MONGO_ID, f"{MONGO_ID}-no-transactions"],
)
def store(request: pytest.FixtureRequest) -> LedgerStore:
    fixture: LedgerStore = request.getfixturevalue(f"{request.param}_store")
    return fixture
