"""VersionedCache on a real Valkey: many entries put in one pipeline behave as `put_if_newer`
one by one (the newest version wins, every value published), also after Valkey lost its
scripts."""

from __future__ import annotations

import time

import redis.asyncio as redis

from loyalnest.platform.cache import VersionedCache, VersionedEntry


async def test_entries_put_in_one_pipeline_keep_the_newest_version_and_are_published(
    valkey: redis.Redis,
) -> None:
    cache = VersionedCache(valkey, name="test", ttl_seconds=60)
    pubsub = valkey.pubsub()
    await pubsub.subscribe("versioned:a", "versioned:b")
    await cache.put_if_newer("versioned:key-a", 5, b"a5")
    await cache.put_many_if_newer(
        [
            VersionedEntry("versioned:key-a", 4, b"a4", channel="versioned:a"),  # older: kept out
            VersionedEntry("versioned:key-b", 1, b"b1", channel="versioned:b"),
            VersionedEntry("versioned:key-b", 2, b"b2", channel="versioned:b"),
        ]
    )
    assert await cache.get("versioned:key-a") == b"a5"
    assert await cache.get("versioned:key-b") == b"b2"
    assert 0 < await valkey.pttl("versioned:key-b") <= 60_000
    published = []
    deadline = time.monotonic() + 5
    while len(published) < 3 and time.monotonic() < deadline:
        # None for a subscription's confirmation as well as for nothing yet.
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        if message is not None:
            published.append(message["data"])
    assert published == [b"a4", b"b1", b"b2"]  # every value, as put_if_newer publishes
    await pubsub.aclose()


async def test_a_valkey_that_lost_its_scripts_is_given_the_script_again(
    valkey: redis.Redis,
) -> None:
    cache = VersionedCache(valkey, name="test", ttl_seconds=60)
    await valkey.script_flush()
    await cache.put_many_if_newer([VersionedEntry("versioned:key-c", 3, b"c3")])
    assert await cache.get("versioned:key-c") == b"c3"
    await valkey.script_flush()
    await cache.put_many_if_newer([VersionedEntry("versioned:key-c", 2, b"c2")])
    assert await cache.get("versioned:key-c") == b"c3"
