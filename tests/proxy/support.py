"""Test plumbing for the registrar's tests: ports, clocks, waiting, database locks."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sipline.storage import open_database

HOST = "127.0.0.1"


class FakeClock:
    """Wall-clock time that moves only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met in time")


def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((HOST, 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((HOST, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


@asynccontextmanager
async def write_lock_held(url: str) -> AsyncIterator[None]:
    """Another connection holds the locations table's write lock.

    On SQLite the transaction does it (BEGIN IMMEDIATE takes the database's lock)."""
    other = await open_database(url)
    try:
        async with other.transaction() as tx:
            if other.dialect == "mysql":
                await tx.execute("LOCK TABLES locations WRITE")
            yield
            if other.dialect == "mysql":
                await tx.execute("UNLOCK TABLES")
    finally:
        await other.close()
