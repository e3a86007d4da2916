"""A node's state, the same model for every role (no I/O, no clock of its own).

A node says what it is doing; its state follows, by precedence:

- ``stopped by failure``: it knows it cannot serve (``failure`` set), or an
  observer has not heard from it for ``SILENCE`` seconds (``observed``);
- ``draining`` while an admin's drain (or a shutdown) waits for the work it
  holds, then ``stopped by admin`` once it holds none;
- ``syncing`` while it catches up on something it needs to serve (a proxy
  loading bindings, an ACR building its route table): each role names what;
- ``at capacity`` when the role says a limit refused work lately (licences,
  carrier capacity, relay sessions);
- ``running`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class State(StrEnum):
    RUNNING = "running"
    SYNCING = "syncing"
    DRAINING = "draining"
    STOPPED_BY_ADMIN = "stopped by admin"
    STOPPED_BY_FAILURE = "stopped by failure"
    AT_CAPACITY = "at capacity"


# Seconds without a heartbeat (one a second) after which a node counts as failed.
SILENCE = 3.0


@dataclass(slots=True)
class Lifecycle:
    """What a node has said about itself; ``state`` turns it into a State."""

    syncing: set[str] = field(default_factory=set)  # what it is catching up on
    drained: bool = False  # an admin drained it, or it is shutting down
    failure: str = ""  # why it cannot serve at all

    def state(self, holding: bool, capacity: str = "") -> State:
        """``holding``: work in progress (calls, transactions); ``capacity``: why a
        limit refused work lately ("" when none did)."""
        if self.failure:
            return State.STOPPED_BY_FAILURE
        if self.drained:
            return State.DRAINING if holding else State.STOPPED_BY_ADMIN
        if self.syncing:
            return State.SYNCING
        if capacity:
            return State.AT_CAPACITY
        return State.RUNNING

    def detail(self, capacity: str = "") -> str:
        """Why the state is what it is, in a few words ("" for running)."""
        if self.failure:
            return self.failure
        if self.syncing and not self.drained:
            return "syncing " + ", ".join(sorted(self.syncing))
        if capacity and not self.drained:
            return capacity
        return ""


def observed(state: State, age: float, silence: float = SILENCE) -> State:
    """The state an observer shows for a report ``age`` seconds old."""
    return State.STOPPED_BY_FAILURE if age > silence else state


class Recent:
    """Whether a counter moved within the last ``window`` seconds: a limit that
    refused work a moment ago makes a node ``at capacity`` for that long."""

    __slots__ = ("window", "_last", "_moved_at")

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._last: int | None = None
        self._moved_at = float("-inf")

    def moved(self, value: int, now: float) -> bool:
        if self._last is not None and value > self._last:
            self._moved_at = now
        self._last = value
        return now - self._moved_at <= self.window


class Rate:
    """Events per second over the last ``window`` seconds, from samples of a
    total that only grows (taken about once a second)."""

    __slots__ = ("window", "_samples")

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._samples: list[tuple[float, int]] = []

    def sample(self, total: int, now: float) -> float:
        samples = self._samples
        samples.append((now, total))
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            del samples[0]
        first_at, first = samples[0]
        elapsed = now - first_at
        return (total - first) / elapsed if elapsed > 0 else 0.0
