"""pymongo from asyncio, shared by MongoDB-backed stores and the MongoDB outbox relay.

pymongo's synchronous client runs in worker threads: the same code then also runs against
mongomock-ng (the in-process fake the tests use where no MongoDB server is available).

mongomock-ng is not thread-safe the way a server is: find_one_and_update finds, then
updates by _id without re-checking the filter, and a unique index is checked before the
insert, so two threads can both pass a guard or both claim a key. Its transactions
snapshot whole collections and restore them on abort, which would also undo other
threads' committed writes. Serialising every call on a fake client (a whole transaction
counting as one call) restores per-document atomicity and makes its transactions safe. One
lock for the process, because a store and a relay (or several stores) may share one fake
client. Real clients are never serialised.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from bson.codec_options import CodecOptions

T = TypeVar("T")
Document = dict[str, Any]

# Aware UTC datetimes whatever the client was built with (tests pass in their own client).
CODEC_OPTIONS: CodecOptions[Document] = CodecOptions(tz_aware=True, tzinfo=UTC)

FAKE_LOCK = threading.RLock()


def is_fake(client: object) -> bool:
    return type(client).__module__.split(".")[0] in {"mongomock", "mongomock_ng"}


def to_millis(moment: datetime) -> datetime:
    """`moment` as a BSON date holds it (milliseconds): truncated up front, what a write
    returns equals what a later read returns."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def now_millis() -> datetime:
    return to_millis(datetime.now(UTC))


class MongoCalls:
    """Runs blocking pymongo calls of one client in worker threads (serialised on a fake)."""

    def __init__(self, client: object) -> None:
        self.fake = is_fake(client)

    async def run(self, call: Callable[[], T]) -> T:
        return await asyncio.to_thread(self.serialised, call)

    def serialised(self, call: Callable[[], T]) -> T:
        if not self.fake:
            return call()
        with FAKE_LOCK:
            return call()
