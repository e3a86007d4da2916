"""``python -m bench chain --rates R1,R2,... [--duration S]``: the whole stack as
``make run`` starts it, under calls from a phone that signs in (issue 14).

Each step starts ``sipline stack`` afresh on free ports of 127.0.0.1 (relay,
proxy, B2BUA, both ACR nodes and the simulated carrier, a SQLite database of
the step's own; ``stack_env``), waits until a call goes through, then sipp
plays the demo phone alice: INVITE, 407, INVITE with digest credentials,
200 (through proxy → B2BUA → ACR → carrier), ACK, a 1 s hold, BYE, 200
(bench/scenarios/call.xml). The trust between the roles stays as shipped;
only the flood guard and the per-source transaction limit are lifted out of
the way of sipp, thousands of phones from one address.

Reports per step the strict judgement (bench.runner.is_sustained), sipp's
retransmissions, set-up p99 (first INVITE to 200, challenge included) and
the CPU per call of each role's processes and of all of them; writes
``results.json`` and ``results.png``. Exit status: 0 if the highest rate
was sustained, 1 if not, 2 if the run could not be carried out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import report
from bench.compare import SIPP_BUFFERS, private_redis
from bench.proxystack import DOMAIN, Phone, free_port, users_csv, wait_until_answering
from bench.runner import (
    HOST,
    REPO,
    SCENARIO_DIR,
    SERVER_ENV,
    BenchError,
    ProcSampler,
    Scenario,
    StepPlan,
    StepResult,
    _stop,
    _tail,
    per_call_us,
    run_step,
)
from sipline.stack import ROLES

RESULTS = REPO / "bench" / "results"
CONFIG = REPO / "configs" / "single.toml"
ALICE = Phone("alice", "alice-demo-pw")  # sipline stack's demo subscriber
NUMBER = "15557654321"  # a PSTN number: the B2BUA, the ACR and the carrier
HOLD = 1.0
START_TIMEOUT = 90.0  # seconds for the stack to carry its first call
WARM_UP_TIMEOUT = 20.0  # seconds of one warm-up call's sipp
STOP_TIMEOUT = 30.0
ROLE_NAMES = tuple(name for name, _ in ROLES)


def scenario(users: Path) -> Scenario:
    """call.xml as alice to NUMBER: 4 s for the 407, 4 s for the 200, the hold, 4 s for the BYE's 200."""
    return Scenario(
        "chain", "call.xml", None, service=NUMBER,
        sipp_args=("-inf", str(users), "-au", "[field0]", "-ap", "[field2]",
                   "-auth_uri", f"{NUMBER}@{DOMAIN}", *SIPP_BUFFERS),
        answer_timeout=4.0 * 3 + HOLD, hold=HOLD,
    )  # fmt: skip


def stack_env(workdir: Path, ports: Mapping[str, int], redis_url: str | None) -> dict[str, str]:
    """The environment of a ``sipline stack`` on the free ``ports`` (proxy, b2bua,
    primary, secondary, carrier) with its SQLite database and data in ``workdir``."""
    ng, stun, rtp = free_port(), free_port(), free_port()
    peers = [f"127.0.0.1:{ports[n]}" for n in ("b2bua", "primary", "secondary")]
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIPLINE_")}
    return {
        **clean,
        "SIPLINE_DATABASE__URL": f"sqlite:///{workdir}/sipline.db",
        "SIPLINE_NODE__DATA_DIR": str(workdir),
        "SIPLINE_REDIS__URL": redis_url or "",
        # With Redis the proxy is a cluster node: it refuses to start without a secret.
        **({"SIPLINE_AUTH__SECRET": "stack shared secret"} if redis_url else {}),
        # One proxy process, as the chain's earlier figures had, unless --workers.
        "SIPLINE_NODE__WORKERS": "1",
        "SIPLINE_SIP__PORT": str(ports["proxy"]),
        "SIPLINE_SIP__TRANSPORTS": '["udp"]',
        "SIPLINE_PROXY__TRUSTED": json.dumps(peers),
        "SIPLINE_PROXY__B2BUA": json.dumps(peers[:1]),
        "SIPLINE_PROXY__MEDIA_RELAY": f"127.0.0.1:{ng}",
        "SIPLINE_B2BUA__PORT": str(ports["b2bua"]),
        # As configs/single.toml: each role trusts the one before it by address and port.
        "SIPLINE_B2BUA__TRUSTED": json.dumps([f"127.0.0.1:{ports['proxy']}"]),
        "SIPLINE_ACR__TRUSTED": json.dumps(peers[:1]),
        "SIPLINE_B2BUA__ACR": json.dumps(peers[1:]),
        "SIPLINE_B2BUA__MEDIA_RELAY": f"127.0.0.1:{ng}",
        "SIPLINE_ACR__PRIMARY": peers[1],
        "SIPLINE_ACR__SECONDARY": peers[2],
        "SIPLINE_ACR__PROBE_INTERVAL": "0.5",  # gateways known up within a second or two
        "SIPLINE_RELAY__NG_PORT": str(ng),
        "SIPLINE_RELAY__STUN_PORT": str(stun),
        "SIPLINE_RELAY__STUN_TRANSPORTS": '["udp"]',
        "SIPLINE_RELAY__RTP_PORT_MIN": str(rtp - rtp % 2 + 2),
        "SIPLINE_RELAY__RTP_PORT_MAX": str(rtp - rtp % 2 + 41),
        # The portal `sipline stack` starts: never the default 8080 another stack may hold.
        "SIPLINE_PORTAL__LISTEN": f"127.0.0.1:{ports.get('portal') or free_port()}",
    }


