"""A real ``sipline proxy`` for the net attacks (tests/security/test_net_*.py): its
own SQLite database with subscribers, ``[limits]`` and Redis from the test, its
/metrics, its log and its CPU time; and raw sockets from any 127.x address."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.flood import metric, proc_stat
from bench.proxystack import (
    HOST,
    REPO,
    Phone,
    free_port,
    provision,
    proxy_command,
    proxy_env,
    wait_until_answering,
)
from sipline.sip.ids import new_branch

ALICE = Phone("alice", "alice-Secret1")


@dataclass
class RunningProxy:
    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def metric(self, name: str, **labels: str) -> float:
        """A sample of /metrics (0 when absent)."""
        wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return metric(self.metrics_port, f"{name}{{{wanted}}}" if labels else name)

    def cpu_seconds(self) -> float:
        """User and system CPU time the proxy process has used."""
        return proc_stat(self.process.pid)[0]


@contextmanager
def running_proxy(tmp_path: Path, **settings: str) -> Iterator[RunningProxy]:
    """``sipline proxy`` on a free port; ``settings`` are SIPLINE_* variables, such as
    ``LIMITS__FLOOD_DENSITY="50"``."""
    url = f"sqlite:///{tmp_path / f'proxy-{time.monotonic_ns()}.db'}"
    asyncio.run(provision(url, [ALICE]))
    port, metrics_port = free_port(), free_port()
    extra = {"SIPLINE_METRICS__PORT": str(metrics_port)}
    extra |= {f"SIPLINE_{key}": value for key, value in settings.items()}
    log = tmp_path / f"proxy-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            proxy_command(), cwd=REPO, env=proxy_env(port, url, extra),
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    proxy = RunningProxy(process, port, metrics_port, url, log)
    try:
        if not wait_until_answering(port, 20, process):
            pytest.fail(f"sipline proxy did not start:\n{proxy.log_text()}", pytrace=False)
        yield proxy
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def options(port: int, source: tuple[str, int], call_id: str | None = None) -> bytes:
    """An OPTIONS to the proxy itself (answered 200 without a challenge)."""
    host, sport = source
    return (
        f"OPTIONS sip:{HOST}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{sport};branch={new_branch()};rport\r\n"
        f"From: <sip:probe@probe.invalid>;tag=p\r\nTo: <sip:{HOST}:{port}>\r\n"
        f"Call-ID: {call_id or new_branch()}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def udp_from(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


def answered(proxy: RunningProxy, host: str, timeout: float = 0.5) -> bytes | None:
    """The proxy's answer to an OPTIONS from a fresh port of ``host``, if any."""
    with udp_from(host) as sock:
        sock.settimeout(timeout)
        sock.sendto(options(proxy.port, sock.getsockname()), (HOST, proxy.port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def wait_for(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False
