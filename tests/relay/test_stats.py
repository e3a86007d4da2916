"""Stream quality from the RTP itself (relay.stats): loss, RFC 3550 jitter, E-model MOS.

Streams are generated with a known shape (20 ms G.711 packets, chosen losses,
chosen arrival jitter) and fed with their arrival times: no sockets, no clock.
"""

from __future__ import annotations

import random
import struct

import pytest

from relay.stats import RtpStats, codec_for, mos, r_factor

PTIME = 0.020
SAMPLES = 160  # 20 ms at 8000 Hz


def rtp(seq: int, ts: int, *, pt: int = 0, ssrc: int = 0x1234, payload: int = 160) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + bytes(payload)


def feed(
    stats: RtpStats,
    count: int,
    *,
    first_seq: int = 1000,
    first_ts: int = 0,
    drop: set[int] = frozenset(),  # type: ignore[assignment]
    delay: list[float] | None = None,
    ssrc: int = 0x1234,
    start: float = 100.0,
) -> None:
    """Send packets 0..count-1 at 20 ms intervals, minus ``drop``, each late by ``delay[i]``."""
    for i in range(count):
        if i in drop:
            continue
        arrival = start + i * PTIME + (delay[i] if delay else 0.0)
        stats.update(rtp(first_seq + i, first_ts + i * SAMPLES, ssrc=ssrc), arrival)


# -- loss ---------------------------------------------------------------------------------


def test_a_clean_stream_has_no_loss_and_no_jitter() -> None:
    stats = RtpStats()
    feed(stats, 500)
    assert (stats.expected, stats.lost, stats.received) == (500, 0, 500)
    assert stats.jitter_ms == pytest.approx(0.0, abs=1e-6)


def test_loss_is_counted_from_sequence_gaps() -> None:
    stats = RtpStats()
    feed(stats, 1000, drop={i for i in range(1000) if i % 20 == 7})  # 5 %
    assert stats.expected == 1000
    assert stats.lost == 50
    assert stats.loss_percent == pytest.approx(5.0)


def test_the_sequence_number_wraps_without_counting_loss() -> None:
    stats = RtpStats()
    feed(stats, 300, first_seq=65_400)
    assert (stats.expected, stats.lost, stats.cycles) == (300, 0, 65_536)


def test_loss_across_the_wrap_is_counted() -> None:
    stats = RtpStats()
    feed(stats, 300, first_seq=65_500, drop={30, 35, 36, 37, 40})  # 65530, 65535, 0, 1, 4
    assert (stats.expected, stats.lost) == (300, 5)


def test_losing_the_first_packets_after_the_wrap_is_still_loss() -> None:
    stats = RtpStats()
    feed(stats, 100, first_seq=65_486, drop=set(range(50, 60)))  # 0..9 never arrive
    assert (stats.expected, stats.lost) == (100, 10)


def test_reordered_packets_are_not_loss() -> None:
    stats = RtpStats()
    order = list(range(100))
    order[40], order[41] = order[41], order[40]
    for n, i in enumerate(order):
        stats.update(rtp(i, i * SAMPLES), 100 + n * PTIME)
    assert (stats.expected, stats.lost) == (100, 0)


def test_duplicates_do_not_make_loss_negative() -> None:
    stats = RtpStats()
    feed(stats, 50)
    feed(stats, 10, start=101.0)  # the same sequence numbers again
    assert stats.lost == 0


def test_one_wild_sequence_number_is_ignored_until_a_second_confirms_a_restart() -> None:
    stats = RtpStats()
    feed(stats, 100, first_seq=1000)
    stats.update(rtp(30_000, 0), 200.0)  # RFC 3550 A.1: a jump of more than MAX_DROPOUT
    assert (stats.expected, stats.lost) == (100, 0)
    feed(stats, 100, first_seq=30_001, start=201.0)  # the sender really restarted
    assert stats.lost == 0
    assert stats.expected == 200


def test_a_new_ssrc_starts_a_new_sequence_and_keeps_the_old_loss() -> None:
    stats = RtpStats()
    feed(stats, 100, drop={10, 11})
    feed(stats, 100, first_seq=7, ssrc=0xBEEF, drop={50}, start=200.0)
    assert stats.ssrc == 0xBEEF
    assert (stats.expected, stats.lost) == (200, 3)


@pytest.mark.parametrize(
    "packet",
    [
        b"\x80\x00\x00",  # shorter than an RTP header
        b"\x40" + bytes(20),  # RTP version 1
        struct.pack("!BBHI", 0x81, 200, 6, 0x1234) + bytes(20),  # RTCP SR multiplexed (RFC 5761)
    ],
)
def test_what_is_not_rtp_version_2_is_ignored(packet: bytes) -> None:
    stats = RtpStats()
    stats.update(packet, 1.0)
    assert (stats.ignored, stats.received, stats.expected) == (1, 0, 0)


# -- jitter ---------------------------------------------------------------------------------


