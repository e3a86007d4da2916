"""The hashed timing wheel the transaction layer runs its timers on."""


import pytest

from sipline.sip.timers import T1, T2, T4, TimerWheel


def test_rfc_3261_timer_values():
    assert (T1, T2, T4) == (0.5, 4.0, 5.0)


def test_an_item_is_returned_once_its_deadline_has_come():
    wheel = TimerWheel(tick=0.01)
    wheel.schedule(0.5, "a")
    assert wheel.expire(0.49) == []
    assert wheel.expire(0.5) == ["a"]
    assert wheel.expire(0.6) == []


def test_an_item_never_fires_early_but_at_the_first_tick_at_or_after_its_deadline():
    wheel = TimerWheel(tick=0.01)
    wheel.schedule(0.505, "a")
    assert wheel.expire(0.5) == []
    assert wheel.expire(0.509) == []
    assert wheel.expire(0.51) == ["a"]


@pytest.mark.parametrize("deadline", [0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 32.0, 0.07, 0.29, 1.1])
def test_float_rounding_does_not_delay_an_item_by_a_tick(deadline):
    wheel = TimerWheel(tick=0.01)
    wheel.schedule(deadline, "a")
    assert wheel.expire(deadline) == ["a"]


def test_items_come_out_together_when_time_jumps_past_several_deadlines():
    wheel = TimerWheel(tick=0.01)
    for deadline, item in [(0.3, "c"), (0.1, "a"), (0.2, "b"), (5.0, "later")]:
        wheel.schedule(deadline, item)
    assert wheel.expire(1.0) == ["a", "b", "c"]
    assert len(wheel) == 1


def test_a_deadline_beyond_one_turn_of_the_wheel_waits_for_its_own_round():
    wheel = TimerWheel(tick=0.01, slots=16)  # one turn is 0.16 s
    wheel.schedule(0.05, "near")
    wheel.schedule(0.05 + 0.16 * 3, "far")  # the same slot, three turns on
    assert wheel.expire(0.05) == ["near"]
    assert wheel.expire(0.21) == []
    assert wheel.expire(0.37) == []
    assert wheel.expire(0.53) == ["far"]


def test_a_long_pause_returns_every_due_item_once():
    wheel = TimerWheel(tick=0.01, slots=16)
    for i in range(40):
        wheel.schedule(i * 0.05, i)
    assert sorted(wheel.expire(100.0)) == list(range(40))
    assert len(wheel) == 0


def test_a_deadline_already_past_fires_at_the_next_expire():
    wheel = TimerWheel(tick=0.01, now=10.0)
    wheel.expire(10.0)
    wheel.schedule(9.0, "late")
    assert wheel.expire(10.0) == []  # this tick has been run already
    assert wheel.expire(10.01) == ["late"]


def test_the_wheel_starts_at_the_time_it_is_given():
    wheel = TimerWheel(tick=0.01, now=1000.0)
    wheel.schedule(1000.5, "a")
    assert wheel.expire(1000.4) == []
    assert wheel.expire(1000.5) == ["a"]


def test_time_going_backwards_expires_nothing():
    wheel = TimerWheel(tick=0.01)
    wheel.schedule(0.2, "a")
    wheel.expire(0.1)
    assert wheel.expire(0.05) == []
    assert wheel.expire(0.2) == ["a"]


def test_len_counts_scheduled_items_until_they_expire():
    wheel = TimerWheel()
    for i in range(5):
        wheel.schedule(1.0 + i, i)
    assert len(wheel) == 5
    wheel.expire(2.0)
    assert len(wheel) == 3


@pytest.mark.parametrize("tick, slots", [(0.0, 16), (-1.0, 16), (0.01, 0), (0.01, 12)])
def test_a_wheel_needs_a_positive_tick_and_a_power_of_two_slots(tick, slots):
    with pytest.raises(ValueError):
        TimerWheel(tick=tick, slots=slots)


def test_expire_costs_the_ticks_passed_and_the_items_due_not_the_items_waiting():
    # 100,000 items 30 s out; running every 10 ms tick up to them must not
    # look at them. Walking them on each of the 2999 ticks would be ~3e8 steps.
    visited = []

    class CountingWheel(TimerWheel):
        __slots__ = ()

        @staticmethod
        def _expire_slot(slot, target, due):
            visited.append(len(slot))
            TimerWheel._expire_slot(slot, target, due)

    wheel = CountingWheel(tick=0.01)
    for i in range(100_000):
        wheel.schedule(30.0, i)
    for step in range(1, 3000):
        assert wheel.expire(step * 0.01) == []
    assert visited == []
    assert len(wheel.expire(30.0)) == 100_000
