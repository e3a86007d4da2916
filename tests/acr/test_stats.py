"""Carrier statistics (acr.stats): decay, figures, and two ACR nodes sharing them through Redis."""

from __future__ import annotations

import logging

import pytest
from redis.asyncio import Redis

from acr.stats import (
    GENERATION,
    RELAY_CALL,
    Attempt,
    CarrierStats,
    MediaQuality,
    media_quality,
    open_stats,
)
from tests.support import FakeClock

HOUR = 3600.0
AT = 1_700_000_000.0



def attempt(code: int = 200, pdd: float | None = 1.0, carrier: str = "alpha") -> Attempt:
    return Attempt(carrier, "44", "10.0.0.1:5060", AT, code, pdd, answered=code == 200)


def test_figures_count_attempts_answers_and_connected_calls() -> None:
    stats = CarrierStats(HOUR, clock=FakeClock(AT))
    for code in (200, 200, 486, 503):
        stats.record_attempt(attempt(code, pdd=2.0 if code != 503 else None))
    stats.record_call_end("alpha", "44", 60.0)
    stats.record_call_end("alpha", "44", 120.0, MediaQuality(4.0, 10.0, 0.02))

    figures = stats.quality("alpha", "44")
    assert figures.attempts == pytest.approx(4)
    assert figures.answered == pytest.approx(2)
    assert figures.connected == pytest.approx(3)  # the 486: the carrier reached a busy callee
    assert figures.asr == pytest.approx(0.5)
    assert figures.ner == pytest.approx(0.75)
    assert figures.pdd_mean == pytest.approx(2.0)  # over the three with a provisional
    assert figures.acd_mean == pytest.approx(90.0)
    assert (figures.mos, figures.jitter, figures.loss) == pytest.approx((4.0, 10.0, 0.02))


def test_a_pair_never_seen_has_no_figures() -> None:
    figures = CarrierStats(HOUR, clock=FakeClock(AT)).quality("alpha", "44")
    assert figures.attempts == 0 and figures.asr == 0
    assert figures.pdd_mean is None and figures.mos is None


def test_an_event_weighs_half_as_much_after_one_half_life() -> None:
    clock = FakeClock(AT)
    stats = CarrierStats(HOUR, clock=clock)
    stats.record_attempt(attempt())
    clock.now += HOUR
    assert stats.quality("alpha", "44").attempts == pytest.approx(0.5)
    clock.now += 2 * HOUR
    assert stats.quality("alpha", "44").attempts == pytest.approx(0.125)


def test_recent_outcomes_outweigh_old_ones() -> None:
    clock = FakeClock(AT)
    stats = CarrierStats(HOUR, clock=clock)
    for _ in range(10):
        stats.record_attempt(attempt(503, None))  # the carrier failed ...
    clock.now += 4 * HOUR
    for _ in range(10):
        stats.record_attempt(attempt(200))  # ... and works now
    figures = stats.quality("alpha", "44")
    assert figures.asr == pytest.approx(16 / 17)  # old failures weigh 1/16
    assert figures.attempts == pytest.approx(10 + 10 / 16)


async def test_decay_holds_across_generations() -> None:
    clock = FakeClock(AT)
    stats = CarrierStats(HOUR, clock=clock)
    stats.record_attempt(attempt())
    for _ in range(3):  # cross two generation boundaries
        clock.now += GENERATION * HOUR * 0.8
        await stats.sync()
        stats.record_attempt(attempt(503, None))
    now_weights = [
        2 ** (-3 * GENERATION * 0.8),
        2 ** (-2 * GENERATION * 0.8),
        2 ** (-GENERATION * 0.8),
        1,
    ]
    assert stats.quality("alpha", "44").attempts == pytest.approx(sum(now_weights))
    assert stats.quality("alpha", "44").attempts < 1.01


def test_a_half_life_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CarrierStats(0)


