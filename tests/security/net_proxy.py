"""A real ``sipline proxy`` for the net attacks (tests/security/test_net_*.py): its
own SQLite database with subscribers, ``[limits]`` and Redis from the test, its
/metrics, its log and its CPU time (``bench.proxystack.start_proxy``); and raw
sockets from any 127.x address."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.proxystack import HOST, Phone, RunningProxy, provision, start_proxy
from sipline.sip.ids import new_branch

ALICE = Phone("alice", "alice-Secret1")


@contextmanager
def running_proxy(tmp_path: Path, **settings: str) -> Iterator[RunningProxy]:
    """``sipline proxy`` on a free port; ``settings`` are SIPLINE_* variables, such as
    ``LIMITS__FLOOD_DENSITY="50"``."""
    url = f"sqlite:///{tmp_path / f'proxy-{time.monotonic_ns()}.db'}"
    asyncio.run(provision(url, [ALICE]))
    extra = {f"SIPLINE_{key}": value for key, value in settings.items()}
    proxy = start_proxy(url, tmp_path, extra, metrics=True)
    try:
        yield proxy
    finally:
        proxy.stop()


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
