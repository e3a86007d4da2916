"""RTP/RTCP port pairs from a configured range, handed out at random.

RTP takes the even port and RTCP the next odd one (RFC 3550 §11, RFC 3605 §1).
A pair is drawn at random (from the OS's CSPRNG) among the free ones, so the
port of the next call cannot be guessed from the last one and sprayed with
packets before its party sends (RFC 3550 §8.1 asks the same of SSRCs). A
random draw over thousands of free pairs also makes a freed pair's quick
reuse unlikely, which keeps stray packets of an ended call from a new one.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

__all__ = ["PortPool"]


class PortPool:
    """Even RTP ports ``p`` with ``p`` and ``p + 1`` inside ``[low, high]``.

    ``pick(n)`` chooses an index below ``n``: ``secrets.randbelow`` unless a
    test needs the draw to be known."""

    __slots__ = ("low", "high", "_free", "_taken", "_pick")

    def __init__(
        self, low: int, high: int, *, pick: Callable[[int], int] = secrets.randbelow
    ) -> None:
        first = low + (low & 1)
        if not 0 < low <= high <= 65535 or first + 1 > high:
            raise ValueError(f"port range {low}-{high} holds no even/odd pair")
        self.low = low
        self.high = high
        self._free = list(range(first, high, 2))
        self._taken: set[int] = set()
        self._pick = pick

    @property
    def size(self) -> int:
        """Pairs in the range."""
        return len(self._free) + len(self._taken)

    @property
    def available(self) -> int:
        return len(self._free)

    def allocate(self) -> int | None:
        """The RTP port of a free pair drawn at random (RTCP is one above); None when
        all are taken."""
        free = self._free
        if not free:
            return None
        index = self._pick(len(free))
        port = free[index]
        free[index] = free[-1]  # O(1) removal: the last free pair takes the drawn one's place
        free.pop()
        self._taken.add(port)
        return port

    def release(self, port: int) -> None:
        """Give the pair back; releasing a port that is not taken is an error."""
        self._taken.remove(port)
        self._free.append(port)

    def __contains__(self, port: int) -> bool:
        return port in self._taken
