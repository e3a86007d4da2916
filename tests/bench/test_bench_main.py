"""`python -m bench` as a user runs it: real sipp against a real `sipline run`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import main, parse_args
from bench.runner import REPO, free_port


def bench(sipp: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args, "--sipp", sipp],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.e2e
def test_a_sustained_run_writes_json_and_png_and_exits_0(sipp_bin: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = bench(sipp_bin, "options", "--rates", "50", "--duration", "2", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "highest sustained rate: 50 calls/s" in done.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["target_sustained"] is True
    [only] = results["steps"]
    assert only["target_cps"] == 50 and only["successful"] == 100 and only["sustained"]
    assert only["server_cpu_pct"] is not None and only["server_rss_mb"] > 0
    assert only["rtt_p99_ms"] is not None
    assert (out / "results.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.e2e
def test_a_target_that_does_not_answer_is_not_sustained_and_exits_1(
    sipp_bin: str, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    target = f"127.0.0.1:{free_port()}"  # nothing listens there
    done = bench(
        sipp_bin, "options", "--rates", "20", "--duration", "1", "--out", str(out),
        "--target", target,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "highest sustained rate: none" in done.stdout
    [only] = json.loads((out / "results.json").read_text())["steps"]
    assert only["failed"] == 20 and only["retransmissions"] > 0 and not only["sustained"]


@pytest.mark.parametrize(
    "argv",
    [
        ["options", "--rates", "0,100"],
        ["options", "--rates", "fast"],
        ["options", "--rates", "100", "--duration", "-1"],
        ["options", "--rates", "100", "--target", "10.0.0.1:5060"],
        ["nosuch", "--rates", "100"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2


def test_a_run_that_cannot_start_sipp_exits_2(tmp_path: Path) -> None:
    code = main(["options", "--rates", "10", "--duration", "1", "--out", str(tmp_path),
                 "--sipp", str(tmp_path / "no-sipp")])
    assert code == 2
