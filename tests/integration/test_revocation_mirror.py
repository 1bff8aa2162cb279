"""A service's mirror of the token revocation list, against a real Valkey: checks answered
from memory, revocations that reach it over the channel, and what it forgets when it cannot
trust its copy (a broken subscription, the recheck period, its size bound)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as redis

from loyalnest.platform.auth.revocation import (
    REVOCATIONS_CHANNEL,
    RevocationList,
    RevocationMirror,
    revocation_key,
)
from loyalnest.platform.cache import SharedSubscriber
from tests.integration.conftest import eventually

pytestmark = pytest.mark.integration

LATER = int(time.time()) + 3600


@pytest.fixture
async def writer(redis_url: str) -> AsyncIterator[RevocationList]:
    """What Auth holds: revokes, and reads Redis on every check."""
    revocations = RevocationList.from_url(redis_url)
    yield revocations
    await revocations.close()


def mirrored(redis_url: str, **mirror_options: float) -> RevocationList:
    client = redis.Redis.from_url(redis_url, socket_timeout=0.5)
    subscriber = SharedSubscriber(client, REVOCATIONS_CHANNEL, name="revocations")
    return RevocationList(client, mirror=RevocationMirror(subscriber, **mirror_options))


@pytest.fixture
async def service_list(redis_url: str) -> AsyncIterator[RevocationList]:
    """What a service's token check holds."""
    revocations = mirrored(redis_url)
    yield revocations
    await revocations.close()


async def lookups(valkey: redis.Redis) -> int:
    """How many times Redis was asked whether an id is revoked."""
    stats = await valkey.info("commandstats")
    return int(stats.get("cmdstat_exists", {}).get("calls", 0))


def answered_from_memory(
    valkey: redis.Redis, revocations: RevocationList, token_id: str
) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        before = await lookups(valkey)
        assert await revocations.is_revoked(token_id, LATER) is False
        return await lookups(valkey) == before

    return check


def token() -> str:
    return str(uuid.uuid4())


async def test_a_checked_token_is_answered_from_memory_until_its_revocation_arrives(
    valkey: redis.Redis, writer: RevocationList, service_list: RevocationList
) -> None:
    jti = token()
    await eventually(answered_from_memory(valkey, service_list, jti), 5, "a check from memory")
    for _ in range(50):
        assert await service_list.is_revoked(jti, LATER) is False
    before = await lookups(valkey)

    await writer.revoke(jti, LATER)

    async def revoked() -> bool:
        return await service_list.is_revoked(jti, LATER)

    await eventually(revoked, 2, "the revocation to reach the mirror", interval=0.005)
    assert await lookups(valkey) == before, "the mirror learnt it from the channel, not Redis"
    # Other tokens are not affected, and the revocation is in Redis for Auth's own checks.
    assert await service_list.is_revoked(token(), LATER) is False
    assert await writer.is_revoked(jti) is True


async def test_a_broken_subscription_forgets_what_it_remembered(
    valkey: redis.Redis, service_list: RevocationList
) -> None:
    jti = token()
    await eventually(answered_from_memory(valkey, service_list, jti), 5, "a check from memory")
    # The connection drops, and with it the message of a revocation made meanwhile.
    await valkey.client_kill_filter(_type="pubsub")
    await valkey.set(revocation_key(jti), "1", ex=3600)
    # It reconnects and answers from memory again...
    other = token()
    await eventually(answered_from_memory(valkey, service_list, other), 10, "a reconnection")
    # ... but not what it knew before the break.
    assert await service_list.is_revoked(jti, LATER) is True


async def test_a_revocation_whose_message_was_lost_counts_after_the_recheck_period(
    redis_url: str, valkey: redis.Redis
) -> None:
    revocations = mirrored(redis_url, recheck_seconds=0.5)
    try:
        jti = token()
        await eventually(answered_from_memory(valkey, revocations, jti), 5, "a check from memory")
        # Stored without the message (an Auth of an older release).
        await valkey.set(revocation_key(jti), "1", ex=3600)
        await asyncio.sleep(0.6)
        assert await revocations.is_revoked(jti, LATER) is True
    finally:
        await revocations.close()


async def test_an_answer_is_kept_no_longer_than_its_token_lives(
    valkey: redis.Redis, service_list: RevocationList
) -> None:
    jti = token()
    await eventually(answered_from_memory(valkey, service_list, jti), 5, "a check from memory")
    soon = token()
    expires_at = int(time.time()) + 1
    assert await service_list.is_revoked(soon, expires_at) is False
    await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.05)
    before = await lookups(valkey)
    assert await service_list.is_revoked(soon, expires_at) is False
    assert await lookups(valkey) == before + 1, "asked Redis again once its token expired"


async def test_remembered_answers_are_bounded(redis_url: str, valkey: redis.Redis) -> None:
    revocations = mirrored(redis_url, max_valid=3)
    try:
        first = token()
        await eventually(answered_from_memory(valkey, revocations, first), 5, "memory")
        for other in (token(), token(), token()):
            assert await revocations.is_revoked(other, LATER) is False
        before = await lookups(valkey)
        assert await revocations.is_revoked(first, LATER) is False
        assert await lookups(valkey) == before + 1, "the oldest answer made room"
    finally:
        await revocations.close()