def reference_jitter(arrivals: list[float], timestamps: list[int], rate: int) -> float:
    """RFC 3550 §6.4.1 written out, in timestamp units."""
    jitter = 0.0
    for i in range(1, len(arrivals)):
        d = (arrivals[i] - arrivals[i - 1]) * rate - (timestamps[i] - timestamps[i - 1])
        jitter += (abs(d) - jitter) / 16
    return jitter


def test_jitter_follows_rfc_3550_on_random_delays() -> None:
    rng = random.Random(7)
    delay = [rng.uniform(0, 0.030) for _ in range(2000)]
    stats = RtpStats()
    feed(stats, 2000, delay=delay)
    arrivals = [100.0 + i * PTIME + delay[i] for i in range(2000)]
    expected = reference_jitter(arrivals, [i * SAMPLES for i in range(2000)], 8000)
    assert stats.jitter == pytest.approx(expected, rel=1e-6)


def test_alternating_lateness_converges_to_that_lateness() -> None:
    # Every other packet 5 ms late: |D| is 5 ms for every pair, so J tends to 5 ms.
    stats = RtpStats()
    feed(stats, 400, delay=[0.005 * (i % 2) for i in range(400)])
    assert stats.jitter_ms == pytest.approx(5.0, rel=0.01)


def test_the_timestamp_wrap_is_not_jitter() -> None:
    stats = RtpStats()
    feed(stats, 200, first_ts=2**32 - 50 * SAMPLES)
    assert stats.jitter_ms == pytest.approx(0.0, abs=1e-6)


def test_the_clock_rate_comes_from_the_rtpmap_of_dynamic_payloads() -> None:
    stats = RtpStats(rates={111: 48_000}, names={111: "opus"})
    for i in range(200):
        late = 0.004 * (i % 2)
        stats.update(rtp(i, i * 960, pt=111), 100 + i * PTIME + late)
    assert stats.jitter_ms == pytest.approx(4.0, rel=0.01)
    assert stats.encoding == "opus/48000"


def test_telephone_events_neither_count_as_jitter_nor_change_the_codec() -> None:
    stats = RtpStats(rates={101: 8000}, names={101: "telephone-event"})
    feed(stats, 100)
    for i in range(100, 110):  # RFC 4733: every packet of an event has its start timestamp
        stats.update(rtp(1000 + i, 100 * SAMPLES, pt=101), 100 + i * PTIME)
    for i in range(110, 200):
        stats.update(rtp(1000 + i, i * SAMPLES), 100 + i * PTIME)
    assert stats.jitter_ms == pytest.approx(0.0, abs=1e-6)
    assert stats.codec.name == "PCMU"
    assert stats.encoding == "PCMU/8000"


# -- MOS ------------------------------------------------------------------------------------


def test_clean_g711_rates_about_4_4() -> None:
    assert mos(codec_for("PCMU"), 0.0, 40.0) == pytest.approx(4.39, abs=0.01)


def test_r_is_93_2_less_the_delay_and_equipment_impairments() -> None:
    # Id = 0.024 d below 177.3 ms; G.729: Ie = 11, Bpl = 19 (G.113 Appendix I).
    assert r_factor(codec_for("G729"), 0.0, 100.0) == pytest.approx(93.2 - 2.4 - 11)
    # 2 % random loss: Ie-eff = 11 + 84 * 2 / (2 + 19) = 19.
    assert r_factor(codec_for("G729"), 2.0, 0.0) == pytest.approx(93.2 - 19.0)
    # Past 177.3 ms the delay weighs 0.11 more per ms.
    assert r_factor(codec_for("PCMA"), 0.0, 277.3) == pytest.approx(93.2 - 0.024 * 277.3 - 11)


def test_mos_falls_as_loss_and_delay_grow() -> None:
    g711 = codec_for("PCMA")
    by_loss = [mos(g711, loss, 40.0) for loss in (0, 1, 3, 5, 10, 20)]
    assert by_loss == sorted(by_loss, reverse=True)
    by_delay = [mos(g711, 0.0, delay) for delay in (20, 150, 200, 300, 400)]
    assert by_delay == sorted(by_delay, reverse=True)
    assert mos(g711, 100.0, 1000.0) == 1.0


def test_a_lossy_jittery_stream_rates_worse_than_a_clean_one() -> None:
    clean, lossy = RtpStats(), RtpStats()
    feed(clean, 500)
    feed(lossy, 500, drop=set(range(5, 500, 10)), delay=[0.02 * (i % 2) for i in range(500)])
    assert clean.mos() == pytest.approx(4.39, abs=0.01)
    assert 1.0 < lossy.mos() < 3.8
    assert lossy.loss_percent == pytest.approx(10.0)


def test_codecs_without_published_parameters_count_as_g711() -> None:
    assert codec_for("speex") == codec_for("PCMU").__class__("SPEEX", 0.0, 25.1)
