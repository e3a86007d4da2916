"""Numbers out of sipp's statistics files: pure parsing of their text.

``-trace_stat`` writes ``;``-separated rows, one every ``-fd`` period and a
last one at exit. The ``(C)`` columns are cumulative since the start, so the
last row holds a run's totals. Time columns read ``date<TAB>time<TAB>epoch``.

``-trace_rtt`` writes one ``date_ms;response_time_ms;rtd_no`` row per measured
response time (``start_rtd``/``rtd`` in the scenario), in milliseconds that
move in steps of the kernel tick (sipp reads a coarse clock: 4 ms at
CONFIG_HZ=250), so 0 means under a tick. sipp writes the rows in batches of
``-rtt_freq`` and drops an unfinished batch at exit; use 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

DELIMITER = ";"


@dataclass(frozen=True, slots=True)
class SippTotals:
    """A run's cumulative counters, from the last statistics row."""

    created: int  # OutgoingCall(C): calls sipp started
    successful: int
    failed: int
    retransmissions: int
    elapsed_s: float  # from StartTime to the row's CurrentTime
    call_rate: float  # CallRate(C): calls started per second, as sipp computes it


def last_row(text: str) -> dict[str, str]:
    """The last complete row of a ``-trace_stat`` file, by column name."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("empty sipp statistics file")
    header = _fields(lines[0])
    for line in reversed(lines[1:]):
        values = _fields(line)
        if len(values) == len(header):  # a row cut short by a killed sipp is skipped
            return dict(zip(header, values, strict=True))
    raise ValueError("sipp statistics file has no complete row")


def read_totals(text: str) -> SippTotals:
    """The totals of a ``-trace_stat`` file's text."""
    row = last_row(text)
    return SippTotals(
        created=int(row["OutgoingCall(C)"]),
        successful=int(row["SuccessfulCall(C)"]),
        failed=int(row["FailedCall(C)"]),
        retransmissions=int(row["Retransmissions(C)"]),
        elapsed_s=epoch(row["CurrentTime"]) - epoch(row["StartTime"]),
        call_rate=float(row["CallRate(C)"]),
    )


def epoch(field: str) -> float:
    """Seconds since the epoch of a sipp time column (``date<TAB>time<TAB>epoch``)."""
    return float(field.split("\t")[-1])


class ResponseTime(NamedTuple):
    """One ``-trace_rtt`` row: when it was measured (ms since sipp started) and its length."""

    at_ms: float
    ms: float

    @property
    def started_ms(self) -> float:
        """When the timed exchange began: for rtd 1, when the call was started."""
        return self.at_ms - self.ms


def read_rtt(text: str, rtd: int = 1) -> list[ResponseTime]:
    """The rows of response-time counter ``rtd`` in a ``-trace_rtt`` file."""
    rows: list[ResponseTime] = []
    for line in text.splitlines()[1:]:
        fields = line.split(DELIMITER)
        if len(fields) >= 3 and fields[2].strip() == str(rtd):
            rows.append(ResponseTime(float(fields[0]), float(fields[1])))
    return rows


def read_response_times(text: str, rtd: int = 1) -> list[float]:
    """Response times in ms of response-time counter ``rtd``, from a ``-trace_rtt`` file."""
    return [row.ms for row in read_rtt(text, rtd)]


def start_rate(rows: Sequence[ResponseTime]) -> float | None:
    """Calls started per second, from the start times of the timed exchanges
    (rtd 1 starts with a call's first message): N calls span N - 1 intervals.
    None for fewer than two, or all started in one tick of sipp's clock."""
    if len(rows) < 2:
        return None
    starts = [row.started_ms for row in rows]
    span = max(starts) - min(starts)
    return round((len(rows) - 1) / span * 1000, 1) if span > 0 else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (0 < q <= 100); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _fields(line: str) -> list[str]:
    # Every sipp row ends with the delimiter, so the last split field is empty.
    fields = line.split(DELIMITER)
    return fields[:-1] if fields and fields[-1] == "" else fields
