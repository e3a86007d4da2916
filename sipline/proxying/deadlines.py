"""Deadlines of one fixed duration, such as timer C (RFC 3261 §16.6 step 11).

With one duration for every item, arming order is deadline order: a FIFO
(an OrderedDict) replaces the timing wheel. Re-arming moves an item to the
back and disarming drops it at once, both O(1), so a call that ends frees
its branch immediately instead of leaving an entry behind until its slot
comes round 3 minutes later (at 2000 calls/s that would hold 360 000 dead
branches). ``expire`` looks only at the front.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

Item = TypeVar("Item")


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
