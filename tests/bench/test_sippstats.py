"""Reading sipp's -trace_stat and -trace_rtt files (samples from real sipp 3.6 runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import sippstats

DATA = Path(__file__).resolve().parent / "data"
# 100 OPTIONS at 50/s, every one answered 200 by the minimal node.
ANSWERED = (DATA / "stats_answered.csv").read_text()
# 10 OPTIONS at 10/s to a port where nothing listens: each retransmitted 3 times, then failed.
UNANSWERED = (DATA / "stats_unanswered.csv").read_text()
# 20 response times of one 2000/s run, in sipp's 4 ms clock steps.
RTT = (DATA / "rtt.csv").read_text()


def test_the_totals_are_the_cumulative_counters_of_the_last_row() -> None:
    totals = sippstats.read_totals(ANSWERED)
    assert (totals.created, totals.successful, totals.failed) == (100, 100, 0)
    assert totals.retransmissions == 0
    assert totals.elapsed_s == pytest.approx(2.009, abs=0.001)
    assert totals.call_rate == pytest.approx(49.78, abs=0.01)


def test_unanswered_calls_count_as_failed_with_their_retransmissions() -> None:
    totals = sippstats.read_totals(UNANSWERED)
    assert (totals.created, totals.successful, totals.failed) == (10, 0, 10)
    assert totals.retransmissions == 30
    assert totals.elapsed_s == pytest.approx(5.010, abs=0.001)


def test_a_last_row_cut_short_by_a_killed_sipp_is_ignored() -> None:
    cut = ANSWERED + ANSWERED.splitlines()[-1][:200]
    assert sippstats.read_totals(cut) == sippstats.read_totals(ANSWERED)


@pytest.mark.parametrize("text", ["", "StartTime;CurrentTime;\n"])
def test_a_file_without_a_complete_row_is_an_error(text: str) -> None:
    with pytest.raises(ValueError):
        sippstats.read_totals(text)


def test_time_columns_are_read_from_their_epoch_part() -> None:
    field = "2026-11-21\t22:08:02.127199\t1795298882.127199"
    assert sippstats.epoch(field) == pytest.approx(1795298882.127199)


def test_response_times_are_read_per_rtd_counter() -> None:
    times = sippstats.read_response_times(RTT)
    assert len(times) == 20
    assert sorted(set(times)) == [0.0, 4.0, 8.0, 12.0, 36.0]
    assert sippstats.read_response_times(RTT, rtd=2) == []
    other = "Date_ms;response_time_ms;rtd_no\n10.001;3;2\n11.001;5;1\n"
    assert sippstats.read_response_times(other, rtd=2) == [3.0]


def test_percentiles_are_nearest_rank() -> None:
    times = sippstats.read_response_times(RTT)  # 10 x 0, 5 x 4, 3 x 8, 12, 36
    assert sippstats.percentile(times, 50) == 0
    assert sippstats.percentile(times, 51) == 4
    assert sippstats.percentile(times, 90) == 8
    assert sippstats.percentile(times, 99) == 36
    assert sippstats.percentile([7.0], 99) == 7
    assert sippstats.percentile([], 50) is None


def test_the_start_rate_counts_intervals_between_call_starts() -> None:
    # Calls set up at 0, 10, 20, 30 ms after their starts at 0, 5, 10, 15 ms ... 11 calls in 50 ms.
    rows = [sippstats.ResponseTime(at_ms=5 * n + 2 * n, ms=2 * n) for n in range(11)]
    assert [row.started_ms for row in rows[:3]] == [0, 5, 10]
    assert sippstats.start_rate(rows) == 200.0  # 10 intervals of 5 ms: not 11 calls / 50 ms
    rows = sippstats.read_rtt("Date_ms;response_time_ms;rtd_no\n104.001;4;1\n1104.001;0;1\n")
    assert sippstats.start_rate(rows) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("rows", [[], [(10.0, 2.0)], [(10.0, 2.0), (12.0, 4.0)]])
def test_no_start_rate_without_two_calls_started_apart(rows: list[tuple[float, float]]) -> None:
    assert sippstats.start_rate([sippstats.ResponseTime(*row) for row in rows]) is None
