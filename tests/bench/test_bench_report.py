"""What a run reports: the highest sustained rate and whether the target was sustained."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from bench import report
from bench.runner import StepResult


def step(target: int, sustained: bool) -> StepResult:
    return StepResult(
        target_cps=target, planned_calls=target * 10, created=target * 10,
        successful=target * 10, failed=0, retransmissions=0, elapsed_s=10.0,
        achieved_cps=float(target), success_pct=100.0, rtt_p50_ms=0.0, rtt_p99_ms=4.0,
        rtt_max_ms=8.0, server_cpu_pct=None, server_rss_mb=None, sipp_cpu_pct=5.0,
        sipp_exit=0, sustained=sustained,
    )


def test_the_target_is_the_highest_requested_rate_whatever_the_order() -> None:
    steps = [step(4000, False), step(1000, True), step(2000, True)]
    assert report.highest_sustained(steps) == 2000
    assert report.target_sustained(steps) is False
    assert report.target_sustained([step(2000, True), step(1000, False)]) is True


def test_no_sustained_step_has_no_highest_rate() -> None:
    assert report.highest_sustained([step(1000, False)]) is None
    assert report.target_sustained([]) is False


def test_the_table_has_a_row_per_step_and_blanks_for_what_was_not_measured() -> None:
    console = Console(width=200, record=True)
    console.print(report.table([step(1000, True), step(2000, False)], "t"))
    text = console.export_text()
    assert "1000" in text and "2000" in text and "yes" in text and "no" in text
    assert " - " in text  # server CPU of a server the runner did not start


def test_json_and_plot_are_written(tmp_path: Path) -> None:
    steps = [step(1000, True), step(2000, False)]
    data = report.summary(steps, scenario="options")
    report.write_json(tmp_path / "results.json", data)
    report.write_plot(tmp_path / "results.png", steps, "t")
    assert '"highest_sustained_cps": 1000' in (tmp_path / "results.json").read_text()
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")
