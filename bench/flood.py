"""``python -m bench.flood``: legitimate calls through the proxy while one source floods it.

Issue 10's figure: a ``sipline proxy`` (SQLite, alice calls bob), bob's sipp
UAS registered from 127.0.0.3, and a sipp UAC placing calls from 127.0.0.2 at
``--cps`` (200) with digest auth for the whole run. After ``--warmup`` seconds
one process floods the proxy from 127.0.0.1 with unauthenticated INVITEs, as
fast as it can, for ``--flood`` seconds; then the run goes on ``--settle``
seconds. Printed: legitimate calls attempted, completed and failed; flood
datagrams sent and answered; bans; the proxy's RSS before the flood, at its
peak and at the end, and its CPU time.

The flood limit is raised to ``--density`` messages per ``--window`` (3000
per second): sipp's caller at 200 cps sends ~1000 a second and its callee
~800, with bursts twice that when it catches up after a stall, far over any
phone's, while the flood sends hundreds of thousands. The
default ``--warmup`` and ``--settle`` outlast the 32 s a transaction may
live, so "before" is the legitimate load's steady state and "after" what the
flood left behind. Every part is bounded in time: sipp
has a global -timeout, the flooder its seconds, the proxy is stopped at the
end.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.proxyserve import BOB, CALLER_CSV, phones_for
from bench.proxystack import (
    DOMAIN,
    REPO,
    RunningProxy,
    provision,
    register_command,
    start_proxy,
    users_csv,
)
from bench.runner import read_proc_stat
from bench.serving import stop
from bench.sippstats import read_totals
from sipline.net.ports import free_port

SCENARIOS = REPO / "bench" / "scenarios"
FLOODER, CALLER, CALLEE = "127.0.0.1", "127.0.0.2", "127.0.0.3"
SAMPLE = 0.1  # seconds between RSS samples
CALLS_END = 15.0  # seconds the calls under way get to end at the end of the run
MB = 1024 * 1024
BATCH = 1024  # flood datagrams between looks at the clock and at answers
PACE = 0.005  # seconds between a paced flood's bursts


@dataclass
class Figures:
    attempted: int = 0
    completed: int = 0
    failed: int = 0
    flood_sent: int = 0
    flood_answered: int = 0
    bans: float = 0
    dropped: float = 0
    rss_before: int = 0
    rss_peak: int = 0
    rss_after: int = 0
    cpu: float = 0.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.flood", description=__doc__.splitlines()[0])
    parser.add_argument("--cps", type=int, default=200, help="legitimate calls per second")
    parser.add_argument("--warmup", type=float, default=35.0, help="seconds of calls before the flood")
    parser.add_argument("--flood", type=float, default=10.0, help="seconds of flood")
    parser.add_argument("--settle", type=float, default=35.0, help="seconds of calls after it")
    parser.add_argument("--density", type=int, default=3000, help="limits.flood_density")
    parser.add_argument("--window", type=float, default=1.0, help="limits.flood_window")
    parser.add_argument("--hold", type=int, default=500, help="ms each call is held (sipp -d)")
    parser.add_argument("--flood-rate", type=int, default=0,
                        help="flood datagrams per second (0: as fast as it can)")
    parser.add_argument("--flood-ports", type=int, default=1, help="source ports the flood comes from")
    parser.add_argument("--keep", action="store_true", help="keep the proxy's and sipp's logs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["send"]:  # the flooder's own process
        print(*send(int(argv[1]), float(argv[2]), int(argv[3]), int(argv[4])), flush=True)
        return 0
    args = parse_args(argv)
    sipp = shutil.which("sipp")
    if sipp is None:
        print("bench.flood: sipp is not installed (Debian package sip-tester)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="sipline-bench-flood-"))
    try:
        figures = run(args, sipp, workdir)
    finally:
        if args.keep:
            print(f"bench.flood: logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(figures, args))
    return 0


def run(args: argparse.Namespace, sipp: str, workdir: Path) -> Figures:
    url = f"sqlite:///{workdir / 'sipline.db'}"
    asyncio.run(provision(url, phones_for("call")))
    limits = {
        "SIPLINE_LIMITS__FLOOD_DENSITY": str(args.density),
        "SIPLINE_LIMITS__FLOOD_WINDOW": str(args.window),
    }
    figures = Figures()
    total = args.warmup + args.flood + args.settle
    with proxy(url, limits, workdir) as running, callee(sipp, running.port, workdir):
        port = running.port
        rss = Rss(running.process.pid)
        calls = caller(sipp, port, workdir, args, total)
        try:
            wait(args.warmup, rss)
            figures.rss_before = rss.now()
            rss.peak = figures.rss_before
            sender = start_flood(port, args.flood, args.flood_rate, args.flood_ports)
            wait(args.flood, rss)
            figures.flood_sent, figures.flood_answered = finish_flood(sender)
            wait(args.settle, rss)
            figures.rss_after, figures.rss_peak = rss.now(), rss.peak
            figures.cpu = running.cpu_seconds()
        finally:
            hang_up(calls)
        totals = read_totals((workdir / "caller.csv").read_text())
        figures.attempted, figures.completed, figures.failed = (
            totals.created, totals.successful, totals.failed,
        )  # fmt: skip
        figures.bans = running.metric("sipline_bans_total", reason="flood")
        figures.dropped = sum(
            running.metric("sipline_sip_dropped_total", reason=r) for r in ("flood", "banned")
        )
    return figures


def report(f: Figures, args: argparse.Namespace) -> str:
    share = 100 * f.completed / f.attempted if f.attempted else 0.0
    rate = f.flood_sent / args.flood if args.flood else 0
    return "\n".join([
        f"legitimate calls ({args.cps} cps from {CALLER}): attempted {f.attempted},"
        f" completed {f.completed} ({share:.2f} %), failed {f.failed}",
        f"flood from {FLOODER}, {args.flood_ports} port(s) ({args.flood:g} s):"
        f" sent {f.flood_sent} ({rate:,.0f}/s),"
        f" answered {f.flood_answered}; dropped by the guard {f.dropped:.0f}; bans {f.bans:.0f}",
        f"proxy RSS: before {f.rss_before / MB:.1f} MB, peak {f.rss_peak / MB:.1f} MB,"
        f" after {f.rss_after / MB:.1f} MB (+{(f.rss_peak - f.rss_before) / MB:.1f} MB at peak);"
        f" CPU {f.cpu:.1f} s",
    ])  # fmt: skip


# -- the parts ----------------------------------------------------------------------------
@contextmanager
def proxy(url: str, settings: dict[str, str], workdir: Path) -> Iterator[RunningProxy]:
    running = start_proxy(url, workdir, settings, metrics=True, timeout=30)
    try:
        yield running
    finally:
        running.stop(5)


@contextmanager
def callee(sipp: str, port: int, workdir: Path) -> Iterator[None]:
    """bob registered from 127.0.0.3 and a sipp UAS answering there."""
    uas_port = free_port(CALLEE)
    csv = workdir / "bob.csv"
    csv.write_text(users_csv([BOB]))
    command = register_command(sipp, SCENARIOS / "register.xml", port, csv, uas_port, calls=1)
    command[command.index("-i") + 1] = CALLEE
    subprocess.run(command, cwd=workdir, capture_output=True, timeout=60, check=True)
    uas = subprocess.Popen(
        [sipp, "-sf", str(SCENARIOS / "call_uas.xml"), "-s", BOB.user, "-i", CALLEE,
         "-p", str(uas_port), "-timeout", "600s", "-nostdin"],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield
    finally:
        stop(uas)


def caller(
    sipp: str, port: int, workdir: Path, args: argparse.Namespace, seconds: float
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sipp, f"127.0.0.1:{port}", "-sf", str(SCENARIOS / "call.xml"), "-s", BOB.user,
         "-inf", str(CALLER_CSV), "-au", "[field0]", "-ap", "[field2]", "-auth_uri", f"{BOB.user}@{DOMAIN}",
         "-i", CALLER, "-p", str(free_port(CALLER)), "-r", str(args.cps),
         "-m", str(int(args.cps * seconds)), "-d", str(args.hold),
         "-timeout", f"{seconds + 30:.0f}s", "-nostdin", "-trace_stat", "-stf", "caller.csv", "-fd", "1",
         "-trace_err", "-error_file", "caller-errors.log"],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip


def hang_up(calls: subprocess.Popen[bytes]) -> None:
    """Stop placing calls, let those under way end (SIGUSR1 to sipp), kill it if it lingers."""
    calls.send_signal(signal.SIGUSR1)
    try:
        calls.wait(CALLS_END)
    except subprocess.TimeoutExpired:
        stop(calls)


def start_flood(port: int, seconds: float, rate: int, ports: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bench.flood", "send", str(port), str(seconds), str(rate), str(ports)]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE)


def finish_flood(sender: subprocess.Popen[bytes]) -> tuple[int, int]:
    out, _ = sender.communicate(timeout=30)
    sent, answered = out.split()
    return int(sent), int(answered)


def send(port: int, seconds: float, rate: int = 0, ports: int = 1) -> tuple[int, int]:
    """Unauthenticated INVITEs from ``ports`` sockets of FLOODER, round robin, for
    ``seconds``: ``rate`` a second, paced every PACE seconds (0: as fast as it can)."""
    socks = []
    for _ in range(ports):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((FLOODER, 0))
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        socks.append((sock, [invite(port, sock.getsockname(), n) for n in range(BATCH // ports or 1)]))
    tried = sent = answered = 0
    started = time.monotonic()
    deadline = started + seconds
    while (now := time.monotonic()) < deadline:
        due = int((now - started) * rate) if rate else tried + BATCH
        while tried < due:
            sock, datagrams = socks[tried % ports]
            try:
                sock.send(datagrams[(tried // ports) % len(datagrams)])
                sent += 1
            except (BlockingIOError, ConnectionRefusedError):
                pass
            tried += 1
        for sock, _ in socks:
            try:
                while True:
                    sock.recv(65535)
                    answered += 1
            except (BlockingIOError, ConnectionRefusedError):
                pass
        if rate:
            time.sleep(PACE)
    for sock, _ in socks:
        sock.close()
    return sent, answered


def invite(port: int, local: tuple[str, int], n: int) -> bytes:
    host, sport = local
    return (
        f"INVITE sip:bob@{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{sport};branch=z9hG4bKflood{n};rport\r\n"
        f"From: <sip:mallory@{DOMAIN}>;tag=f{n}\r\nTo: <sip:bob@{DOMAIN}>\r\n"
        f"Call-ID: flood-{n}@{host}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:mallory@{host}:{sport}>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


# -- measuring ----------------------------------------------------------------------------
class Rss:
    """The resident set of a process in bytes, and the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0

    def now(self) -> int:
        rss = proc_stat(self.pid)[1]
        self.peak = max(self.peak, rss)
        return rss


def wait(seconds: float, rss: Rss) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rss.now()
        time.sleep(SAMPLE)


def proc_stat(pid: int) -> tuple[float, int]:
    """CPU seconds and resident bytes of process ``pid``."""
    return read_proc_stat(Path(f"/proc/{pid}/stat").read_text())


if __name__ == "__main__":
    sys.exit(main())
