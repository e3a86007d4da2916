"""``python -m bench compare --scenario relay --rates R1,R2,... [--duration S]``:
``sipline proxy`` beside Kamailio under the same load (issue 14).

The ``relay`` scenario: a sipp UAC calls a fixed sipp UAS through the proxy
under test (INVITE, 200, ACK, a 1 s hold, BYE, 200; record-routed, no
authentication: sipline trusts the UAC's address and port, Kamailio has no
authentication at all). For each rate, Kamailio (``bench.kamailio``: tm + rr
+ sl + maxfwd, 4 UDP workers) and then ``sipline proxy`` each get one step,
one load at a time, each server and UAS started afresh for its step. Both are
measured alike: the CPU time of the server's process and all its descendants
(Kamailio's workers) over the step, per successful call.

Prints a table per server and the ratios (sipline ÷ Kamailio: sustained
rate, CPU per call, set-up p99), writes ``results.json`` and ``results.png``.
``--profile`` runs py-spy on sipline's process during its steps (a flame graph
and a speedscope file per step). ``--workers N`` runs ``sipline proxy`` as N
processes (``[node] workers``; default: configs/single.toml's, with a private
redis-server for the step when N > 1, which workers share their state
through); then, and with ``--socket-per-call``, sipp's UAC sends each call
from a socket of its own (``-t un``), for both servers alike: one socket for
all would be one source, which the kernel hashes to one worker. Exit status: 0 if sipline sustained the
highest rate, 1 if not, 2 if the run could not be carried out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import kamailio, report
from bench.proxystack import provision, proxy_command, proxy_env
from bench.runner import (
    HOST,
    KILL_GRACE,
    REPO,
    SERVER_ENV,
    VENV_BIN,
    BenchError,
    ProcSampler,
    Scenario,
    StepPlan,
    StepResult,
    _stop,
    _tail,
    run_step,
)
from bench.serving import answers, stop
from sipline.net.ports import free_port

RESULTS = REPO / "bench" / "results"
UAC_HOST = "127.0.0.2"  # where sipp's UAC binds with a socket per call
SERVERS = ("kamailio", "sipline")
START_TIMEOUT = 30.0
HOLD = 1.0  # seconds a call is held between ACK and BYE

# The longest wait in relay.xml: 4 s for the 200, the hold, 4 s for the BYE's 200.
# sipp's sockets get 4 MB buffers as the servers' do: on a busy box a default
# ~200 KB overflows while sipp waits for a core, and each loss is a retransmission.
SIPP_BUFFERS = ("-buff_size", str(4 * 1024 * 1024))
RELAY = Scenario(
    "relay", "relay.xml", None, service="uas", answer_timeout=9.0, hold=HOLD,
    sipp_args=SIPP_BUFFERS,
)  # fmt: skip
UAS_XML = RELAY.xml.replace(".xml", "_uas.xml")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from bench.__main__ import _positive, _rates

    parser = argparse.ArgumentParser(
        prog="python -m bench compare", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--scenario", choices=("relay",), default="relay")
    parser.add_argument("--rates", type=_rates, required=True, help="calls/s per step: 1000,2000")
    parser.add_argument("--duration", type=_positive, default=10.0, help="seconds per step")
    parser.add_argument("--only", choices=SERVERS, help="load only this server")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy on sipline's process during its steps")  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=None,
        help="sipline proxy processes ([node] workers; default: configs/single.toml's)",
    )  # fmt: skip
    parser.add_argument(
        "--socket-per-call", action="store_true",
        help="sipp's UAC sends each call from a socket of its own (always with workers > 1)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="results directory (default bench/results/...)")
    parser.add_argument("--sipp", default=shutil.which("sipp") or "/usr/bin/sipp")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = (
        args.out or RESULTS / f"compare-{args.scenario}-{time.strftime('%Y%m%d-%H%M%S')}"
    ).resolve()  # Kamailio and sipp run elsewhere
    servers = (args.only,) if args.only else SERVERS
    console = Console() if Console().is_terminal else Console(width=160)
    title = f"{args.scenario}: {args.duration:g} s per step, calls held {HOLD:g} s"
    workers_ = args.workers if args.workers is not None else configured_workers()
    title += f", sipline workers {workers_}" + (
        ", a UAC socket per call" if args.socket_per_call or workers_ > 1 else ""
    )
    workers = args.workers if args.workers is not None else configured_workers()
    per_call = args.socket_per_call or workers > 1
    try:
        binary = kamailio.binary() if "kamailio" in servers else ""
        series = run(servers, args.rates, args.duration, out, args.sipp, binary,
                     args.profile, console, workers=workers, socket_per_call=per_call)  # fmt: skip
    except (BenchError, kamailio.KamailioUnavailable, OSError) as exc:
        console.print(f"[red]bench compare: {exc}[/]", highlight=False)
        return 2
    for name, steps in series.items():
        console.print(report.table(steps, f"{name} — {title}"))
    pairs = ratios(series["kamailio"], series["sipline"]) if len(series) == 2 else []
    if pairs:
        console.print(ratio_table(pairs, series["kamailio"], series["sipline"]))
    data = {
        "scenario": args.scenario, "duration_s": args.duration, "hold_s": HOLD,
        "rates": args.rates, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(), "kamailio_children": kamailio.CHILDREN,
        "sipline_workers": workers, "uac_socket_per_call": per_call,
        "servers": {
            name: report.summary(steps, server=name) for name, steps in series.items()
        },
        "ratios": [asdict(pair) for pair in pairs],
        "sustained_ratio": sustained_ratio(series.get("kamailio"), series.get("sipline")),
    }  # fmt: skip
    report.write_json(out / "results.json", data)
    report.write_series_plot(out / "results.png", series, title)
    for name, steps in series.items():
        best = report.highest_sustained(steps)
        console.print(f"{name}: highest sustained rate {best if best else 'none'} calls/s")
    console.print(f"results: {out}/results.json, {out}/results.png")
    judged = series.get("sipline") or next(iter(series.values()))
    return 0 if report.target_sustained(judged) else 1


def run(
    servers: Sequence[str],
    rates: Sequence[int],
    duration: float,
    out: Path,
    sipp: str,
    kamailio_binary: str,
    profile: bool = False,
    console: Console | None = None,
    *,
    workers: int = 1,
    socket_per_call: bool = False,
) -> dict[str, list[StepResult]]:
    """For each rate, a step against each server in turn: their results by server."""
    series: dict[str, list[StepResult]] = {name: [] for name in servers}
    for index, rate in enumerate(rates):
        for name in servers:
            workdir = out / name / f"step{index + 1}-{rate}cps"
            if console is not None:
                console.print(f"{name}: {rate} calls/s for {duration:g} s ...", highlight=False)
            step = relay_step(name, rate, duration, workdir, sipp, kamailio_binary,
                              profile and name == "sipline", workers=workers,
                              socket_per_call=socket_per_call)  # fmt: skip
            series[name].append(step)
    return series


def relay_step(
    name: str,
    rate: int,
    duration: float,
    workdir: Path,
    sipp: str,
    kamailio_binary: str = "",
    profile: bool = False,
    *,
    workers: int = 1,
    socket_per_call: bool = False,
) -> StepResult:
    """One step of the relay scenario against a fresh server ``name`` and a fresh UAS."""
    workdir.mkdir(parents=True, exist_ok=True)
    uac_port, uas_port = free_port(), free_port()
    # A socket per call has a port per call: the UAC is then trusted by its host,
    # an address of its own (the UAS, on HOST, is not trusted either way).
    plan = StepPlan(
        RELAY, rate, duration, "udp", workdir, sipp_port=uac_port,
        sipp_extra=("-key", "uas", f"{HOST}:{uas_port}"), socket_per_call=socket_per_call,
        sipp_host=UAC_HOST if socket_per_call else HOST,
    )  # fmt: skip
    with uas(sipp, uas_port, workdir, plan.sipp_timeout + KILL_GRACE):
        with server(
            name, workdir, uac_port, kamailio_binary, workers=workers,
            trust_host=socket_per_call,
        ) as (port, pid):  # fmt: skip
            sampler = ProcSampler(pid, tree=True)
            targeted = replace(plan, target=(HOST, port))
            with py_spy(pid, workdir, plan.sipp_timeout) if profile else _nothing():
                return run_step(targeted, sipp, server=sampler)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def uas(
    sipp: str, port: int, workdir: Path, timeout: float, extra: Sequence[str] = ()
) -> Iterator[None]:
    """The fixed UAS (relay_uas.xml) on ``port``, for as many calls as come."""
    from bench.runner import SCENARIO_DIR

    process = subprocess.Popen(
        [sipp, "-sf", str(SCENARIO_DIR / UAS_XML), "-s", "uas", "-i", HOST, "-p", str(port),
         "-timeout", f"{timeout:.0f}s", "-nostdin", *SIPP_BUFFERS, *extra,
         "-trace_err", "-error_file", str(workdir / "uas-errors.log")],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        stop(process)


@contextmanager
def server(
    name: str,
    workdir: Path,
    uac_port: int,
    kamailio_binary: str = "",
    wrap: Sequence[str] = (),
    start_timeout: float = START_TIMEOUT,
    *,
    workers: int = 1,
    trust_host: bool = False,
) -> Iterator[tuple[int, int]]:
    """Server ``name`` on a free port, answering OPTIONS: yield (port, pid); stop it.
    ``wrap`` runs it under another program (valgrind), which the pid is then.
    sipline runs as ``workers`` processes (with a private Redis when more than
    one); ``trust_host``: it trusts the UAC's host (``UAC_HOST``), whatever its port."""
    port = free_port()
    redis: subprocess.Popen[bytes] | None = None
    if name == "kamailio":
        config = workdir / "kamailio.cfg"
        config.write_text(kamailio.render(port))
        argv, env = kamailio.command(kamailio_binary, config, workdir), dict(os.environ)
    else:
        redis_url = ""
        if workers > 1:
            redis, redis_url = private_redis(workdir)
        argv, env = sipline_proxy(port, workdir, uac_port, workers, redis_url, trust_host)
    log = workdir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*wrap, *argv], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + start_timeout
        while not answers(port):
            if process.poll() is not None:
                raise BenchError(f"{name} exited {process.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise BenchError(f"{name} did not answer OPTIONS in {start_timeout:g} s")
            time.sleep(0.1)
        yield port, process.pid
    finally:
        _stop(process, 10.0)
        if redis is not None:
            _stop(redis, 5.0)


def sipline_proxy(
    port: int, workdir: Path, uac_port: int, workers: int = 1, redis_url: str = "",
    trust_host: bool = False,
) -> tuple[list[str], dict[str, str]]:  # fmt: skip
    """``sipline proxy`` as the relay scenario runs it: the UAC trusted by address and
    port (by address alone with ``trust_host``), no media relay (Kamailio has
    none), UDP only, its data in ``workdir``; ``workers`` processes sharing
    ``redis_url``."""
    url = f"sqlite:///{workdir / 'sipline.db'}"
    asyncio.run(provision(url, []))  # the schema, no subscribers
    uac = UAC_HOST if trust_host else f"{HOST}:{uac_port}"
    extra = {
        **SERVER_ENV,
        "SIPLINE_NODE__DATA_DIR": str(workdir),
        "SIPLINE_SIP__TRANSPORTS": '["udp"]',
        "SIPLINE_PROXY__TRUSTED": f'["{uac}"]',
        "SIPLINE_PROXY__MEDIA_RELAY": "",
        "SIPLINE_NODE__WORKERS": str(workers),
        # Every call leaves two server transactions lingering 32 s (its INVITE's,
        # timer L, and its BYE's, timer J): past 1560 cps for over 32 s they pass
        # the default limit (100,000) and new calls get 503 (bench.stall saw it).
        "SIPLINE_SIP__MAX_TRANSACTIONS": "1000000",
    }
    if redis_url:
        extra |= {"SIPLINE_REDIS__URL": redis_url, "SIPLINE_AUTH__SECRET": "bench compare"}
    return proxy_command(), proxy_env(port, url, extra)


def configured_workers() -> int:
    """``[node] workers`` as configs/single.toml (and the environment) resolve it."""
    from sipline.config import load_settings
    from sipline.net.workers import count

    return count(load_settings(REPO / "configs" / "single.toml"))


def private_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server of the step's own on a free port of 127.0.0.1: (process, URL)."""
    binary = shutil.which("redis-server") or "/usr/sbin/redis-server"
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection((HOST, port), 0.2).close()
            return process, f"redis://{HOST}:{port}/0"
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise BenchError(f"redis-server did not start on port {port}") from None
            time.sleep(0.05)


@contextmanager
def py_spy(pid: int, workdir: Path, seconds: float) -> Iterator[None]:
    """py-spy records ``pid`` for ``seconds``: profile.svg and profile.speedscope.json."""
    spy = shutil.which("py-spy", path=str(VENV_BIN)) or shutil.which("py-spy")
    if spy is None:
        raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
    # --native: C frames too (uvloop, the parser's str methods); it pauses the process
    # at each sample, so a profiled step's own figures are not the server's.
    common = ["--pid", str(pid), "--duration", f"{seconds:.0f}", "--rate", "100", "--native"]
    processes = [
        subprocess.Popen([spy, "record", *common, "--format", fmt, "-o", str(workdir / name)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fmt, name in (("flamegraph", "profile.svg"), ("speedscope", "profile.speedscope.json"))
    ]  # fmt: skip
    try:
        yield
    finally:
        for process in processes:  # SIGINT: py-spy writes what it has and exits
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- the ratios ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ratio:
    """One rate's figures of both servers, and sipline's over Kamailio's."""

    target_cps: int
    kamailio_cpu_us: float | None
    sipline_cpu_us: float | None
    cpu_ratio: float | None  # sipline's CPU per call ÷ Kamailio's
    kamailio_p99_ms: float | None
    sipline_p99_ms: float | None
    p99_ratio: float | None
    kamailio_sustained: bool
    sipline_sustained: bool


def ratios(
    kamailio_steps: Sequence[StepResult], sipline_steps: Sequence[StepResult]
) -> list[Ratio]:
    """The steps of both servers paired by target rate, in the order of the rates."""
    theirs = {step.target_cps: step for step in kamailio_steps}
    pairs = []
    for ours in sipline_steps:
        other = theirs.get(ours.target_cps)
        if other is None:
            continue
        pairs.append(Ratio(
            ours.target_cps,
            other.cpu_us_per_call, ours.cpu_us_per_call,
            quotient(ours.cpu_us_per_call, other.cpu_us_per_call),
            other.rtt_p99_ms, ours.rtt_p99_ms, quotient(ours.rtt_p99_ms, other.rtt_p99_ms),
            other.sustained, ours.sustained,
        ))  # fmt: skip
    return pairs


def quotient(ours: float | None, theirs: float | None) -> float | None:
    """``ours ÷ theirs``, None when either is unknown or theirs is 0 (p99 under a tick)."""
    if ours is None or not theirs:
        return None
    return round(ours / theirs, 2)


def sustained_ratio(
    kamailio_steps: Sequence[StepResult] | None, sipline_steps: Sequence[StepResult] | None
) -> float | None:
    """sipline's highest sustained rate ÷ Kamailio's (None unless both sustained one)."""
    if not kamailio_steps or not sipline_steps:
        return None
    ours, theirs = report.highest_sustained(sipline_steps), report.highest_sustained(kamailio_steps)
    return quotient(ours, theirs)


def ratio_table(
    pairs: Sequence[Ratio],
    kamailio_steps: Sequence[StepResult],
    sipline_steps: Sequence[StepResult],
) -> Table:
    """Per rate: CPU per call and p99 of both and their ratios; the sustained rates below."""
    best_k = report.highest_sustained(kamailio_steps)
    best_s = report.highest_sustained(sipline_steps)
    ratio = sustained_ratio(kamailio_steps, sipline_steps)
    caption = (
        f"highest sustained: Kamailio {best_k or 'none'}, sipline {best_s or 'none'} calls/s"
        + (f" (sipline ÷ Kamailio {ratio:.2f})" if ratio is not None else "")
    )
    table = Table(title="sipline ÷ Kamailio", caption=caption)
    for heading in (
        "target cps",
        "Kamailio µs/call",
        "sipline µs/call",
        "CPU ratio",
        "Kamailio p99 ms",
        "sipline p99 ms",
        "p99 ratio",
        "sustained K / s",
    ):
        table.add_column(heading, justify="right")  # fmt: skip
    for pair in pairs:
        table.add_row(
            str(pair.target_cps),
            _number(pair.kamailio_cpu_us), _number(pair.sipline_cpu_us),
            _number(pair.cpu_ratio, "{:.2f}×"),
            _number(pair.kamailio_p99_ms), _number(pair.sipline_p99_ms),
            _number(pair.p99_ratio, "{:.2f}×"),
            f"{_yes(pair.kamailio_sustained)} / {_yes(pair.sipline_sustained)}",
        )  # fmt: skip
    return table


def _number(value: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def _yes(value: bool) -> str:
    return "yes" if value else "no"


if __name__ == "__main__":
    sys.exit(main())
