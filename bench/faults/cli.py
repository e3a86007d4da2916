"""``python -m bench faults``: the fault experiments of issue 12 at 100 calls/s, and their table.

Each experiment starts its own Redis, sipline nodes, sipp peers and a private
MariaDB, kills a part with SIGKILL under load (or hangs it with SIGSTOP), and
counts (bench.faults).
The table holds, per experiment: calls placed, answered, refused and failed;
CDRs expected / written / duplicated; ghost INVITEs at the carriers; peak
concurrent calls against the capacity (or licence), with the admissions
past it once shared state had converged; worst set-up time and the calls
over 200 ms. results.json holds every figure, with the times of the kills.

Exit status: 0 when every count the issue demands held, 1 if one did not,
2 if an experiment could not be run (the others still run and are shown).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.faults import experiments, registrar, shared
from bench.faults.callpath import Load, Outcome
from bench.faults.lab import Lab, LabError, mariadb_server, program_path
from bench.runner import REPO
from sipline.storage.testing import MariaDBUnavailable, PrivateMariaDB

RESULTS = REPO / "bench" / "results"
EXPERIMENTS = (
    "acr-kill",
    "acr-freeze",
    "failover",
    "redis-kill",
    "licence-redis-kill",
    "spool",
    "registrar",
)
SLOW_MS = 200.0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench faults", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rate", type=int, default=100, help="calls per second (default 100)")
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="seconds of calls per experiment"
    )
    parser.add_argument("--hold", type=float, default=3.0, help="seconds an answered call lasts")
    parser.add_argument(
        "--failover-timeout", type=float, default=2.0, help="[b2bua] failover_timeout"
    )
    parser.add_argument(
        "--capacity", type=int, default=200, help="the carrier's capacity (redis-kill)"
    )
    parser.add_argument("--licence", type=int, default=150, help="the account's licence")
    parser.add_argument("--only", type=_names, default=list(EXPERIMENTS),
                        help=f"comma-separated, among {','.join(EXPERIMENTS)}")  # fmt: skip
    parser.add_argument("--out", type=Path, help="results directory (default bench/results/...)")
    parser.add_argument("--sipp", default=None, help="the sipp binary (default: on PATH)")
    return parser.parse_args(argv)


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown experiment(s) {unknown}; known: {EXPERIMENTS}")
    return names


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    out: Path = args.out or RESULTS / f"faults-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    console = Console() if sys.stdout.isatty() else Console(width=180)
    load = Load(args.rate, args.seconds, args.hold, failover_timeout=args.failover_timeout)
    outcomes: list[Outcome] = []
    not_run: dict[str, str] = {}
    try:
        sipp = args.sipp or program_path("sipp")
    except LabError as exc:
        console.print(f"[red]bench faults: {exc}[/]", highlight=False)
        return 2
    for name in args.only:
        console.print(f"[bold]{name}[/]: {load.calls} calls at {load.rate}/s ...", highlight=False)
        lab = Lab(out / name, sipp)
        try:
            outcomes.append(run_one(name, lab, load, args))
        except (LabError, MariaDBUnavailable, OSError) as exc:
            # The others' figures stand: one part that would not start loses only its own.
            not_run[name] = str(exc)
            console.print(f"[red]{name} could not be run: {exc}[/]", highlight=False)
        finally:
            lab.close()
    title = (
        f"issue 12 faults: {load.rate} calls/s for {load.seconds:g} s, held {load.hold:g} s, "
        f"failover_timeout {load.failover_timeout:g} s"
    )
    console.print(table(outcomes, title, load))
    broken = {o.experiment: demands(o, load) for o in outcomes}
    for name, problems in broken.items():
        for problem in problems:
            console.print(f"[red]{name}: {problem}[/]", highlight=False)
    data = {
        "load": asdict(load), "experiments": [as_json(o) for o in outcomes], "broken": broken,
        "not_run": not_run,
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    console.print(f"results: {out}/results.json")
    if not_run:
        return 2
    return 1 if any(broken.values()) else 0


def run_one(name: str, lab: Lab, load: Load, args: argparse.Namespace) -> Outcome:
    """Run experiment ``name``; its database: the run's MariaDB, or one of its own to kill."""
    if name == "licence-redis-kill":
        return shared.licence_redis_kill(lab, _spread(load), args.licence)
    mariadb = PrivateMariaDB(program_path("mariadbd"))
    try:
        mariadb.start()
        if name == "spool":
            return experiments.spool(lab, mariadb, load)
        if name == "registrar":
            return registrar.registrar(lab, mariadb, phones=min(load.calls, 3000), rate=load.rate)
        url = mariadb_server(mariadb).fresh_database()
        experiment: Callable[[], Outcome] = {
            "acr-kill": lambda: experiments.acr_kill(lab, url, load),
            "acr-freeze": lambda: experiments.acr_freeze(lab, url, load),
            "failover": lambda: experiments.failover(lab, url, load),
            "redis-kill": lambda: shared.redis_kill(lab, url, _spread(load), args.capacity),
        }[name]
        return experiment()
    finally:
        lab.close()
        mariadb.remove()


