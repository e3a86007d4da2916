"""Deadlines of a few distinct durations, one per item: the B2BUA's call timers.

Items armed with the same duration expire in arming order, so each duration
gets a FIFO (an OrderedDict) and ``expire`` looks only at the fronts: arming,
re-arming and disarming are O(1) and an ended call leaves nothing behind
(a heap or a timing wheel would hold a 4-hour duration limit's entry, and the
call with it, until it came due). The durations in use are few: the failover
timeout, the duration limit and the session intervals negotiated.

proxy/deadlines.py is the one-duration case of this; both could live in sipline/.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

Item = TypeVar("Item", bound=Hashable)


class Timers(Generic[Item]):
    __slots__ = ("_queues", "_duration_of")

    def __init__(self) -> None:
        self._queues: dict[float, OrderedDict[Item, float]] = {}
        self._duration_of: dict[Item, float] = {}

    def arm(self, item: Item, now: float, duration: float) -> None:
        """(Re)start the item's countdown of ``duration`` seconds from ``now``."""
        old = self._duration_of.get(item)
        if old is not None and old != duration:
            del self._queues[old][item]
        queue = self._queues.get(duration)
        if queue is None:
            queue = self._queues[duration] = OrderedDict()
        queue[item] = now + duration
        queue.move_to_end(item)
        self._duration_of[item] = duration

    def disarm(self, item: Item) -> None:
        duration = self._duration_of.pop(item, None)
        if duration is not None:
            del self._queues[duration][item]

    def expire(self, now: float) -> list[Item]:
        """Remove and return the items whose deadline is ``now`` or earlier."""
        due: list[Item] = []
        for queue in self._queues.values():
            while queue:
                item, deadline = next(iter(queue.items()))
                if deadline > now:
                    break
                del queue[item]
                del self._duration_of[item]
                due.append(item)
        return due

    def __contains__(self, item: object) -> bool:
        return item in self._duration_of

    def __len__(self) -> int:
        return len(self._duration_of)
