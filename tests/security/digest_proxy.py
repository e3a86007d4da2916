"""A real ``sipline proxy`` for the digest attacks (tests/security/test_digest_*.py):
its own SQLite database with alice and bob, settings from the test, its /metrics
and its log (``bench.proxystack.start_proxy``); and phones on UDP sockets of any
127.x address.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from bench.proxystack import HOST, Phone, RunningProxy, provision, start_proxy
from sipline.sip.ids import new_branch
from tests.proxy.phone import UdpPhone

ALICE = Phone("alice", "correct horse")
BOB = Phone("bob", "battery staple")


@asynccontextmanager
async def running_proxy(
    tmp_path: Path, phones: Sequence[Phone] = (ALICE, BOB), **settings: str
) -> AsyncIterator[RunningProxy]:
    """``sipline proxy`` on a free port; ``settings`` are SIPLINE_* variables,
    such as ``AUTH__SECRET="..."``. It logs at info: a line per refusal."""
    url = f"sqlite:///{tmp_path / f'proxy-{time.monotonic_ns()}.db'}"
    await provision(url, phones)
    extra = {"SIPLINE_LOG__LEVEL": "info"}
    extra |= {f"SIPLINE_{key}": value for key, value in settings.items()}
    proxy = await asyncio.to_thread(start_proxy, url, tmp_path, extra, metrics=True)
    try:
        yield proxy
    finally:
        await asyncio.to_thread(proxy.stop)


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
