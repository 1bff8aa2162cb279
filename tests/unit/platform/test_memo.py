"""platform.memo.RecentlyUsed: bounded, most recently used kept."""

from __future__ import annotations

from loyalnest.platform.memo import RecentlyUsed


def test_the_least_recently_used_entry_goes_first():
    memo: RecentlyUsed[str, int] = RecentlyUsed(2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1  # "a" is now the most recent
    memo.put("c", 3)
    assert memo.get("b") is None, "the least recently used went"
    assert (memo.get("a"), memo.get("c"), len(memo)) == (1, 3, 2)


def test_forget_and_clear():
    memo: RecentlyUsed[str, int] = RecentlyUsed(10)
    memo.put("a", 1)
    memo.put("b", 2)
    memo.forget("a")
    memo.forget("missing")
    assert (memo.get("a"), memo.get("b")) == (None, 2)
    memo.clear()
    assert len(memo) == 0
