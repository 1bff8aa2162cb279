"""ProcessMemo: what a process remembers for a while (platform/cache.py)."""

from __future__ import annotations

from loyalnest.platform.cache import ProcessMemo


def test_remembers_until_the_ttl_then_forgets() -> None:
    now = [100.0]
    memo: ProcessMemo[str, str] = ProcessMemo(10, clock=lambda: now[0])
    assert memo.get("m") is None
    memo.put("m", "free")
    now[0] = 109.9
    assert memo.get("m") == "free"
    now[0] = 110.0
    assert memo.get("m") is None


def test_forget_drops_at_once_and_zero_ttl_remembers_nothing() -> None:
    memo: ProcessMemo[str, str] = ProcessMemo(60)
    memo.put("m", "free")
    memo.forget("m")
    assert memo.get("m") is None
    uncached: ProcessMemo[str, str] = ProcessMemo(0)
    uncached.put("m", "plus")
    assert uncached.get("m") is None
