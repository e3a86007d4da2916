"""``python -m bench.stall [--rate 2000] [--duration 60]``: does ``sipline proxy`` stall
under load, and does its memory stay flat (issue 14, "No pause")?

The relay scenario (``python -m bench compare --scenario relay``: sipp calls a
fixed sipp UAS through the proxy, which trusts the caller) runs at ``--rate``
for ``--duration`` seconds. Beside it a pinger sends the proxy an OPTIONS
addressed to the proxy itself every ``--interval`` (10 ms) from a socket of
its own and times each answer: the proxy answers those at once from its
event loop, so a round trip far over the usual one is the loop stalled (a
cyclic GC collection, a slow callback) or the socket's queue behind it.
The proxy's RSS is read from /proc every second. Prints the round trips
(p50, p99, max, how many over ``--stall-ms``, unanswered), RSS at start, end
and peak, and sipp's figures; writes ``stall.json`` and the samples to
``--out``. Bounded: the pings stop with the load, at most
duration/interval of them, each waited for 2 s at most.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bench.compare import RELAY, server, uas
from bench.runner import HOST, KILL_GRACE, REPO, BenchError, ProcSampler, StepPlan, run_step
from sipline.net.ports import free_port

RESULTS = REPO / "bench" / "results"
ANSWER_WAIT = 2.0  # seconds a ping is waited for before it counts as unanswered


@dataclass(frozen=True, slots=True)
class Pings:
    sent: int
    answered: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    over: int  # answered later than the stall threshold, or not at all
    stall_ms: float


def pinger(port: int, interval: float, stop: threading.Event, limit: int) -> list[float | None]:
    """Ping until ``stop`` (or ``limit`` pings): each one's round trip in seconds, None if lost."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(interval)
    own = sock.getsockname()[1]
    sent: dict[str, float] = {}
    rtts: dict[str, float] = {}
    order: list[str] = []
    next_at = time.monotonic()
    try:
        while not stop.is_set() and len(order) < limit:
            now = time.monotonic()
            if now >= next_at:
                branch = f"z9hG4bK-stall-{len(order)}"
                sock.sendto(options(branch, port, own), (HOST, port))
                sent[branch] = time.monotonic()
                order.append(branch)
                next_at += interval
            _receive(sock, sent, rtts, max(0.0, next_at - time.monotonic()))
        deadline = time.monotonic() + ANSWER_WAIT
        while len(rtts) < len(order) and time.monotonic() < deadline:
            _receive(sock, sent, rtts, 0.05)
    finally:
        sock.close()
    return [rtts.get(branch) for branch in order]


def _receive(
    sock: socket.socket, sent: dict[str, float], rtts: dict[str, float], wait: float
) -> None:
    sock.settimeout(max(wait, 0.001))
    try:
        data = sock.recv(65535)
    except (TimeoutError, BlockingIOError):
        return
    at = time.monotonic()
    start = data.find(b"branch=")
    if start < 0:
        return
    branch = data[start + 7 :].split(b"\r", 1)[0].split(b";", 1)[0].decode(errors="replace")
    if branch in sent and branch not in rtts:
        rtts[branch] = at - sent[branch]


