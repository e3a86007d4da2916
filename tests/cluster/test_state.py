"""The node state model every role shares: precedence, observation, rates."""

from __future__ import annotations

import pytest

from sipline.cluster.state import SILENCE, Lifecycle, Rate, Recent, State, observed


def test_a_node_syncs_until_it_says_it_is_done() -> None:
    node = Lifecycle(syncing={"bindings"})
    assert node.state(holding=False) is State.SYNCING
    assert node.detail() == "syncing bindings"
    node.syncing.discard("bindings")
    assert node.state(holding=False) is State.RUNNING and node.detail() == ""


def test_a_drained_node_is_draining_while_it_holds_work_then_stopped_by_admin() -> None:
    node = Lifecycle()
    node.drained = True
    assert node.state(holding=True) is State.DRAINING
    assert node.state(holding=False) is State.STOPPED_BY_ADMIN
    node.drained = False  # resumed
    assert node.state(holding=True) is State.RUNNING


def test_a_limit_that_refused_work_lately_puts_a_node_at_capacity() -> None:
    node = Lifecycle()
    assert node.state(False, capacity="licence limits reached") is State.AT_CAPACITY
    assert node.detail("licence limits reached") == "licence limits reached"


@pytest.mark.parametrize(
    ("lifecycle", "holding", "capacity", "expected"),
    [
        (Lifecycle(failure="database gone", drained=True), True, "x", State.STOPPED_BY_FAILURE),
        (Lifecycle(drained=True, syncing={"x"}), True, "x", State.DRAINING),
        (Lifecycle(syncing={"x"}), False, "full", State.SYNCING),
        (Lifecycle(), False, "full", State.AT_CAPACITY),
    ],
)
def test_precedence(lifecycle: Lifecycle, holding: bool, capacity: str, expected: State) -> None:
    assert lifecycle.state(holding, capacity) is expected


def test_an_observer_counts_a_silent_node_as_failed() -> None:
    assert observed(State.RUNNING, SILENCE - 0.1) is State.RUNNING
    assert observed(State.DRAINING, SILENCE + 0.1) is State.STOPPED_BY_FAILURE


def test_recent_holds_for_its_window_after_the_counter_moved() -> None:
    recent = Recent(window=10.0)
    assert not recent.moved(5, 100.0)  # the first sample is the baseline
    assert not recent.moved(5, 101.0)
    assert recent.moved(6, 102.0)
    assert recent.moved(6, 112.0)
    assert not recent.moved(6, 112.1)


def test_rate_is_events_per_second_over_the_window() -> None:
    rate = Rate(window=10.0)
    assert rate.sample(0, 0.0) == 0.0
    for second in range(1, 31):
        value = rate.sample(second * 5, float(second))
    assert value == pytest.approx(5.0)
    assert rate.sample(150, 40.0) == pytest.approx(0.0, abs=1.5)  # calls stopped: falls
    assert len(rate._samples) <= 13  # bounded by the window