def _spread(load: Load) -> Load:
    """Holds spread over hold ± 2/3 hold: calls a restarted Redis never knew outlive calls it knows."""
    return Load(load.rate, load.seconds, load.hold, load.hold * 2 / 3, load.failover_timeout)


def demands(o: Outcome, load: Load) -> list[str]:
    """What the issue demands of this experiment's counts, and did not hold."""
    problems = []
    if o.experiment in ("acr-kill", "acr-freeze", "spool") and o.cdrs is not None:
        if o.cdrs.lost:
            problems.append(f"{o.cdrs.lost} answered calls without a CDR")
        if o.cdrs.duplicated or o.cdrs.unanswered:
            problems.append(
                f"{o.cdrs.duplicated + o.cdrs.unanswered} CDRs billed twice or unanswered"
            )
    if o.experiment in ("acr-kill", "acr-freeze"):
        if o.ghost_invites:
            problems.append(f"{o.ghost_invites} ghost INVITEs reached the carrier")
        if o.retransmitted_after_failover:
            problems.append(
                f"{o.retransmitted_after_failover} INVITEs retransmitted after failover"
            )
        if o.cdrs is not None and o.cdrs.ghosts_charged:
            problems.append(f"{o.cdrs.ghosts_charged} ghost CDRs with a cost")
    if o.experiment == "failover":
        worst = o.setup_worst_ms or 0.0
        if worst > load.failover_timeout * 1000 + 100:
            problems.append(f"worst set-up {worst:.0f} ms > failover_timeout + 100 ms")
        if o.setup_over(SLOW_MS) >= 0.01 * o.calls:
            problems.append(f"{o.setup_over(SLOW_MS)} set-ups over 200 ms (>= 1 %)")
    if o.experiment in ("redis-kill", "licence-redis-kill"):
        if o.over_limit:
            problems.append(f"{o.over_limit} calls admitted past the limit after convergence")
        if o.peak is not None and o.limit is not None:
            allowed = o.limit + o.figures.get("admitted_in_outage", 0)
            if o.peak > allowed:
                problems.append(f"peak {o.peak} > limit + calls admitted in the outage ({allowed})")
    if o.experiment == "redis-kill":
        for what, seconds in o.converged_s.items():
            if seconds is None or seconds > shared.CONVERGENCE:
                problems.append(
                    f"{what} not back within {shared.CONVERGENCE:g} s of Redis ({seconds})"
                )
    if o.experiment == "registrar":
        if o.failed:
            problems.append(f"{o.failed} REGISTERs not answered 503 with Retry-After")
        if o.answered != o.calls or o.figures.get("rows") != o.calls:
            problems.append(f"after: {o.answered} 200s, {o.figures.get('rows')} rows of {o.calls}")
    return problems


def table(outcomes: Sequence[Outcome], title: str, load: Load) -> Table:
    out = Table(title=title)
    headings = ("experiment", "calls", "answered", "refused", "failed", "CDRs exp/written/dup",
                "ghost INVITEs", "peak / limit", "over limit", "worst set-up ms", "> 200 ms",
                "notes")  # fmt: skip
    for heading in headings:
        out.add_column(heading, justify="left" if heading in ("experiment", "notes") else "right")
    for o in outcomes:
        cdrs = "-" if o.cdrs is None else f"{o.cdrs.expected}/{o.cdrs.written}/{o.cdrs.duplicated}"
        out.add_row(
            o.experiment, str(o.calls), str(o.answered), str(o.refused), str(o.failed), cdrs,
            _opt(o.ghost_invites), "-" if o.peak is None else f"{o.peak} / {o.limit}",
            _opt(o.over_limit), _opt(o.setup_worst_ms), str(o.setup_over(SLOW_MS)) if o.setup_ms else "-",
            notes(o),
        )  # fmt: skip
    return out


def notes(o: Outcome) -> str:
    parts = []
    if o.retransmitted_after_failover is not None:
        parts.append(f"retransmitted after failover {o.retransmitted_after_failover}")
    if o.sent_to_dead_node is not None:
        parts.append(f"sent to the dead node after it failed one {o.sent_to_dead_node}")
    if o.cdrs is not None and (o.cdrs.ghosts or o.cdrs.late):
        parts.append(
            f"ghost CDRs {o.cdrs.ghosts} (charged {o.cdrs.ghosts_charged}), late {o.cdrs.late}"
        )
    for what, seconds in o.converged_s.items():
        parts.append(f"{what} back {'never' if seconds is None else f'{seconds:g} s'}")
    if "admitted_in_outage" in o.figures:
        parts.append(f"admitted in outage {o.figures['admitted_in_outage']}")
    if "attempts_at_end" in o.figures:
        parts.append(
            f"stats {o.figures['attempts_at_end']:g} of {o.figures['carrier_invites']} attempts"
        )
    if "rows" in o.figures:
        parts.append(f"503+Retry-After {o.refused}, rows after {o.figures['rows']}")
    return "; ".join(parts)


def _opt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def as_json(o: Outcome) -> dict[str, Any]:
    data = asdict(o)
    data.pop("setup_ms")
    data.update(
        setup_worst_ms=o.setup_worst_ms,
        setup_p99_ms=o.setup_p99_ms,
        setup_over_200ms=o.setup_over(SLOW_MS),
    )
    return data
