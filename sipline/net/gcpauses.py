"""The cyclic GC's pauses, watched: a node stalls while it collects.

A collection stops the event loop: a long one is a stall every peer sees
(late answers, retransmissions). ``GcPauses`` times each collection from the
GC's own callbacks (``gc.callbacks``: two calls per collection, none per
message) and keeps, per generation, how many ran, the longest and how many
took over ``stall`` seconds (wall clock; the log line adds the CPU time,
which a loaded machine does not stretch); each of those is logged (``event=gc_pause``,
warning, at most one line a ``LOG_INTERVAL`` per generation, with how many
were held back), so a stall is told apart from a slow network in the log.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from sipline.logs import Throttle, event

log = logging.getLogger("sipline.gc")

STALL = 0.05  # seconds: a collection longer than this is a stall (issue 14)
LOG_INTERVAL = 10.0


class GcPauses:
    __slots__ = ("stall", "collections", "longest", "stalls", "_started", "_cpu", "_quiet")

    def __init__(self, stall: float = STALL) -> None:
        self.stall = stall
        self.collections = [0, 0, 0]
        self.longest = [0.0, 0.0, 0.0]  # seconds, wall clock
        self.stalls = [0, 0, 0]
        self._started = self._cpu = 0.0
        self._quiet = Throttle(LOG_INTERVAL)

    def install(self) -> GcPauses:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)
        return self

    def remove(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            self._cpu = time.process_time()
            return
        took = time.perf_counter() - self._started
        generation = info.get("generation", 0)
        if not 0 <= generation <= 2:
            return
        self.collections[generation] += 1
        if took > self.longest[generation]:
            self.longest[generation] = took
        if took > self.stall:
            self.stalls[generation] += 1
            held = self._quiet.admit(generation)
            if held is not None:
                event(log, "gc_pause", logging.WARNING, generation=generation,
                      ms=round(took * 1000, 1),
                      cpu_ms=round((time.process_time() - self._cpu) * 1000, 1),
                      collected=info.get("collected", 0),
                      repeated=held)  # fmt: skip