def test_the_relays_figures_give_the_worst_mos_the_worst_jitter_and_the_loss() -> None:
    fields = {
        "call-id": "c1",
        "state": "deleted",
        "mos": "3.80",
        "streams": '[{"jitter_ms": 4.0, "lost": 2, "expected": 100},'
        ' {"jitter_ms": 9.5, "lost": 0, "expected": 100}]',
    }
    assert media_quality(fields) == MediaQuality(3.8, 9.5, 0.01)
    assert media_quality({"state": "deleted", "mos": "", "streams": "[]"}) is None


async def test_statistics_recorded_by_one_node_are_seen_by_the_other(redis_url: str) -> None:
    primary = open_stats(redis_url, HOUR, node="primary")
    secondary = open_stats(redis_url, HOUR, node="secondary")
    try:
        for code in (200, 200, 200, 503):
            primary.record_attempt(attempt(code))
        secondary.record_attempt(attempt(486))
        assert secondary.quality("alpha", "44").attempts == pytest.approx(1)  # its own, at once
        await primary.sync()
        await secondary.sync()
        await primary.sync()
        for stats in (primary, secondary):
            figures = stats.quality("alpha", "44")
            assert figures.attempts == pytest.approx(5, rel=1e-3)
            assert figures.answered == pytest.approx(3, rel=1e-3)
            assert figures.ner == pytest.approx(0.8)
        await secondary.sync()  # nothing new: nothing counted twice
        assert secondary.quality("alpha", "44").attempts == pytest.approx(5, rel=1e-3)
    finally:
        await primary.close()
        await secondary.close()


async def test_the_relays_media_figures_are_fetched_after_the_call(redis_url: str) -> None:
    clock = FakeClock(AT)
    stats = open_stats(redis_url, HOUR, clock=clock)
    async with Redis.from_url(redis_url) as client:
        await client.hset(
            RELAY_CALL + "call-9",
            mapping={
                "state": "deleted",
                "mos": "4.10",
                "streams": '[{"jitter_ms": 3.0, "lost": 1, "expected": 50}]',
            },
        )
    try:
        stats.record_call_end("alpha", "44", 30.0, call_id="call-9")
        await stats.sync()
        assert stats.quality("alpha", "44").mos is None  # not yet: the relay may still be writing
        clock.now += stats.MEDIA_DELAY
        await stats.sync()
        figures = stats.quality("alpha", "44")
        assert (figures.mos, figures.jitter, figures.loss) == pytest.approx((4.1, 3.0, 0.02))
        assert not stats.pending
    finally:
        await stats.close()


async def test_redis_going_away_never_reaches_the_call_path(redis_url: str, caplog) -> None:
    caplog.set_level(logging.INFO, "sipline.acr.live")
    stats = open_stats("redis://127.0.0.1:1/0", HOUR)  # nobody listens there
    stats.record_attempt(attempt())
    await stats.sync()  # logged, not raised
    await stats.sync()
    assert not stats.link.ok
    assert stats.quality("alpha", "44").attempts == pytest.approx(1, rel=1e-3)
    # Logged once, not per retry:
    assert [r.message.count("redis_unavailable") for r in caplog.records] == [1]
    # Redis is back (another address, for the test): the kept deltas are pushed then.
    stats.redis = Redis.from_url(redis_url)
    await stats.sync()
    assert stats.link.ok
    other = open_stats(redis_url, HOUR, node="other")
    await other.sync()
    assert other.quality("alpha", "44").attempts == pytest.approx(1, rel=1e-3)
    await stats.close()
    await other.close()


def test_a_snapshot_keeps_the_figures_of_its_time_whatever_is_recorded_after() -> None:
    clock = FakeClock(AT)
    stats = CarrierStats(HOUR, clock=clock)
    stats.record_attempt(attempt(200))
    stats.record_attempt(attempt(503, pdd=None))
    frozen = stats.snapshot()
    stats.record_attempt(attempt(503, pdd=None))
    stats.record_attempt(attempt(200, carrier="beta"))
    clock.now += HOUR
    assert frozen.pairs() == [("alpha", "44")]
    figures = frozen.quality("alpha", "44")
    assert figures.attempts == pytest.approx(2) and figures.asr == pytest.approx(0.5)
    assert frozen.quality("beta", "44").attempts == 0
    assert stats.quality("alpha", "44").attempts == pytest.approx(1.5)  # 3, an hour later
