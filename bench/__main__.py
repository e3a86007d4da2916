"""``python -m bench SCENARIO --rates R1,R2,... --duration S``: step a sipp load test.

Exit status: 0 if the highest requested rate was sustained, 1 if not, 2 if the
run could not be carried out (bad arguments, no sipp, the server did not start).

``python -m bench faults [--rate 100] [--only acr-kill,redis-kill]``: the fault
experiments of issue 12 and their table (see bench.faults.cli).

``python -m bench compare --scenario relay --rates R1,...``: sipline proxy beside
Kamailio under the same load (see bench.compare); ``python -m bench chain
--rates R1,...``: the whole stack as ``make run`` starts it, CPU per call per
role (see bench.chain); ``python -m bench portal [--rows N]``: the portal's CDR
search, export and pages on a private MariaDB of N CDRs (see bench.portal).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bench import report
from bench.runner import REPO, SCENARIOS, BenchError, StepPlan, StepResult, run_steps

RESULTS = REPO / "bench" / "results"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--rates", type=_rates, required=True, help="calls/s per step: 500,1000")
    parser.add_argument("--duration", type=_positive, default=10.0, help="seconds per step")
    parser.add_argument("--transport", choices=("udp", "tcp", "tls"), default="udp")
    parser.add_argument("--out", type=Path, help="results directory (default bench/results/...)")
    parser.add_argument("--target", type=_target, help="HOST:PORT of a running server to load")
    parser.add_argument("--sipp", default=shutil.which("sipp") or "/usr/bin/sipp")
    return parser.parse_args(argv)


def _rates(text: str) -> list[int]:
    try:
        rates = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError(f"rates must be positive: {text!r}")
    return rates


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        if not ipaddress.IPv4Address(host).is_loopback:
            raise ValueError
        return host, int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 127.x.y.z:PORT, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["faults"]:
        from bench.faults import cli

        return cli.main(argv[1:])
    if argv[:1] == ["compare"]:
        from bench import compare

        return compare.main(argv[1:])
    if argv[:1] == ["portal"]:
        from bench import portal

        return portal.main(argv[1:])
    if argv[:1] == ["chain"]:
        from bench import chain

        return chain.main(argv[1:])
    args = parse_args(argv)
    out: Path = args.out or RESULTS / f"{args.scenario}-{time.strftime('%Y%m%d-%H%M%S')}"
    plans = [
        StepPlan(SCENARIOS[args.scenario], rate, args.duration, args.transport,
                 out / f"step{i + 1}-{rate}cps", args.target)
        for i, rate in enumerate(args.rates)
    ]
    console = Console()
    if not console.is_terminal:  # a log file: no wrapped cells
        console = Console(width=140)
    title = f"{args.scenario} over {args.transport.upper()}, {args.duration:g} s per step"
    try:
        steps = _run_with_progress(plans, args.sipp, console)
    except (BenchError, OSError) as exc:
        console.print(f"[red]bench: {exc}[/]", highlight=False)
        return 2
    console.print(report.table(steps, title))
    data = report.summary(
        steps, scenario=args.scenario, transport=args.transport, duration_s=args.duration,
        rates=args.rates, started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), cpus=os.cpu_count(),
    )
    report.write_json(out / "results.json", data)
    report.write_plot(out / "results.png", steps, title)
    best = data["highest_sustained_cps"]
    console.print(f"highest sustained rate: {best if best is not None else 'none'} calls/s")
    console.print(f"results: {out}/results.json, {out}/results.png")
    return 0 if data["target_sustained"] else 1


def _run_with_progress(plans: list[StepPlan], sipp: str, console: Console) -> list[StepResult]:
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        tasks = [progress.add_task(f"{p.rate} cps", total=p.duration, start=False) for p in plans]

        def tick(index: int, seconds: float) -> None:
            progress.start_task(tasks[index])
            progress.update(tasks[index], completed=min(seconds, plans[index].duration))

        return run_steps(plans, sipp, tick)


if __name__ == "__main__":
    sys.exit(main())