def stack_command(carrier_port: int) -> list[str]:
    return [sys.executable, "-m", "sipline.cli", "--config", str(CONFIG), "stack",
            "--carrier-port", str(carrier_port)]  # fmt: skip


# sipp is one address placing every call: the per-source flood guard and transaction
# limit a real phone never nears are lifted (the guard still counts, so its cost is in
# the figures); nothing else is changed.
LOAD_ENV = {**SERVER_ENV, "SIPLINE_SIP__MAX_TRANSACTIONS_PER_SOURCE": "100000"}


@dataclass(slots=True)
class ChainStep:
    """A step's sipp figures (``step``: its server figures are the roles' sum) and each role's."""

    step: StepResult
    roles_cpu_us: dict[str, float | None] = field(default_factory=dict)  # per successful call
    roles_cpu_pct: dict[str, float | None] = field(default_factory=dict)


class Roles:
    """The processes of every role of a stack (each with its descendants), sampled
    together; the sums stand for the server in the step's figures."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.samplers = {name: ProcSampler(pid, tree=True) for name, pid in pids.items()}

    def sample(self) -> None:
        for sampler in self.samplers.values():
            sampler.sample()

    @property
    def cpu_s(self) -> float | None:
        return _sum(s.cpu_s for s in self.samplers.values())

    @property
    def cpu_pct(self) -> float | None:
        return _sum(s.cpu_pct for s in self.samplers.values())

    @property
    def rss_mb(self) -> float | None:
        return _sum(s.rss_mb for s in self.samplers.values())


def _sum(values: Iterator[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known), 3) if known else None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from bench.__main__ import _positive, _rates

    parser = argparse.ArgumentParser(
        prog="python -m bench chain", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rates", type=_rates, required=True, help="calls/s per step: 200,400")
    parser.add_argument("--duration", type=_positive, default=10.0, help="seconds per step")
    parser.add_argument("--out", type=Path, help="results directory (default bench/results/...)")
    parser.add_argument("--sipp", default=shutil.which("sipp") or "/usr/bin/sipp")
    parser.add_argument(
        "--workers", type=int, default=1,
        help="proxy processes ([node] workers; > 1: a private Redis, and a phone socket per call)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = (
        args.out or RESULTS / f"chain-{time.strftime('%Y%m%d-%H%M%S')}"
    ).resolve()  # Kamailio and sipp run elsewhere
    console = Console() if Console().is_terminal else Console(width=160)
    title = f"chain (proxy with digest → B2BUA → ACR → carrier): {args.duration:g} s per step, calls held {HOLD:g} s"
    if args.workers > 1:
        title += f", proxy workers {args.workers}, a phone socket per call"
    steps: list[ChainStep] = []
    try:
        for index, rate in enumerate(args.rates):
            console.print(f"chain: {rate} calls/s for {args.duration:g} s ...", highlight=False)
            workdir = out / f"step{index + 1}-{rate}cps"
            steps.append(chain_step(rate, args.duration, workdir, args.sipp, args.workers))
    except (BenchError, OSError) as exc:
        console.print(f"[red]bench chain: {exc}[/]", highlight=False)
        return 2
    results = [s.step for s in steps]
    console.print(report.table(results, title))
    console.print(roles_table(steps))
    data = report.summary(
        results, scenario="chain", duration_s=args.duration, hold_s=HOLD, rates=args.rates,
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), cpus=os.cpu_count(),
    )  # fmt: skip
    for entry, step in zip(data["steps"], steps, strict=True):
        entry["roles_cpu_us_per_call"] = step.roles_cpu_us
        entry["roles_cpu_pct"] = step.roles_cpu_pct
    report.write_json(out / "results.json", data)
    report.write_plot(out / "results.png", results, title)
    best = data["highest_sustained_cps"]
    console.print(f"highest sustained rate: {best if best is not None else 'none'} calls/s")
    console.print(f"results: {out}/results.json, {out}/results.png")
    return 0 if data["target_sustained"] else 1


def chain_step(rate: int, duration: float, workdir: Path, sipp: str, workers: int = 1) -> ChainStep:
    """One step against a fresh stack: sipp's figures and each role's CPU. With proxy
    ``workers`` > 1, a Redis of the step's own and a socket per call (each call a
    source of its own, as phones are, for the kernel to spread over the workers)."""
    workdir.mkdir(parents=True, exist_ok=True)
    users = workdir / "alice.csv"
    users.write_text(users_csv([ALICE]))
    load = scenario(users)
    with running_stack(workdir, sipp, load, workers) as (proxy_port, pids):
        roles = Roles(pids)
        plan = StepPlan(
            load, rate, duration, "udp", workdir, target=(HOST, proxy_port),
            socket_per_call=workers > 1,
        )  # fmt: skip
        step = run_step(plan, sipp, server=roles)
    return ChainStep(
        step,
        {n: per_call_us(s.cpu_s, step.successful) for n, s in roles.samplers.items()},
        {n: s.cpu_pct for n, s in roles.samplers.items()},
    )


@contextmanager
def running_stack(
    workdir: Path, sipp: str, load: Scenario, workers: int = 1
) -> Iterator[tuple[int, dict[str, int]]]:
    """``sipline stack`` up and carrying calls: yield (proxy port, pid of each role); stop it."""
    names = ("proxy", "b2bua", "primary", "secondary", "carrier")
    ports = {name: free_port() for name in names}
    redis: subprocess.Popen[bytes] | None = None
    redis_url = None
    if workers > 1:
        redis, redis_url = private_redis(workdir)
    env = {**stack_env(workdir, ports, redis_url), **LOAD_ENV}
    env["SIPLINE_NODE__WORKERS"] = str(workers)
    log = workdir / "stack.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            stack_command(ports["carrier"]), env=env, cwd=REPO, stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT
        if not wait_until_answering(ports["proxy"], START_TIMEOUT, process):
            raise BenchError(f"the stack did not start:\n{_tail(log)}")
        while not warm_up_call(sipp, ports["proxy"], workdir, load):
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"no call went through the stack:\n{_tail(log)}")
            time.sleep(0.5)
        yield ports["proxy"], role_pids(process.pid)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if redis is not None:
            _stop(redis, 5.0)


def warm_up_call(sipp: str, proxy_port: int, workdir: Path, load: Scenario) -> bool:
    """One call like the load's, short: whether it was answered and ended."""
    command = [
        sipp, f"{HOST}:{proxy_port}", "-sf", str(SCENARIO_DIR / load.xml), "-s", load.service,
        "-i", HOST, "-p", str(free_port()), "-m", "1", "-d", "10",
        "-timeout", f"{WARM_UP_TIMEOUT:.0f}s", "-nostdin", *load.sipp_args,
    ]  # fmt: skip
    done = subprocess.run(command, cwd=workdir, capture_output=True, timeout=WARM_UP_TIMEOUT + 10)
    return done.returncode == 0


