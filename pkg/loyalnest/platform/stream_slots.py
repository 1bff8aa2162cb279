"""Limits on concurrent server streams per merchant and per process.

A server stream holds a queue, a subscription and a task for as long as its client keeps it
open: without a bound, one merchant's clients could hold all of a process. Beyond either limit
a call gets RESOURCE_EXHAUSTED with RetryInfo (429 with Retry-After over REST). Points'
StreamPoints has its own copy of this (services/points/ledger.py), which could move here.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from loyalnest.platform.errors import ResourceExhausted


@dataclass(frozen=True)
class StreamLimits:
    per_merchant: int = 100
    per_process: int = 2000
    # A stream is long-lived: a slot frees when a client goes, not within milliseconds.
    retry_after_seconds: float = 30.0


class StreamSlots:
    def __init__(self, limits: StreamLimits, *, what: str) -> None:
        self._limits = limits
        self._what = what
        self._by_merchant: collections.Counter[str] = collections.Counter()
        self._total = 0

    @contextlib.contextmanager
    def slot(self, merchant_id: str) -> Iterator[None]:
        limits = self._limits
        if self._by_merchant[merchant_id] >= limits.per_merchant:
            raise ResourceExhausted(
                f"this merchant has {limits.per_merchant} {self._what} calls open on this"
                " instance, the most allowed; close one or retry later",
                retry_after_seconds=limits.retry_after_seconds,
            )
        if self._total >= limits.per_process:
            raise ResourceExhausted(
                f"this instance serves its maximum of {limits.per_process} {self._what}"
                " calls; retry later",
                retry_after_seconds=limits.retry_after_seconds,
            )
        self._by_merchant[merchant_id] += 1
        self._total += 1
        try:
            yield
        finally:
            self._total -= 1
            self._by_merchant[merchant_id] -= 1
            if not self._by_merchant[merchant_id]:
                del self._by_merchant[merchant_id]
