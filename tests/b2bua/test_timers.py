"""Call timers: deadlines of a few durations, re-armed and disarmed in O(1)."""

from __future__ import annotations

from b2bua.timers import Timers


def test_items_expire_in_deadline_order_across_durations() -> None:
    timers: Timers[str] = Timers()
    timers.arm("long", 0.0, 10.0)
    timers.arm("short", 0.0, 2.0)
    timers.arm("later-short", 1.0, 2.0)
    assert timers.expire(1.9) == []
    assert timers.expire(3.0) == ["short", "later-short"]
    assert timers.expire(10.0) == ["long"] and len(timers) == 0


def test_rearming_moves_the_deadline_and_disarming_forgets_the_item() -> None:
    timers: Timers[str] = Timers()
    timers.arm("a", 0.0, 5.0)
    timers.arm("b", 0.0, 5.0)
    timers.arm("a", 3.0, 5.0)  # re-armed: behind b
    timers.disarm("b")
    assert "b" not in timers and timers.expire(6.0) == []
    timers.arm("a", 4.0, 1.0)  # another duration: moves to that queue
    assert timers.expire(5.0) == ["a"] and len(timers) == 0
    timers.disarm("a")  # nothing armed: nothing happens
