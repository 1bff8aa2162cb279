"""Merchant integrations on every ledger store's database (store/integrations.py), through the
domain (integrations.Integrations): a secret issued once and kept encrypted, a signed activity
verified, a rotation's grace ending on a moved clock, retries idempotent, the merchant's
erasure taking its integrations along."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loyalnest.platform.crypto import FieldCipher
from loyalnest.platform.errors import Aborted, InvalidArgument
from loyalnest.services.points.integrations import (
    INTEGRATION_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    BadActivitySignature,
    IntegrationNotFound,
    Integrations,
    IntegrationStore,
    sign,
)
from loyalnest.services.points.store.base import LedgerStore
from loyalnest.services.points.store.integrations import (
    MongoIntegrationStore,
    PostgresIntegrationStore,
)
from loyalnest.services.points.store.mongo import MongoLedgerStore
from loyalnest.services.points.store.postgres import PostgresLedgerStore
from tests.contract.conftest import MONGO_ID

pytestmark = pytest.mark.integration


@dataclass
class Stores:
    ledger: LedgerStore
    integrations: IntegrationStore


@pytest.fixture(params=["postgres", "mongo"], ids=["postgres", MONGO_ID])
def stores(request: pytest.FixtureRequest) -> Stores:
    ledger: LedgerStore = request.getfixturevalue(f"{request.param}_store")
    if isinstance(ledger, PostgresLedgerStore):
        return Stores(ledger, PostgresIntegrationStore(ledger._database))
    assert isinstance(ledger, MongoLedgerStore)
    return Stores(ledger, MongoIntegrationStore(ledger.database))


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def signed(integration_id: str, secret: str, body: bytes, at: datetime) -> dict[str, str]:
    timestamp = str(int(at.timestamp()))
    return {
        INTEGRATION_HEADER: integration_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


BODY = json.dumps(
    {"customer_id": "c-1", "activity": "product_review", "occurrence_id": "rv-1"}
).encode()


async def test_issue_verify_rotate_erase(stores: Stores, merchant_id: str) -> None:
    if isinstance(stores.integrations, MongoIntegrationStore):
        await stores.integrations.ensure_indexes()
    clock = Clock()
    integrations = Integrations(
        stores.integrations,
        FieldCipher(os.urandom(32)),
        replay_window_seconds=300,
        rotation_grace_seconds=3600,
        clock=clock,
    )
    created, secret = await integrations.create(merchant_id, "Reviews", "k1")
    assert (created.generation, created.merchant_id) == (1, merchant_id)
    assert secret.encode() not in created.secret  # kept encrypted
    assert await integrations.create(merchant_id, "Reviews", "k1") == (created, secret)
    with pytest.raises(InvalidArgument):
        await integrations.create(merchant_id, "Another name", "k1")
    # Another merchant's same key: another integration.
    other, _ = await integrations.create(f"{merchant_id}-other", "Reviews", "k1")
    assert other.integration_id != created.integration_id

    iid = created.integration_id
    activity = await integrations.verify(signed(iid, secret, BODY, clock.now), BODY)
    assert (activity.merchant_id, activity.customer_id, activity.occurrence_id) == (
        merchant_id,
        "c-1",
        "rv-1",
    )
    with pytest.raises(BadActivitySignature, match="replay window"):
        await integrations.verify(signed(iid, secret, BODY, clock.now - timedelta(minutes=6)), BODY)

    rotated, new = await integrations.rotate(merchant_id, iid, "r1")
    assert rotated.generation == 2 and new != secret
    assert await integrations.rotate(merchant_id, iid, "r1") == (rotated, new)
    with pytest.raises(IntegrationNotFound):
        await integrations.rotate(f"{merchant_id}-other", iid, "r2")
    for valid in (secret, new):  # within the grace
        await integrations.verify(signed(iid, valid, BODY, clock.now), BODY)
    clock.now += timedelta(hours=1, seconds=1)
    with pytest.raises(BadActivitySignature):
        await integrations.verify(signed(iid, secret, BODY, clock.now), BODY)
    await integrations.verify(signed(iid, new, BODY, clock.now), BODY)
    assert [i.integration_id for i in await integrations.listing(merchant_id)] == [iid]

    await stores.ledger.erase_merchant(merchant_id)
    assert await integrations.listing(merchant_id) == []
    assert await stores.integrations.get_integration(iid) is None
    assert await stores.integrations.get_integration(other.integration_id) is not None


class ReadTogether:
    """The store, its first `parties` reads of an integration held until all were made."""

    def __init__(self, store: Any, parties: int) -> None:
        self._store = store
        self._barrier = asyncio.Barrier(parties)
        self._held = parties

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def get_integration(self, integration_id: str) -> Any:
        found = await self._store.get_integration(integration_id)
        if self._held > 0:
            self._held -= 1
            await asyncio.wait_for(self._barrier.wait(), 10)
        return found


async def test_concurrent_rotations_one_wins(stores: Stores, merchant_id: str) -> None:
    """Two rotations of one secret at once: one stores its secret, the other is ABORTED
    (never answering with a secret that was not stored); its retry rotates again."""
    if isinstance(stores.integrations, MongoIntegrationStore):
        await stores.integrations.ensure_indexes()
    cipher = FieldCipher(os.urandom(32))
    integrations = Integrations(stores.integrations, cipher, clock=Clock())
    created, _ = await integrations.create(merchant_id, "Quiz", "k")
    iid = created.integration_id
    # Both rotations read generation 1 before either writes: a race, every time (gather
    # alone let the first finish before the second read, on a loaded machine).
    together = ReadTogether(stores.integrations, 2)
    racing = Integrations(together, cipher, clock=Clock())
    results = await asyncio.gather(
        racing.rotate(merchant_id, iid, "a"),
        racing.rotate(merchant_id, iid, "b"),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, tuple)]
    lost = [r for r in results if isinstance(r, Aborted)]
    assert (len(won), len(lost)) == (1, 1), results
    ((integration, secret),) = won
    stored = await stores.integrations.get_integration(iid)
    assert stored is not None and stored.generation == 2 == integration.generation
    body = BODY
    now = datetime.now(UTC)
    await integrations.verify(signed(iid, secret, body, now), body)
