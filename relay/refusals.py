"""What the relay refuses, counted and logged with the source, without flooding the log.

Each refusal is counted at once (``counts``, the relay's metrics); the log gets
one structured line per kind of refusal at most every ``interval`` seconds,
naming the source of the refusal that wrote it and how many went unlogged
since the last line, so that a flood of spoofed packets costs a counter each,
not a line each.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sipline.logs import event

__all__ = ["COUNTED", "Refusals", "show"]

log = logging.getLogger("sipline.relay.refusals")

LOG_INTERVAL = 1.0

COUNTED = {
    "rtp_refused": "RTP/RTCP packets dropped: their source may not send on that stream",
    "ng_refused": "ng datagrams dropped unanswered: their source is not in relay.ng_allowed",
    "offers_refused": "ng offers and answers refused by a limit (media sections, port budgets,"
    " sessions, free ports)",
}


class Refusals:
    """Counts refusals by kind in ``counts`` and logs them, throttled."""

    def __init__(
        self,
        counts: dict[str, int] | None = None,
        *,
        interval: float = LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.counts = counts if counts is not None else dict.fromkeys(COUNTED, 0)
        self.interval = interval
        self.clock = clock
        self._next: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def refuse(self, kind: str, source: Any, **fields: Any) -> None:
        """One refusal of ``kind`` from ``source`` (an address tuple or a host)."""
        self.counts[kind] += 1
        now = self.clock()
        if now < self._next.get(kind, 0.0):
            self._unlogged[kind] = self._unlogged.get(kind, 0) + 1
            return
        self._next[kind] = now + self.interval
        unlogged = self._unlogged.pop(kind, 0)
        event(log, kind, logging.WARNING, source=show(source), **fields, unlogged=unlogged)


def show(source: Any) -> str:
    """``host:port`` (``[v6]:port``) of an address tuple; a bare host as it is."""
    if isinstance(source, str):
        return source
    host, port = source[0], source[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
