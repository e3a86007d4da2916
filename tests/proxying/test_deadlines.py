"""Fixed-duration deadlines (timer C): FIFO order, re-arming, disarming."""

from __future__ import annotations

from sipline.proxying.deadlines import Deadlines, Timers


def test_items_expire_in_arming_order_once_due() -> None:
    timers: Deadlines[str] = Deadlines(180.0)
    timers.arm("a", 0.0)
    timers.arm("b", 1.0)
    assert timers.expire(179.9) == []
    assert timers.expire(180.0) == ["a"]
    assert timers.expire(500.0) == ["b"]
    assert len(timers) == 0


def test_rearming_restarts_the_countdown() -> None:
    # RFC 3261 §16.6 step 11: every provisional response resets timer C.
    timers: Deadlines[str] = Deadlines(180.0)
    timers.arm("a", 0.0)
    timers.arm("b", 1.0)
    timers.arm("a", 100.0)
    assert timers.expire(200.0) == ["b"]
    assert timers.expire(280.0) == ["a"]


def test_a_disarmed_item_is_gone_at_once() -> None:
    timers: Deadlines[str] = Deadlines(1.0)
    timers.arm("a", 0.0)
    timers.disarm("a")
    timers.disarm("never armed")
    assert "a" not in timers and len(timers) == 0
    assert timers.expire(5.0) == []


# -- a few durations (the B2BUA's call timers) ------------------------------------------


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
