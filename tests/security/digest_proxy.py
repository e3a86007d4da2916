"""A real ``sipline proxy`` for the digest attacks (tests/security/test_digest_*.py):
its own SQLite database with alice and bob, settings from the test, its /metrics
and its log; and phones on UDP sockets of any 127.x address.

(tests/security/net_proxy.py of the flood tests starts the proxy the same way;
once both are on one branch, one of the two can serve both.)
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

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
from sipline.storage import open_database
from tests.proxy.phone import UdpPhone

ALICE = Phone("alice", "correct horse")
BOB = Phone("bob", "battery staple")


@dataclass
class RunningProxy:
    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    url: str
    log: Path

    @property
    def address(self) -> tuple[str, int]:
        return (HOST, self.port)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def metric(self, name: str) -> float:
        """A sample of /metrics without labels (0 when absent)."""
        with urllib.request.urlopen(
            f"http://{HOST}:{self.metrics_port}/metrics", timeout=2
        ) as page:
            for line in page.read().decode().splitlines():
                key, _, value = line.rpartition(" ")
                if key == name:
                    return float(value)
        return 0.0

    async def add(self, *phones: Phone) -> None:
        """Provision subscribers while the proxy runs (as ``sipline subscriber add`` does)."""
        await provision(self.url, phones)

    async def bindings(self) -> list[tuple[str, str]]:
        """(aor, contact) of every live binding stored (not the tombstones of removed ones)."""
        db = await open_database(self.url)
        try:
            rows = await db.fetchall(
                "SELECT aor, contact FROM locations WHERE expires_at > 0 ORDER BY aor, contact"
            )
            return [(row[0], row[1]) for row in rows]
        finally:
            await db.close()


@asynccontextmanager
async def running_proxy(
    tmp_path: Path, phones: Sequence[Phone] = (ALICE, BOB), **settings: str
) -> AsyncIterator[RunningProxy]:
    """``sipline proxy`` on a free port; ``settings`` are SIPLINE_* variables,
    such as ``AUTH__SECRET="..."``. It logs at info: a line per refusal."""
    url = f"sqlite:///{tmp_path / f'proxy-{time.monotonic_ns()}.db'}"
    await provision(url, phones)
    port, metrics_port = free_port(), free_port()
    extra = {"SIPLINE_METRICS__PORT": str(metrics_port), "SIPLINE_LOG__LEVEL": "info"}
    extra |= {f"SIPLINE_{key}": value for key, value in settings.items()}
    log = tmp_path / f"proxy-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            proxy_command(), cwd=REPO, env=proxy_env(port, url, extra),
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    proxy = RunningProxy(process, port, metrics_port, url, log)
    try:
        if not await asyncio.to_thread(wait_until_answering, port, 20, process):
            pytest.fail(f"sipline proxy did not start:\n{proxy.log_text()}", pytrace=False)
        yield proxy
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


class PhoneAt(UdpPhone):
    """A phone whose socket is on any 127.x address (an attacker on another host)."""

    @classmethod
    async def bound(cls, host: str = HOST) -> PhoneAt:
        loop = asyncio.get_running_loop()
        _, phone = await loop.create_datagram_endpoint(cls, local_addr=(host, 0))
        return phone

    @property
    def host(self) -> str:
        assert self.transport is not None
        return str(self.transport.get_extra_info("sockname")[0])

    @property
    def via(self) -> str:
        return f"SIP/2.0/UDP {self.host}:{self.port};branch={new_branch()};rport"
