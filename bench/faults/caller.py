"""The callers of a fault experiment: sipp running bench/scenarios/faults_caller.xml.

Each call dials its own number (``prefix`` followed by sipp's call number),
so every CDR, and every INVITE a carrier receives, names the caller's call.
What the caller saw is read from its files when it is done: the answered and
refused calls (its log), the totals (``-trace_stat``) and each call's set-up
time, INVITE to 200 (``-trace_rtt``, in ms).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench import sippstats
from bench.acrstack import HOST, REPO
from bench.faults.counting import Outcomes, read_outcomes
from sipline.net.ports import free_port

SCENARIO = REPO / "bench" / "scenarios" / "faults_caller.xml"
TAIL = 40.0  # seconds past the last call's start that sipp may take (set-up, hold, BYE)
# On a loaded machine sipp places its calls at a fraction of the rate asked (11 a
# second for 50 seen with a load average of 9 on 2 cores): a run may take this many
# times its nominal length before its last call is cut short and counted failed.
SLOWDOWN = 3.0


@dataclass
class Caller:
    """``calls`` calls at ``rate`` per second, each held ``hold`` seconds once answered."""

    sipp: str
    workdir: Path
    target: int  # the B2BUA's port
    prefix: str  # the numbers dialled: prefix + call number
    rate: int
    calls: int
    hold: float
    user: str = "caller"  # the P-Asserted-Identity's user (the account's subscriber)
    spread: float = 0.0  # holds drawn uniformly from hold ± spread seconds
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    setup_ms: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.calls / self.rate

    @property
    def timeout(self) -> float:
        """Seconds sipp may run before it is stopped (its -timeout; see SLOWDOWN)."""
        return SLOWDOWN * self.seconds + self.spread + TAIL

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        limit = max(10, int(self.rate * (self.hold + self.spread + 10)))
        command = [
            self.sipp, f"{HOST}:{self.target}", "-sf", str(self.scenario()), "-s", self.prefix,
            "-key", "caller", self.user, "-i", HOST, "-p", str(free_port(HOST)),
            "-r", str(self.rate), "-m", str(self.calls), "-l", str(limit),
            "-d", str(int(self.hold * 1000)), "-timeout", f"{int(self.timeout)}s",
            "-nostdin", "-trace_stat", "-stf", "stats.csv", "-fd", "1",
            "-trace_rtt", "-rtt_freq", "1", "-trace_logs", "-log_file", "calls.log",
            "-trace_err", "-error_file", "errors.log",
        ]  # fmt: skip
        with (self.workdir / "sipp.out").open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def scenario(self) -> Path:
        """faults_caller.xml; with a ``spread``, a copy whose pause draws each call's hold."""
        if not self.spread:
            return SCENARIO
        low, high = (int(1000 * max(0.0, self.hold + d)) for d in (-self.spread, self.spread))
        pause = f'<pause distribution="uniform" min="{low}" max="{high}"/>'
        copy = self.workdir / SCENARIO.name
        copy.write_text(SCENARIO.read_text().replace("<pause/>", pause))
        return copy

    def wait(self) -> int:
        """Wait for sipp to finish (killed past its own -timeout); its exit status."""
        assert self.process is not None
        try:
            return self.process.wait(self.timeout + 15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def outcomes(self) -> Outcomes:
        path = self.workdir / "calls.log"
        if not path.exists():
            return Outcomes()
        with path.open(errors="replace") as lines:
            return read_outcomes(lines)

    def totals(self) -> sippstats.SippTotals | None:
        path = self.workdir / "stats.csv"
        try:
            return sippstats.read_totals(path.read_text(errors="replace"))
        except (OSError, ValueError):
            return None

    def response_times(self) -> list[float]:
        """Set-up times in ms, INVITE to 200, of the answered calls."""
        times: list[float] = []
        for path in self.workdir.glob("faults_caller_*_rtt.csv"):
            times += sippstats.read_response_times(path.read_text(errors="replace"))
        return times

    def errors(self, size: int = 2000) -> str:
        path = self.workdir / "errors.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""
