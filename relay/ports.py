"""RTP/RTCP port pairs from a configured range.

RTP takes the even port and RTCP the next odd one (RFC 3550 §11, RFC 3605 §1).
Freed pairs go to the back of the queue, so a port is reused as late as
possible and stray packets of an ended call rarely reach a new one.
"""

from __future__ import annotations

from collections import deque

__all__ = ["PortPool"]


class PortPool:
    """Even RTP ports ``p`` with ``p`` and ``p + 1`` inside ``[low, high]``."""

    __slots__ = ("low", "high", "_free", "_taken")

    def __init__(self, low: int, high: int) -> None:
        first = low + (low & 1)
        if not 0 < low <= high <= 65535 or first + 1 > high:
            raise ValueError(f"port range {low}-{high} holds no even/odd pair")
        self.low = low
        self.high = high
        self._free: deque[int] = deque(range(first, high, 2))
        self._taken: set[int] = set()

    @property
    def size(self) -> int:
        """Pairs in the range."""
        return len(self._free) + len(self._taken)

    @property
    def available(self) -> int:
        return len(self._free)

    def allocate(self) -> int | None:
        """The RTP port of a free pair (RTCP is one above), or None when all are taken."""
        if not self._free:
            return None
        port = self._free.popleft()
        self._taken.add(port)
        return port

    def release(self, port: int) -> None:
        """Give the pair back; releasing a port that is not taken is an error."""
        self._taken.remove(port)
        self._free.append(port)

    def __contains__(self, port: int) -> bool:
        return port in self._taken
