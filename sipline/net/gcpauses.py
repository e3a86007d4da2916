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


# The pacer (``GcPacer``): young collections on time, survivors frozen.
YOUNG_EVERY = 0.2  # seconds between two collections of the young generations
FULL_EVERY = 600.0  # seconds between two collections of everything, frozen included


class GcPacer:
    """Keeps every collection short, whatever the load: driven by the node's tick.

    CPython counts a generation's objects as allocations less deallocations
    (3.11), and every deallocation counts, an old object's too. Under a
    steady load, lingering transactions die as fast as new ones are made, so
    the count stays under the threshold while the young generation fills up
    with seconds of survivors: the collection that comes at last scanned
    millions of objects, 1.7 s of CPU at 2000 cps (bench.stall). So every
    ``young_every`` seconds the young generations are collected (what came
    since the last time: ~30 ms at 2000 cps) and what survives is frozen out
    of every later collection. Every survivor is scanned once, where the
    counts let many die unscanned: in process at 2000 cps the GC costs ~37 us
    per call against ~16, the price of a bound on every pause. A survivor is
    freed by reference counting when its
    call ends (the call path leaves no cyclic garbage: tests/proxy/test_gc.py,
    tests/b2bua/test_handler.py). Cyclic garbage made of frozen objects
    elsewhere waits for the collection of everything every ``full_every``
    seconds (a pause in proportion to the live set). Off until ``start``:
    only a node process (``tune_gc``) paces its GC, never a test's.
    """

    __slots__ = ("young_every", "full_every", "running", "_next_young", "_next_full")

    def __init__(self, young_every: float = YOUNG_EVERY, full_every: float = FULL_EVERY) -> None:
        self.young_every = young_every
        self.full_every = full_every
        self.running = False
        self._next_young = self._next_full = 0.0

    def start(self, now: float) -> None:
        self.running = True
        self._next_young = now + self.young_every
        self._next_full = now + self.full_every

    def tick(self, now: float) -> None:
        if not self.running or now < self._next_young:
            return
        self._next_young = now + self.young_every
        if now >= self._next_full:
            self._next_full = now + self.full_every
            gc.unfreeze()
            gc.collect()
        else:
            # Generation 0 only: what an automatic collection moved to 1 since
            # the last time has been scanned once already; it is frozen as it is.
            gc.collect(0)
        gc.freeze()
