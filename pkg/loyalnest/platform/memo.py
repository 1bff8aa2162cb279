"""RecentlyUsed: a bounded per-process memo, most recently used kept.

Its own module, not platform/cache.py: the token check in every service uses it, and
cache.py brings redis with it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class RecentlyUsed(Generic[K, T]):
    """The `size` most recently used entries of a per-process memo, oldest dropped first: for
    what a hot path finds again and again (verified tokens, customers seen with a key) whose
    count grows with traffic, so an unbounded dict would grow with it."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[K, T] = OrderedDict()

    def get(self, key: K) -> T | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: T) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
