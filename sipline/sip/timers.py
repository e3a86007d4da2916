"""RFC 3261 timer values and the hashed timing wheel the transaction layer runs on.

A wheel, not a heap and not a task per timer: at 1000 calls/s every
transaction retransmits and times out, and a heap push/pop or an event-loop
timer handle per retransmission is what a pure-Python node cannot afford.
Scheduling appends to a slot list (O(1)); ``expire`` visits only the slots
that have come due. Cancelling is lazy: the owner of an item keeps its
current deadline and ignores stale firings.
"""

from __future__ import annotations

from math import ceil, floor
from typing import Generic, TypeVar

Item = TypeVar("Item")

# RFC 3261 §17.1.1.1 and Table 4.
T1 = 0.5  # RTT estimate
T2 = 4.0  # longest retransmit interval for non-INVITE requests and INVITE responses
T4 = 5.0  # longest time a message stays in the network

# Deadlines that differ from a tick boundary only by float rounding (1.5 / 0.01
# is not always exactly 150) fall on that boundary, so timers fire on time.
_SLACK = 1e-6


class TimerWheel(Generic[Item]):
    """A hashed timing wheel: items scheduled at deadlines, returned when due.

    Time is cut into ticks of ``tick`` seconds; a deadline is rounded up to
    its tick and the item is appended to slot ``tick_index % slots``. Items
    fire at the first tick boundary at or after their deadline, never before.
    A deadline beyond one turn of the wheel (``tick * slots`` seconds) is kept
    in its slot until its own turn comes round.
    """

    __slots__ = ("_tick", "_slots", "_mask", "_current", "_count")

    def __init__(self, tick: float = 0.01, now: float = 0.0, slots: int = 4096) -> None:
        if tick <= 0 or slots < 1 or slots & (slots - 1):
            raise ValueError("tick must be positive and slots a power of two")
        self._tick = tick
        self._slots: list[list[tuple[int, Item]]] = [[] for _ in range(slots)]
        self._mask = slots - 1
        self._current = floor(now / tick + _SLACK)  # the last tick already expired
        self._count = 0

    @property
    def tick(self) -> float:
        return self._tick

    def schedule(self, deadline: float, item: Item) -> None:
        index = ceil(deadline / self._tick - _SLACK)
        if index <= self._current:
            index = self._current + 1  # already due: the next expire returns it
        self._slots[index & self._mask].append((index, item))
        self._count += 1

    def expire(self, now: float) -> list[Item]:
        """Remove and return the items whose deadline is ``now`` or earlier."""
        target = floor(now / self._tick + _SLACK)
        current = self._current
        if target <= current:
            return []
        self._current = target
        slots = self._slots
        mask = self._mask
        due: list[Item] = []
        # After a long pause every slot comes due once; none needs two visits.
        for index in range(current + 1, min(target, current + len(slots)) + 1):
            slot = slots[index & mask]
            if slot:
                self._expire_slot(slot, target, due)
        self._count -= len(due)
        return due

    @staticmethod
    def _expire_slot(slot: list[tuple[int, Item]], target: int, due: list[Item]) -> None:
        later = None
        for entry in slot:
            if entry[0] <= target:
                due.append(entry[1])
            elif later is None:
                later = [entry]
            else:
                later.append(entry)
        if later is None:
            slot.clear()
        else:
            slot[:] = later

    def __len__(self) -> int:
        return self._count
