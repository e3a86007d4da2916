"""`sipline run` as a real process, driven by real sipp over UDP and TCP."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sipline.net.ports import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SIPLINE = Path(sys.executable).parent / "sipline"
HOST = "127.0.0.1"
DRAIN_TIMEOUT = 2.0



def options(port: int, transport: str, branch: str) -> bytes:
    return (
        f"OPTIONS sip:node@{HOST}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {HOST}:{port};branch=z9hG4bK{branch};rport\r\n"
        f"From: <sip:probe@{HOST}>;tag=p\r\nTo: <sip:node@{HOST}>\r\n"
        f"Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def answers_options(port: int, transport: str = "UDP", timeout: float = 0.5) -> bool:
    """Whether the node on ``port`` answers one OPTIONS with 200."""
    branch = f"probe{time.monotonic_ns()}"
    kind = socket.SOCK_DGRAM if transport == "UDP" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((HOST, port))
            sock.sendall(options(port, transport, branch))
            return sock.recv(65535).startswith(b"SIP/2.0 200 ")
        except OSError:
            return False


@dataclass
class NodeProcess:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    port = free_port()
    env = {
        **os.environ,
        "SIPLINE_SIP__PORT": str(port),
        "SIPLINE_NODE__DRAIN_TIMEOUT": str(DRAIN_TIMEOUT),
        "SIPLINE_LOG__LEVEL": "warning",  # info logs a line per message
        # sipp sends 100 OPTIONS/s from one address: a load, not a phone (flood
        # limits are tried in tests/security/test_net_flood.py).
        "SIPLINE_LIMITS__FLOOD_DENSITY": "0",
    }
    log = tmp_path / "node.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(SIPLINE), "run", "--config", "configs/single.toml"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    running = NodeProcess(process, port, log)
    try:
        for _ in range(100):  # up to ~10 s to start
            if process.poll() is not None:
                pytest.fail(f"sipline run exited {process.returncode}:\n{running.log_text()}")
            if answers_options(port, timeout=0.1):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"sipline run never answered OPTIONS:\n{running.log_text()}")
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def run_sipp(
    sipp: str, node: NodeProcess, workdir: Path, transport: str, calls: int, rate: int
) -> dict[str, str]:
    """Run the OPTIONS scenario to its end; return sipp's final cumulative statistics."""
    stats = workdir / f"stats-{transport}.csv"
    command = [
        sipp, f"{HOST}:{node.port}", "-sf", str(SCENARIOS / "options_uac.xml"),
        "-t", transport, "-i", HOST, "-p", str(free_port()), "-s", "node",
        "-m", str(calls), "-r", str(rate), "-timeout", "60s", "-nostdin",
        "-trace_stat", "-stf", str(stats), "-trace_err", "-error_file", str(workdir / "err.log"),
    ]
    done = subprocess.run(command, cwd=workdir, capture_output=True, timeout=90)
    assert done.returncode == 0, (done.returncode, done.stdout[-2000:], node.log_text())
    with stats.open(newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    return dict(zip(rows[0], rows[-1], strict=False))


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_sipp_options_are_all_answered(
    sipp_bin: str, node: NodeProcess, tmp_path: Path, transport: str
) -> None:
    stats = run_sipp(sipp_bin, node, tmp_path, transport, calls=200, rate=100)
    assert stats["SuccessfulCall(C)"] == "200"
    assert stats["FailedCall(C)"] == "0"
    assert stats["Retransmissions(C)"] == "0"


GARBAGE_DATAGRAMS = [
    b"\x00\xff\xfe\xfd" * 50,
    b"hello\r\n\r\n",
    b"SIP/2.0 200 OK\r\n\r\n",  # a response missing everything: dropped
    b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n\r\n",  # 400
    b"INVITE sip:x SIP/2.0\r\nContent-Length: 10\r\n\r\nshort",
    b"\r\n\r\n",
]


def test_garbage_on_udp_and_tcp_leaves_the_node_answering(
    sipp_bin: str, node: NodeProcess, tmp_path: Path
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for datagram in GARBAGE_DATAGRAMS:
            udp.sendto(datagram, (HOST, node.port))
    for stream in (b"".join(GARBAGE_DATAGRAMS), b"INVITE sip:x SIP/2.0\r\nl: -1\r\n\r\n"):
        with socket.create_connection((HOST, node.port), timeout=2) as tcp:
            tcp.sendall(stream)
            tcp.shutdown(socket.SHUT_WR)
            tcp.settimeout(2)
            for _ in range(100):  # read what the node answers, until it closes
                if not tcp.recv(65535):
                    break
    assert node.process.poll() is None
    assert answers_options(node.port, "UDP") and answers_options(node.port, "TCP")
    stats = run_sipp(sipp_bin, node, tmp_path, "u1", calls=20, rate=100)
    assert stats["SuccessfulCall(C)"] == "20"


def test_sigterm_drains_and_exits_0_within_the_drain_timeout(node: NodeProcess) -> None:
    assert answers_options(node.port, "UDP")  # leaves a transaction lingering (timer J)
    started = time.monotonic()
    node.process.send_signal(signal.SIGTERM)
    code = node.process.wait(DRAIN_TIMEOUT + 5)
    assert code == 0, node.log_text()
    assert time.monotonic() - started < DRAIN_TIMEOUT + 2