def options(branch: str, port: int, own: int) -> bytes:
    return (
        f"OPTIONS sip:{HOST}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:{own};branch={branch}\r\n"
        f"From: <sip:stall@{HOST}>;tag=stall\r\nTo: <sip:{HOST}:{port}>\r\n"
        f"Call-ID: {branch}@{HOST}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def summarise(rtts: list[float | None], stall_ms: float) -> Pings:
    answered = sorted(r * 1000 for r in rtts if r is not None)
    over = sum(1 for r in rtts if r is None or r * 1000 > stall_ms)
    if not answered:
        return Pings(len(rtts), 0, None, None, None, over, stall_ms)
    p99 = answered[min(len(answered) - 1, round(0.99 * (len(answered) - 1)))]
    return Pings(len(rtts), len(answered), round(statistics.median(answered), 2), round(p99, 2),
                 round(answered[-1], 2), over, stall_ms)  # fmt: skip


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.stall", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between pings")
    parser.add_argument("--stall-ms", type=float, default=50.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--sipp", default=shutil.which("sipp") or "/usr/bin/sipp")
    args = parser.parse_args(argv)
    if not (0 < args.duration <= 600 and 0.001 <= args.interval <= 1 and 0 < args.rate <= 20000):
        parser.error("--duration up to 600 s, --interval 0.001-1 s, --rate up to 20000")
    out = (args.out or RESULTS / f"stall-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        result = measure(args, out)
    except (BenchError, OSError, subprocess.SubprocessError) as exc:
        print(f"bench.stall: {exc}", file=sys.stderr)
        return 2
    (out / "stall.json").write_text(json.dumps(result, indent=2) + "\n")
    pings, rss, step = result["pings"], result["rss_mb"], result["step"]
    assert isinstance(pings, dict) and isinstance(rss, dict) and isinstance(step, dict)
    assert isinstance(result["gc_pauses_logged"], list)
    print(
        f"sipline proxy, relay at {args.rate} cps for {args.duration:g} s: "
        f"{step['successful']}/{step['planned_calls']} calls, {step['retransmissions']} "
        f"retransmissions, {step['cpu_us_per_call']} us CPU per call, load {step['load_avg']}\n"
        f"  pings every {args.interval * 1000:g} ms: {pings['answered']}/{pings['sent']} answered, "
        f"round trip p50 {pings['p50_ms']} ms, p99 {pings['p99_ms']} ms, max {pings['max_ms']} ms, "
        f"{pings['over']} over {args.stall_ms:g} ms or lost\n"
        f"  RSS {rss['start']} MB at start, {rss['end']} at the end, peak {rss['peak']}; "
        f"GC pauses over 50 ms logged by the proxy: {len(result['gc_pauses_logged'])}; {out}"
    )
    return 0


def measure(args: argparse.Namespace, out: Path) -> dict[str, object]:
    uac_port, uas_port = free_port(), free_port()
    plan = StepPlan(RELAY, args.rate, args.duration, "udp", out, sipp_port=uac_port,
                    sipp_extra=("-key", "uas", f"{HOST}:{uas_port}"))  # fmt: skip
    limit = int(args.duration / args.interval) + 1
    with uas(args.sipp, uas_port, out, plan.sipp_timeout + KILL_GRACE):
        with server("sipline", out, uac_port) as (port, pid):
            stop = threading.Event()
            rtts: list[float | None] = []
            rss: list[tuple[float, float | None]] = []
            thread = threading.Thread(
                target=lambda: rtts.extend(pinger(port, args.interval, stop, limit)), daemon=True
            )

            def watch_rss() -> None:
                started = time.monotonic()
                while not stop.wait(1.0):
                    rss.append((round(time.monotonic() - started, 1), rss_mb(pid)))

            watcher = threading.Thread(target=watch_rss, daemon=True)
            start_rss = rss_mb(pid)
            thread.start()
            watcher.start()
            try:
                step = run_step(replace(plan, target=(HOST, port)), args.sipp,
                                server=ProcSampler(pid, tree=True))  # fmt: skip
            finally:
                stop.set()
                thread.join(ANSWER_WAIT + 5)
                watcher.join(5)
    values = [v for _, v in rss if v is not None]
    log = out / "server.log"
    gc_pauses = [line for line in log.read_text(errors="replace").splitlines()
                 if "event=gc_pause" in line] if log.exists() else []  # fmt: skip
    return {
        "gc_pauses_logged": gc_pauses[:100],
        "rate": args.rate,
        "duration_s": args.duration,
        "pings": asdict(summarise(rtts, args.stall_ms)),
        "rss_mb": {
            "start": None if start_rss is None else round(start_rss, 1),
            "end": round(values[-1], 1) if values else None,
            "peak": round(max(values), 1) if values else None,
            "samples": rss,
        },
        "step": asdict(step),
    }


if __name__ == "__main__":
    sys.exit(main())
