"""Relayed RTP packets per second on one core: sipline's relay against real rtpengine.

``python -m bench.relay_throughput [--rate 100000] [--seconds 5] [--streams 100] [--profile FILE] [--srtp]``

Each relay runs alone on CPU 0 (rtpengine in userspace mode, ``--table=-1``,
one worker thread); the load runs on the other CPUs: one process sends
200-byte RTP packets (12-byte header, 188 bytes of payload) round robin over
``--streams`` calls set up with ng offer/answer, paced at ``--rate`` packets/s,
and another counts what comes out of the relay. The load is paced, not a
flood: rtpengine stops relaying a stream whose socket overflows ("UDP receive
queue exceeded"), so a flood measures its overload guard, not its speed.

Per relay: the rate offered and relayed, loss, the relay's CPU use over the
run (from /proc/PID/stat) and packets relayed per CPU-second, which is what
one core can carry. The ratio of the last figures is the comparison.
``--profile`` samples our relay with py-spy while it runs (where the time goes).
``--srtp``: the sender speaks SDES-SRTP (AES_CM_128_HMAC_SHA1_80, its packets
encrypted beforehand with libsrtp) and the ng offer asks for
``transport-protocol`` RTP/AVP: each relay decrypts and authenticates every
packet and the receiver gets plain RTP (SRTP to RTP, rtpengine's way too).

Bounded everywhere: a fixed duration, and the receiver stops once the sender
is done and nothing came for a second.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sipline.net.ports import free_port
from sipline.ng.bencode import decode, encode

HOST = "127.0.0.1"
PACKET_BYTES = 200
RELAY_CPU = 0
IDLE_SECONDS = 1.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class Result:
    name: str
    sent: int
    received: int
    seconds: float
    cpu_seconds: float
    counted: int
    """Packets the relay says it received (ng query totals): the rest died in its socket buffers."""
    send_seconds: float

    @property
    def offered(self) -> float:
        return self.sent / self.send_seconds if self.send_seconds else 0.0

    @property
    def pps(self) -> float:
        return self.received / self.seconds if self.seconds else 0.0

    @property
    def loss(self) -> float:
        return 1 - self.received / self.sent if self.sent else 0.0

    @property
    def cpu(self) -> float:
        return self.cpu_seconds / self.seconds if self.seconds else 0.0

    @property
    def per_cpu_second(self) -> float:
        return self.received / self.cpu_seconds if self.cpu_seconds else 0.0

    def line(self) -> str:
        return (
            f"{self.name:<10} offered {self.offered:>9,.0f} pkt/s  relayed {self.received:>9}"
            f"  {self.pps:>9,.0f} pkt/s  loss {self.loss:6.1%}  cpu {self.cpu:6.1%}"
            f"  {self.per_cpu_second:>9,.0f} pkt per cpu-second  (relay counted {self.counted})"
        )


# -- the relays under test -------------------------------------------------------------------



def _pin() -> None:
    os.sched_setaffinity(0, {RELAY_CPU})


@contextlib.contextmanager
def rtpengine(ng_port: int, low: int, high: int) -> Iterator[subprocess.Popen[bytes]]:
    binary = shutil.which("rtpengine") or "/usr/bin/rtpengine"
    command = [
        binary, "--config-file=none", "--foreground", "--log-stderr", "--log-level=3",
        f"--interface={HOST}", f"--listen-ng={HOST}:{ng_port}", "--table=-1",
        f"--port-min={low}", f"--port-max={high}", "--num-threads=1", "--timeout=600",
    ]  # fmt: skip
    with _process(command) as process:
        yield process


@contextlib.contextmanager
def ours(ng_port: int, low: int, high: int) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "bench.relay_throughput", "--serve", str(ng_port)]
    command += ["--ports", f"{low}-{high}"]
    with _process(command) as process:
        yield process


@contextlib.contextmanager
def _process(command: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    # The relay's log goes to a file: a pipe nobody reads would stall it once full.
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"relay-bench-{Path(command[0]).name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, preexec_fn=_pin, stderr=sink)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve(ng_port: int, low: int, high: int) -> None:
    """Our relay alone on uvloop, as `sipline relay` runs it, until SIGTERM."""
    import uvloop

    from relay.media import RelayOptions, RtpRelay

    async def run() -> None:
        options = RelayOptions(ng_port=ng_port, port_min=low, port_max=high, media_timeout=600)
        relay = RtpRelay(options)
        await relay.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await relay.close()

    uvloop.run(run())


# -- control ----------------------------------------------------------------------------------


class Ng:
    """A blocking ng client with retransmission."""

    def __init__(self, port: int) -> None:
        self.address = (HOST, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(0.5)
        self.serial = 0

    def __call__(self, **message: Any) -> dict[str, Any]:
        self.serial += 1
        request = f"{os.getpid()}_{self.serial} ".encode() + encode(message)
        for _ in range(20):
            self.sock.sendto(request, self.address)
            with contextlib.suppress(TimeoutError):
                data = self.sock.recv(65535)
                return decode(data.partition(b" ")[2])
        raise RuntimeError(f"no ng reply from {self.address}")

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):
                if self(command="ping").get("result") == "pong":
                    return
        raise RuntimeError("relay did not answer ping")


SRTP_KEY = bytes(range(30))  # the sender's master key and salt (--srtp)


def sdp(port: int, srtp: bool = False) -> str:
    if srtp:
        key = base64.b64encode(SRTP_KEY).decode()
        media = f"RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}"
    else:
        media = "RTP/AVP 0"
    return (
        f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
        f"m=audio {port} {media}\r\na=rtpmap:0 PCMU/8000\r\n"
    )


def set_up_calls(
    ng: Ng, streams: int, sender_port: int, receiver_port: int, srtp: bool = False
) -> list[int]:
    """``streams`` calls from the sender to the receiver; the relay port of each sender side."""
    ports = []
    flags = {"transport-protocol": "RTP/AVP"} if srtp else {}
    for n in range(streams):
        call = {"call-id": f"bench-{n}", "from-tag": "A"}
        offer = ng(command="offer", **call, sdp=sdp(sender_port, srtp), **flags)
        answer = ng(command="answer", **call, **{"to-tag": "B"}, sdp=sdp(receiver_port))
        if offer.get("result") != "ok" or answer.get("result") != "ok":
            raise RuntimeError(f"call set-up failed: {offer} {answer}")
        match = re.search(r"m=audio (\d+)", answer["sdp"])
        assert match
        ports.append(int(match[1]))
    return ports


# -- load ---------------------------------------------------------------------------------


def encrypted(streams: int, rounds: int) -> list[list[bytes]]:
    """Each stream's SRTP packets, sequence 0 (the warm-up) to ``rounds``, made beforehand."""
    from pylibsrtp import Policy, Session

    out = []
    for ssrc in range(1, streams + 1):
        session = Session(Policy(SRTP_KEY, Policy.SSRC_ANY_OUTBOUND))
        head = struct.Struct("!BBHII")
        out.append([
            session.protect(head.pack(0x80, 0, seq, seq * 160, ssrc) + bytes(PACKET_BYTES - 12))
            for seq in range(rounds + 1)
        ])  # fmt: skip
    return out


