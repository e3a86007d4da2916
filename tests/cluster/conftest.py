"""What the two-proxy cluster tests share: alice and bob, and two real proxies
(127.0.0.1 and 127.0.0.2, one port) on the test's MariaDB and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.clusterstack import ClusterNode, on_free_ports, start, stop
from bench.proxystack import Phone, free_port, provision

ALICE = Phone("alice", "alice-Secret1")
BOB = Phone("bob", "bob-Secret2")
HOSTS = ("127.0.0.1", "127.0.0.2")


@pytest.fixture
def proxies(mysql_url: str, redis_url: str, tmp_path: Path) -> Iterator[list[ClusterNode]]:
    asyncio.run(provision(mysql_url, [ALICE, BOB]))

    def two(started: list[ClusterNode]) -> None:
        port = free_port()
        peers = [f"{host}:{port}" for host in HOSTS]
        for n, host in enumerate(HOSTS, 1):
            started.append(start(f"proxy-{n}", host, port, mysql_url, redis_url, peers, tmp_path))

    started = on_free_ports(two)
    try:
        yield started
    finally:
        stop(started)
