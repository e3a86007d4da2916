"""The GC's pauses, timed from its callbacks (sipline.net.gcpauses)."""

import gc
import logging

import pytest

from sipline.net.gcpauses import GcPauses


@pytest.fixture
def pauses():
    watch = GcPauses(stall=0.0).install()  # every collection counts as a stall
    yield watch
    watch.remove()


def test_each_collection_is_counted_and_a_long_one_is_logged(pauses, caplog):
    caplog.set_level(logging.WARNING, logger="sipline.gc")
    gc.collect(0)
    gc.collect(2)
    assert pauses.collections[0] >= 1 and pauses.collections[2] >= 1
    assert pauses.stalls[2] >= 1 and pauses.longest[2] > 0.0
    lines = [r.getMessage() for r in caplog.records if "event=gc_pause" in r.getMessage()]
    assert any("generation=2" in line for line in lines)


def test_logging_is_throttled_per_generation(pauses, caplog):
    caplog.set_level(logging.WARNING, logger="sipline.gc")
    for _ in range(5):
        gc.collect(1)
    lines = [r for r in caplog.records if "generation=1" in r.getMessage()]
    assert len(lines) == 1 and pauses.stalls[1] >= 5


def test_installing_twice_adds_one_callback():
    watch = GcPauses()
    watch.install().install()
    try:
        assert gc.callbacks.count(watch._callback) == 1
    finally:
        watch.remove()
    assert watch._callback not in gc.callbacks


def test_the_pacer_collects_the_young_on_time_and_everything_now_and_then(monkeypatch):
    from sipline.net import gcpauses

    done: list[object] = []
    monkeypatch.setattr(gcpauses.gc, "collect", lambda generation=2: done.append(generation))
    monkeypatch.setattr(gcpauses.gc, "freeze", lambda: done.append("freeze"))
    monkeypatch.setattr(gcpauses.gc, "unfreeze", lambda: done.append("unfreeze"))
    pacer = gcpauses.GcPacer(young_every=0.2, full_every=1.0)
    pacer.tick(5.0)
    assert done == []  # off until started: a test's process is never paced
    pacer.start(10.0)
    pacer.tick(10.1)
    assert done == []
    pacer.tick(10.2)
    assert done == [0, "freeze"]
    pacer.tick(10.3)
    assert done == [0, "freeze"]  # not due again before 10.4
    done.clear()
    pacer.tick(11.0)
    assert done == ["unfreeze", 2, "freeze"]  # the collection of everything, frozen included