def send(
    sock: socket.socket, ports: list[int], rate: int, seconds: float, *events: Any,
    packets: list[list[bytes]] | None = None,
) -> None:  # fmt: skip
    """``rate`` packets/s for ``seconds``, one packet per stream per round, rounds paced;
    ``packets``: each stream's (SRTP) packets to send instead, from sequence 1."""
    ready, sent, report = events
    os.sched_setaffinity(0, _load_cpus())
    ready.wait()
    buffer = bytearray(PACKET_BYTES)
    pack = struct.Struct("!BBHII").pack_into
    targets = [(HOST, port) for port in ports]
    sendto = sock.sendto
    interval = len(targets) / rate  # one round of every stream
    rounds = int(seconds / interval)
    start = time.monotonic()
    failed = 0
    for seq in range(rounds):
        for ssrc, target in enumerate(targets, 1):
            if packets is None:
                pack(buffer, 0, 0x80, 0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc)
                data: Any = buffer
            else:
                data = packets[ssrc - 1][seq + 1]
            try:
                sendto(data, target)
            except BlockingIOError:
                failed += 1
        ahead = start + (seq + 1) * interval - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    report.put((rounds * len(targets) - failed, time.monotonic() - start))
    sent.set()


def receive(sock: socket.socket, results: Any, ready: Any, sent: Any) -> None:
    """Count datagrams until the sender is done and nothing came for IDLE_SECONDS."""
    os.sched_setaffinity(0, _load_cpus())
    sock.settimeout(IDLE_SECONDS / 4)
    buffer = bytearray(2048)
    recv_into = sock.recv_into
    ready.set()
    count = 0
    first = last = time.monotonic()
    idle_since = None
    while True:
        try:
            recv_into(buffer)
        except TimeoutError:
            now = time.monotonic()
            idle_since = idle_since or now
            if sent.is_set() and now - idle_since >= IDLE_SECONDS:
                break
            continue
        if not count:
            first = time.monotonic()
        count += 1
        if count & 255 == 0 or idle_since is not None:
            last = time.monotonic()
            idle_since = None
    results.put((count, max(last - first, 1e-9)))


