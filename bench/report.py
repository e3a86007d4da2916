"""A bench run's results: a rich table, results.json and results.png."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.runner import StepResult


def highest_sustained(steps: Sequence[StepResult]) -> int | None:
    """The highest target rate among the sustained steps; None if none was."""
    return max((s.target_cps for s in steps if s.sustained), default=None)


def target_sustained(steps: Sequence[StepResult]) -> bool:
    """Whether the step with the highest requested rate was sustained."""
    return bool(steps) and max(steps, key=lambda s: s.target_cps).sustained


def summary(steps: Sequence[StepResult], **run: Any) -> dict[str, Any]:
    """What results.json holds: ``run`` (scenario, transport, ...) and every step."""
    return {
        **run,
        "steps": [asdict(step) for step in steps],
        "highest_sustained_cps": highest_sustained(steps),
        "target_sustained": target_sustained(steps),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


_COLUMNS = (
    ("target cps", "target_cps", "{:d}"),
    ("started cps", "started_cps", "{:.1f}"),
    ("achieved cps", "achieved_cps", "{:.1f}"),
    ("success %", "success_pct", "{:.2f}"),
    ("failed", "failed", "{:d}"),
    ("retrans", "retransmissions", "{:d}"),
    ("p50 ms", "rtt_p50_ms", "{:.0f}"),
    ("p99 ms", "rtt_p99_ms", "{:.0f}"),
    ("server CPU %", "server_cpu_pct", "{:.0f}"),
    ("CPU µs/call", "cpu_us_per_call", "{:.0f}"),
    ("server RSS MB", "server_rss_mb", "{:.0f}"),
    ("sipp CPU %", "sipp_cpu_pct", "{:.0f}"),
    ("load", "load_avg", "{:.1f}"),
)


def table(steps: Sequence[StepResult], title: str) -> Table:
    """One row per step, the judgement last."""
    out = Table(title=title)
    for heading, _, _ in _COLUMNS:
        out.add_column(heading, justify="right")
    out.add_column("sustained")
    for step in steps:
        cells = [_cell(getattr(step, name), fmt) for _, name, fmt in _COLUMNS]
        verdict = "[green]yes[/]" if step.sustained else "[red]no[/]"
        out.add_row(*cells, verdict)
    return out


def _cell(value: object, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def write_plot(path: Path, steps: Sequence[StepResult], title: str) -> None:
    """Achieved against target rate, response times and the server's CPU per call."""
    write_series_plot(path, {"": steps}, title)


def write_series_plot(path: Path, series: dict[str, Sequence[StepResult]], title: str) -> None:
    """The same three panels for several servers' steps (``series``: name -> steps)."""
    # Figure without pyplot: no global state, and the Agg canvas needs no display.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(15, 4.5), layout="constrained")
    figure.suptitle(title)
    rates, times, cpu = figure.subplots(1, 3)
    targets = sorted({s.target_cps for steps in series.values() for s in steps})
    rates.plot(targets, targets, "--", color="grey", label="target")
    for name, steps in series.items():
        label = f"{name} " if name else ""
        xs = [s.target_cps for s in steps]
        rates.plot(xs, [s.achieved_cps for s in steps], "o-", label=f"{label}achieved")
        for step in steps:
            if not step.sustained:
                rates.plot(step.target_cps, step.achieved_cps, "x", color="red", markersize=12)
        for field, which in (("rtt_p50_ms", "p50"), ("rtt_p99_ms", "p99")):
            _line(times, steps, field, f"{label}{which}")
        _line(cpu, steps, "cpu_us_per_call", name or "server")
    rates.set(xlabel="target rate (calls/s)", ylabel="achieved rate (calls/s)")
    rates.legend(title="red x: not sustained")
    times.set(xlabel="target rate (calls/s)", ylabel="response time (ms, in steps of sipp's clock)")
    cpu.set(xlabel="target rate (calls/s)", ylabel="server CPU per call (µs)")
    for axes in (rates, times, cpu):
        axes.grid(True, alpha=0.3)
    times.legend()
    cpu.legend()
    figure.savefig(path, dpi=100)


def _line(axes: Any, steps: Sequence[StepResult], field: str, label: str) -> None:
    points = [(s.target_cps, getattr(s, field)) for s in steps]
    points = [(x, y) for x, y in points if y is not None]
    axes.plot([x for x, _ in points], [y for _, y in points], "o-", label=label)
