"""Deadlines of one fixed duration, such as timer C (RFC 3261 §16.6 step 11).

With one duration for every item, arming order is deadline order: a FIFO
(an OrderedDict) replaces the timing wheel. Re-arming moves an item to the
back and disarming drops it at once, both O(1), so a call that ends frees
its branch immediately instead of leaving an entry behind until its slot
comes round 3 minutes later (at 2000 calls/s that would hold 360 000 dead
branches). ``expire`` looks only at the front.

``Timers`` holds a few distinct durations, one ``Deadlines`` each (the
B2BUA's failover timeout, duration limit and negotiated session intervals):
an item lives in the queue of the duration it was last armed with.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Key = TypeVar("Key", bound=Hashable)


class Deadlines(Generic[Item]):
    __slots__ = ("duration", "_items")

    def __init__(self, duration: float) -> None:
        self.duration = duration
        self._items: OrderedDict[Item, float] = OrderedDict()

    def arm(self, item: Item, now: float) -> None:
        """(Re)start the item's countdown from ``now``."""
        items = self._items
        items[item] = now + self.duration
        items.move_to_end(item)

    def disarm(self, item: Item) -> None:
        self._items.pop(item, None)

    def expire(self, now: float) -> list[Item]:
        """Remove and return the items whose deadline is ``now`` or earlier."""
        items = self._items
        due: list[Item] = []
        while items:
            item, deadline = next(iter(items.items()))
            if deadline > now:
                break
            del items[item]
            due.append(item)
        return due

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)


class Timers(Generic[Key]):
    """Deadlines of a few durations, an item armed with one at a time."""

    __slots__ = ("_queues", "_duration_of")

    def __init__(self) -> None:
        self._queues: dict[float, Deadlines[Key]] = {}
        self._duration_of: dict[Key, float] = {}

    def arm(self, item: Key, now: float, duration: float) -> None:
        """(Re)start the item's countdown of ``duration`` seconds from ``now``."""
        old = self._duration_of.get(item)
        if old is not None and old != duration:
            self._queues[old].disarm(item)
        queue = self._queues.get(duration)
        if queue is None:
            queue = self._queues[duration] = Deadlines(duration)
        queue.arm(item, now)
        self._duration_of[item] = duration

    def disarm(self, item: Key) -> None:
        duration = self._duration_of.pop(item, None)
        if duration is not None:
            self._queues[duration].disarm(item)

    def expire(self, now: float) -> list[Key]:
        """Remove and return the items whose deadline is ``now`` or earlier."""
        due: list[Key] = []
        duration_of = self._duration_of
        for queue in self._queues.values():
            for item in queue.expire(now):
                del duration_of[item]
                due.append(item)
        return due

    def __contains__(self, item: object) -> bool:
        return item in self._duration_of

    def __len__(self) -> int:
        return len(self._duration_of)
