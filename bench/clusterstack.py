"""Real ``sipline proxy`` processes sharing one database and one Redis, each on
its own loopback address (127.0.0.1, 127.0.0.2, ...) and the same port, trusting
each other and sharing ``auth.secret``: a cluster as an operator would run it.
``launch`` starts any other node of it (a B2BUA, an ACR) the same way."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.proxystack import REPO, proxy_command, proxy_env

SECRET = "cluster-test-secret"


@dataclass
class ClusterNode:
    """A node of the cluster: a ``sipline`` process listening on ``host:port``."""

    name: str
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(5)


def start(
    name: str, host: str, port: int, url: str, redis_url: str, peers: list[str], workdir: Path,
    **settings: str,
) -> ClusterNode:  # fmt: skip
    """Start one proxy; ``peers`` are the HOST:PORT of every proxy (trusted)."""
    trusted = ", ".join(f'"{peer}"' for peer in peers)
    extra = {
        "SIPLINE_SIP__HOST": host,
        "SIPLINE_NODE__NAME": name,
        "SIPLINE_REDIS__URL": redis_url,
        "SIPLINE_AUTH__SECRET": SECRET,
        "SIPLINE_PROXY__TRUSTED": f"[{trusted}]",
        "SIPLINE_PROXY__MEDIA_RELAY": "",
        **settings,
    }
    return launch(name, proxy_command(), proxy_env(port, url, extra), host, port, workdir)


def launch(
    name: str, command: list[str], env: dict[str, str], host: str, port: int, workdir: Path
) -> ClusterNode:
    """Start a node and wait until it answers on ``host:port`` (RuntimeError with its
    log, the process killed, if it does not within 20 s)."""
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    node = ClusterNode(name, host, port, process, log)
    if not listening(host, port, 20, process):
        process.kill()
        process.wait(5)
        log_text = node.log_text()
        kind = PortTaken if "Address already in use" in log_text else RuntimeError
        raise kind(f"sipline {name} did not start:\n{log_text[-3000:]}")
    return node


class PortTaken(RuntimeError):
    """The node's port was taken between ``free_port`` and its bind (another process
    on the machine): start it again on another port."""


PORT_ATTEMPTS = 3  # times a test starts its nodes on fresh ports when one was taken


def on_free_ports(start_nodes: Callable[[list[ClusterNode]], None]) -> list[ClusterNode]:
    """The nodes ``start_nodes(started)`` starts (each appended to ``started`` as it
    runs), on other free ports while one is taken before its node binds it (the
    nodes of a failed try stopped): the race of ``free_port`` on a shared machine."""
    for attempt in range(PORT_ATTEMPTS):
        started: list[ClusterNode] = []
        try:
            start_nodes(started)
            return started
        except BaseException as exc:
            stop(started)
            if not isinstance(exc, PortTaken) or attempt == PORT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def listening(host: str, port: int, timeout: float, process: subprocess.Popen[bytes]) -> bool:
    """The node at ``host:port`` answers an OPTIONS to itself over UDP and listens on
    TCP (a port taken on one transport only fails the node: never taken for ready)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if _answers_udp(host, port):
            try:
                socket.create_connection((host, port), 0.2).close()
                return process.poll() is None
            except OSError:
                pass
        time.sleep(0.1)
    return False


def _answers_udp(host: str, port: int) -> bool:
    branch = f"z9hG4bKready{time.monotonic_ns()}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        try:
            sock.bind(("127.0.0.1", 0))
            local = sock.getsockname()[1]
            sock.sendto(
                (f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
                 f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch={branch};rport\r\n"
                 f"From: <sip:ready@probe.invalid>;tag=r\r\nTo: <sip:{host}:{port}>\r\n"
                 f"Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                 "Content-Length: 0\r\n\r\n").encode(),
                (host, port),
            )  # fmt: skip
            return sock.recv(65535).startswith(b"SIP/2.0 ")
        except OSError:
            return False


def stop(nodes: list[ClusterNode]) -> None:
    """SIGTERM every node (each drains), SIGKILL what lingers past 10 s."""
    for node in nodes:
        if node.process.poll() is None:
            node.process.send_signal(signal.SIGTERM)
    for node in nodes:
        try:
            node.process.wait(10)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait(5)
