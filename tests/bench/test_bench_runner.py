"""The runner's pure parts: what 'sustained' means, the bounds it gives sipp, /proc sampling."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.runner import (
    SCENARIOS,
    ProcSampler,
    StepPlan,
    is_sustained,
    per_call_us,
    read_proc_stat,
    sipp_command,
)

# /proc/<pid>/stat of a process whose name holds a space and a parenthesis.
PROC_STAT = (
    "22756 (sipline) run) S 22754 22754 18768 0 -1 4194304 96 0 0 0 250 50 0 0 20 0 1 0 "
    "143210 3133440 382 18446744073709551615 94209062535168 94209062555049 140728524304688 "
    "0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94209062571056 94209062572672 94209371955200 "
    "140728524307170 140728524307190 140728524307190 140728524308459 0"
)


@pytest.mark.parametrize(
    ("target", "achieved", "success", "sustained"),
    [
        (1000, 1000.0, 100.0, True),
        (1000, 950.0, 99.9, True),  # both limits are inclusive
        (1000, 1050.0, 100.0, True),
        (1000, 949.0, 100.0, False),
        (1000, 1000.0, 99.89, False),
    ],
)
def test_a_step_is_sustained_at_999_per_mille_success_and_5_percent_of_the_rate(
    target: int, achieved: float, success: float, sustained: bool
) -> None:
    assert is_sustained(target, achieved, success) is sustained


@pytest.mark.parametrize(
    ("started", "sustained"),
    [(None, True), (1000.0, True), (950.0, True), (1050.0, True), (940.0, False), (1060.0, False)],
)
def test_the_strict_rule_wants_sipp_to_have_started_calls_within_5_percent_of_the_rate(
    started: float | None, sustained: bool
) -> None:
    # Everything answered: only the rate sipp kept decides (issue 14's "strict").
    assert is_sustained(1000, 1000.0, 100.0, started) is sustained


def test_cpu_per_call_is_in_microseconds_of_the_successful_calls() -> None:
    assert per_call_us(4.11, 10000) == 411.0
    assert per_call_us(None, 10000) is None
    assert per_call_us(1.0, 0) is None


def test_a_process_tree_is_sampled_with_its_children(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    busy = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
    parent = subprocess.Popen(
        [sys.executable, "-c",
         f"import subprocess, sys; subprocess.run([sys.executable, '-c', {busy!r}])"],
    )  # fmt: skip
    try:
        tree, alone = ProcSampler(parent.pid, tree=True), ProcSampler(parent.pid)
        deadline = time.monotonic() + 10
        while parent.poll() is None and time.monotonic() < deadline:
            tree.sample()
            alone.sample()
            time.sleep(0.02)
    finally:
        parent.kill()
        parent.wait()
    assert tree.cpu_s is not None and alone.cpu_s is not None
    assert tree.cpu_s >= alone.cpu_s + 0.15  # the child's busy loop is counted
    assert tree.rss_mb is not None and tree.cpu_pct is not None


def test_a_held_call_tells_sipp_its_pause_and_extra_arguments_follow(tmp_path: Path) -> None:
    plan = StepPlan(
        SCENARIOS["b2bua_hold"], 100, 5, "udp", tmp_path, sipp_port=5999,
        sipp_extra=("-key", "uas", "127.0.0.1:5062"),
    )  # fmt: skip
    command = sipp_command(plan, "/usr/bin/sipp", ("127.0.0.1", 5070))
    assert command[command.index("-d") + 1] == "10000"
    assert command[command.index("-p") + 1] == "5999"
    assert command[-3:] == ["-key", "uas", "127.0.0.1:5062"]


def test_sipp_is_bounded_in_calls_and_time(tmp_path: Path) -> None:
    plan = StepPlan(SCENARIOS["options"], 2000, 10, "udp", tmp_path)
    command = sipp_command(plan, "/usr/bin/sipp", ("127.0.0.1", 5070))
    assert command[:2] == ["/usr/bin/sipp", "127.0.0.1:5070"]

    def value(flag: str) -> str:
        return command[command.index(flag) + 1]

    assert value("-r") == "2000" and value("-m") == "20000"
    assert value("-timeout") == "19s"  # 10 s of calls, a 4 s answer timeout, 5 s grace
    assert value("-t") == "u1" and value("-i") == "127.0.0.1"
    assert "-trace_rtt" in command and value("-rtt_freq") == "1"  # else the last batch is lost


def test_proc_stat_gives_cpu_seconds_and_resident_bytes() -> None:
    cpu, rss = read_proc_stat(PROC_STAT)
    assert cpu == pytest.approx(300 / os.sysconf("SC_CLK_TCK"))
    assert rss == 382 * os.sysconf("SC_PAGE_SIZE")