def _load_cpus() -> set[int]:
    cpus = os.sched_getaffinity(0) - {RELAY_CPU}
    return cpus or {RELAY_CPU}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def measure(name: str, process: subprocess.Popen[bytes], ng_port: int, args: Any) -> Result:
    ng = Ng(ng_port)
    ng.wait_ready(time.monotonic() + 10)
    receiver = _udp_socket()
    sender = _udp_socket()
    ports = set_up_calls(
        ng, args.streams, sender.getsockname()[1], receiver.getsockname()[1], args.srtp
    )
    rounds = int(args.seconds * args.rate / args.streams) + 1
    packets = encrypted(args.streams, rounds) if args.srtp else None
    # Warm up: one packet per stream lets each relay latch before the clock starts.
    for n, port in enumerate(ports):
        warm = packets[n][0] if packets is not None else bytes([0x80]) + bytes(PACKET_BYTES - 1)
        sender.sendto(warm, (HOST, port))
    time.sleep(0.3)
    with contextlib.suppress(BlockingIOError):
        while True:
            receiver.recv(2048)
    context = mp.get_context("fork")
    results, report = context.Queue(), context.Queue()
    ready, sent = context.Event(), context.Event()
    reader = context.Process(target=receive, args=(receiver, results, ready, sent))
    writer = context.Process(
        target=send, args=(sender, ports, args.rate, args.seconds, ready, sent, report),
        kwargs={"packets": packets},
    )
    profiler = _profile(process.pid, args.profile) if name == "sipline" and args.profile else None
    cpu_before = cpu_seconds(process.pid)
    reader.start()
    writer.start()
    sent_count, send_seconds = report.get(timeout=args.seconds * 3 + 30)
    writer.join(5)
    count, seconds = results.get(timeout=30)
    cpu = cpu_seconds(process.pid) - cpu_before
    reader.join(5)
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(30)
    totals = [
        ng(command="query", **{"call-id": f"bench-{n}"})["totals"] for n in range(args.streams)
    ]
    counted = sum(t["RTP"]["packets"] for t in totals) - len(ports)  # less the warm-up
    return Result(name, sent_count, count, seconds, max(cpu, 0.0), counted, send_seconds)


def _udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


def _profile(pid: int, output: str) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--output", output]
    command += ["--rate", "200", "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--rate", type=int, default=100_000, help="packets/s offered")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--profile", metavar="FILE", help="py-spy raw samples of our relay")
    parser.add_argument("--only", choices=["sipline", "rtpengine"])
    parser.add_argument("--srtp", action="store_true", help="SRTP in, RTP out (SDES, libsrtp)")
    parser.add_argument("--serve", type=int, metavar="NG_PORT", help=argparse.SUPPRESS)
    parser.add_argument("--ports", default="43000-45999", help="RTP port range for both relays")
    args = parser.parse_args(argv)
    low, high = (int(p) for p in args.ports.split("-"))
    if args.serve:
        serve(args.serve, low, high)
        return 0
    if len(os.sched_getaffinity(0)) < 2:
        print("warning: one CPU: load and relay share it", file=sys.stderr)
    results = []
    for name, start in (("sipline", ours), ("rtpengine", rtpengine)):
        if args.only and name != args.only:
            continue
        port = free_port()
        with start(port, low, high) as process:
            results.append(measure(name, process, port, args))
        print(results[-1].line(), flush=True)
    if len(results) == 2:
        mine, theirs = results
        print(
            f"ratio sipline/rtpengine: {mine.pps / theirs.pps:.2f} in packets/s,"
            f" {mine.per_cpu_second / theirs.per_cpu_second:.2f} per CPU-second"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
