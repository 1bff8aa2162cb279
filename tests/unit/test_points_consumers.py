"""Points' chain of handlers for its own ledger events (consumers.InTurn): the summary
table's run at once, then the tier handler event by event, in order."""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Sequence

from loyalnest.gen.events.v1 import points_pb2
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import BatchHandler, EventScope, Handler
from loyalnest.services.points.consumers import InTurn, _in_turn
from tests.consumed_events import consumed


def earned(offset: int) -> ConsumedEvent:
    return consumed("m-1", points_pb2.PointsEarned(customer_id=f"c{offset}"), offset=offset)


class Leader(BatchHandler):
    """Applies every event once: a second delivery answers False."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.seen: set[str] = set()

    @property
    def batch_key(self) -> Hashable:
        return self

    async def __call__(self, event: ConsumedEvent) -> bool:
        self.calls.append(f"one {event.offset}")
        return self._apply(event)

    def _apply(self, event: ConsumedEvent) -> bool:
        fresh = event.event_id not in self.seen
        self.seen.add(event.event_id)
        return fresh

    async def apply_many(
        self, items: Sequence[tuple[ConsumedEvent, BatchHandler]], scope: EventScope
    ) -> list[bool]:
        self.calls.append(f"run {[event.offset for event, _ in items]}")
        return [self._apply(event) for event, _ in items]


def follower(calls: list[str], applies: bool) -> Handler:
    async def handle(event: ConsumedEvent) -> bool:
        calls.append(f"follower {event.offset}")
        return applies

    return handle


async def test_a_run_goes_to_the_leader_at_once_then_to_the_others_event_by_event() -> None:
    leader = Leader()
    chain = _in_turn([leader, follower(leader.calls, applies=False)])
    assert isinstance(chain, InTurn)
    events = [earned(1), earned(2), earned(1)]
    events[2] = events[0]  # the first event again, in the same run
    results = await chain.apply_many(
        [(event, chain) for event in events], lambda event: contextlib.nullcontext()
    )
    assert results == [True, True, False]
    assert leader.calls == ["run [1, 2, 1]", "follower 1", "follower 2", "follower 1"]
    # One event alone: the leader, then the others; any of them applying it counts.
    again = _in_turn([leader, follower(leader.calls, applies=True)])
    assert await again(events[0]) is True
    assert leader.calls[-2:] == ["one 1", "follower 1"]


async def test_chains_of_other_handlers_share_a_key_only_with_the_same_chain() -> None:
    leader = Leader()
    others = follower([], applies=False)
    first, second = _in_turn([leader, others]), _in_turn([leader, others])
    assert isinstance(first, InTurn) and isinstance(second, InTurn)
    assert first.batch_key == second.batch_key != leader.batch_key
    plain = _in_turn([others, others])
    assert not isinstance(plain, BatchHandler)
