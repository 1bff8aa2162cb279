"""The process' shared Redis subscription (`platform/cache.SharedSubscriber`), against a real
Valkey: followers get every message in order, and a quiet connection is pinged, kept while it
answers and dropped (RESYNC to everyone) when it stops answering."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from loyalnest.platform import cache
from loyalnest.platform.cache import RESYNC, SharedSubscriber
from tests.integration.conftest import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def shared(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SharedSubscriber]:
    monkeypatch.setattr(cache, "_IDLE_SECONDS", 0.2)
    client = redis.Redis.from_url(redis_url, socket_timeout=0.5)
    subscriber = SharedSubscriber(client, "test:*", name="test_shared")
    yield subscriber
    await subscriber.close()
    await client.aclose()


async def connected(subscriber: SharedSubscriber) -> bool:
    return subscriber.connected


async def test_followers_get_every_message_in_order_none_dropped(
    valkey: redis.Redis, shared: SharedSubscriber
) -> None:
    received: list[bytes | None] = []
    shared.follow("test:a", received.append)
    await eventually(lambda: connected(shared), 5, "the subscription")
    sent = [f"m{i}".encode() for i in range(100)]  # far more than a subscriber's queue holds
    for message in sent:
        await valkey.publish("test:a", message)
    await valkey.publish("test:b", b"another channel")

    async def all_received() -> bool:
        return len(received) >= len(sent)

    await eventually(all_received, 5, "every message")
    assert received == sent


async def test_a_quiet_connection_is_kept_while_it_answers_pings(
    valkey: redis.Redis, shared: SharedSubscriber
) -> None:
    received: list[bytes | None] = []
    shared.follow("test:a", received.append)
    await eventually(lambda: connected(shared), 5, "the subscription")
    await asyncio.sleep(1.5)  # seven idle periods: pinged each time, answered
    assert shared.connected and received == []
    await valkey.publish("test:a", b"still here")
    await eventually(lambda: asyncio.sleep(0, bool(received)), 5, "the message")
    assert received == [b"still here"]


async def test_a_connection_that_stops_answering_is_dropped_with_a_resync(
    valkey: redis.Redis, shared: SharedSubscriber
) -> None:
    received: list[bytes | None] = []
    shared.follow("test:a", received.append)
    await eventually(lambda: connected(shared), 5, "the subscription")
    # Valkey holds every command, PING included, as a connection cut without a FIN would.
    await valkey.execute_command("CLIENT", "PAUSE", "1500", "ALL")
    await eventually(lambda: asyncio.sleep(0, received == [RESYNC]), 3, "the RESYNC")
    await eventually(lambda: connected(shared), 10, "a new subscription after the pause")
    await valkey.publish("test:a", b"after")
    await eventually(lambda: asyncio.sleep(0, received[-1:] == [b"after"]), 5, "the message")