def role_pids(stack_pid: int) -> dict[str, int]:
    """The pid of each role process ``sipline stack`` started, by role name."""
    pids: dict[str, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            argv = Path(entry.path, "cmdline").read_bytes().decode().split("\0")[:-1]
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split(maxsplit=2)[1]) != stack_pid:
            continue
        name = role_of(argv)
        if name is not None:
            pids[name] = int(entry.name)
    missing = set(ROLE_NAMES) - set(pids)
    if missing:
        raise BenchError(f"the stack runs no {', '.join(sorted(missing))}")
    return {name: pids[name] for name in ROLE_NAMES}


def role_of(argv: Sequence[str]) -> str | None:
    """The role a ``sipline ... ROLE WORDS`` command line runs (ROLES' words end it)."""
    for name, words in ROLES:
        if tuple(argv[-len(words) :]) == words and "sipline.cli" in argv:
            return name
    return None


def roles_table(steps: Sequence[ChainStep]) -> Table:
    """CPU per call of each role and of all of them, with each role's CPU %, per step."""
    table = Table(title="CPU per call (µs) by role, and each role's CPU % (100 = one core)")
    table.add_column("target cps", justify="right")
    for name in ROLE_NAMES:
        table.add_column(name, justify="right")
    table.add_column("total", justify="right")
    for chain in steps:
        cells = [
            _cell(chain.roles_cpu_us.get(name), chain.roles_cpu_pct.get(name))
            for name in ROLE_NAMES
        ]
        total = chain.step.cpu_us_per_call
        table.add_row(str(chain.step.target_cps), *cells, "-" if total is None else f"{total:.0f}")
    return table


def _cell(us: float | None, pct: float | None) -> str:
    if us is None:
        return "-"
    return f"{us:.0f} ({pct:.0f} %)" if pct is not None else f"{us:.0f}"


if __name__ == "__main__":
    sys.exit(main())
