"""``python -m bench.instructions [--calls 200] [--rate 20]``: the instructions
``sipline proxy`` executes per call of the relay scenario, counted by
callgrind (issue 14).

CPU time on a shared 2-core box moves with the neighbours' load; an
instruction count does not (the same binary, inputs and environment give the
same count), so it tells a change's effect apart from noise. The proxy runs
under ``valgrind --tool=callgrind`` with instrumentation off while it starts;
then callgrind counts an idle period (timers, the node's tick) and a load of
``--calls`` calls at ``--rate`` (slow: valgrind runs Python some 50 times
slower), each dumped apart, after ``WARM_UP`` calls uncounted (valgrind
translates code on its first run, Python fills its caches). sipp does not
retransmit (``-nr``): under valgrind answers are late, and a retransmission's
work would count as the call's. Per call = (load − idle scaled to the
load's length) ÷ answered calls. The UAS, the trust and the settings are those of
``python -m bench compare --scenario relay``. Writes ``instructions.json``
and the callgrind dumps (``callgrind_annotate`` reads them) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bench.compare import RELAY, server, uas
from bench.runner import HOST, KILL_GRACE, REPO, BenchError, StepPlan, run_step
from sipline.net.ports import free_port

RESULTS = REPO / "bench" / "results"
IDLE_S = 5.0  # seconds of the idle count
WARM_UP = 20  # calls before counting
NO_RETRANSMISSIONS = ("-nr",)
START_TIMEOUT = 300.0  # Python's start-up under valgrind


@dataclass(frozen=True, slots=True)
class Count:
    calls: int  # answered
    retransmissions: int  # sipp's: a slow answer costs a retransmission's work too
    load_s: float
    load_instructions: int
    idle_s: float
    idle_instructions: int

    @property
    def per_call(self) -> int | None:
        return per_call(self.load_instructions, self.load_s, self.idle_instructions,
                        self.idle_s, self.calls)  # fmt: skip


def per_call(load: int, load_s: float, idle: int, idle_s: float, calls: int) -> int | None:
    """Instructions per call: the load's less the idle rate over as long, per call."""
    if calls <= 0 or idle_s <= 0:
        return None
    return round((load - idle * load_s / idle_s) / calls)


def total_instructions(dump: str) -> int:
    """The ``totals:`` (or ``summary:``) Ir of a callgrind output file's text."""
    found = re.search(r"^(?:totals|summary):\s*(\d+)", dump, re.M)
    if found is None:
        raise ValueError("no totals in the callgrind output")
    return int(found.group(1))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rate", type=int, default=5)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--sipp", default=shutil.which("sipp") or "/usr/bin/sipp")
    args = parser.parse_args(argv)
    out = (args.out or RESULTS / f"instructions-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        count = measure(args.calls, args.rate, out, args.sipp)
    except (BenchError, OSError, ValueError, subprocess.SubprocessError) as exc:
        print(f"bench.instructions: {exc}", file=sys.stderr)
        return 2
    data = {**asdict(count), "per_call": count.per_call}
    (out / "instructions.json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"sipline proxy, relay scenario: {count.per_call:,} instructions per call "
          f"({count.calls} calls, {count.retransmissions} retransmissions); {out}")  # fmt: skip
    return 0


def measure(calls: int, rate: int, out: Path, sipp: str) -> Count:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise BenchError("valgrind is not installed (Debian package valgrind)")
    wrap = [valgrind, "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={out / 'callgrind.out'}"]  # fmt: skip
    uac_port, uas_port = free_port(), free_port()
    duration = calls / rate
    plan = StepPlan(
        RELAY, rate, duration, "udp", out, sipp_port=uac_port,
        sipp_extra=("-key", "uas", f"{HOST}:{uas_port}", *NO_RETRANSMISSIONS),
    )  # fmt: skip
    warm_up = replace(plan, duration=WARM_UP / rate, workdir=out / "warm-up")
    bound = START_TIMEOUT + warm_up.sipp_timeout + plan.sipp_timeout + 2 * KILL_GRACE
    with uas(sipp, uas_port, out, bound, NO_RETRANSMISSIONS):
        with server("sipline", out, uac_port, wrap=wrap, start_timeout=START_TIMEOUT) as (
            port,
            pid,
        ):
            run_step(replace(warm_up, target=(HOST, port)), sipp)
            control(pid, "--instr=on")
            started = time.monotonic()
            time.sleep(IDLE_S)
            idle = dump(pid, out, "idle")
            idle_s = time.monotonic() - started
            started = time.monotonic()
            step = run_step(replace(plan, target=(HOST, port)), sipp)
            load = dump(pid, out, "load")
            load_s = time.monotonic() - started
    return Count(step.successful, step.retransmissions, round(load_s, 3), load,
                 round(idle_s, 3), idle)  # fmt: skip


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True,
                   timeout=120)  # fmt: skip


def dump(pid: int, out: Path, name: str) -> int:
    """Dump the counts since the last dump (named ``name``): their total instructions."""
    before = set(out.glob("callgrind.out*"))
    control(pid, f"--dump={name}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for path in set(out.glob("callgrind.out*")) - before:
            text = path.read_text(errors="replace")
            if re.search(r"^(?:totals|summary):", text, re.M):
                return total_instructions(text)
        time.sleep(0.2)
    raise BenchError(f"callgrind wrote no {name} dump")


if __name__ == "__main__":
    sys.exit(main())
