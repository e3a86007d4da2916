"""Test plumbing for the registrar's tests: ports, clocks, waiting, database locks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from proxy.registrar import RegistrarService
from sipline.config import Settings
from sipline.net.handler import Handler
from sipline.net.node import Node
from sipline.net.ports import free_port
from sipline.sip.address import Address
from sipline.sip.message import Request, Response
from sipline.sip.transaction import ClientTransaction, ServerTransaction, Transaction
from sipline.storage import Database, open_database
from tests.support import FakeClock

HOST = "127.0.0.1"



async def until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met in time")



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


# -- a node running the registrar ------------------------------------------------------


class RegistrarHandler(Handler):
    """What the proxy's handler does for the registrar's part: REGISTER in, ping outcomes back."""

    def __init__(self, service: RegistrarService) -> None:
        self.service = service

    def on_request(self, node: Node, request: Request, txn: ServerTransaction | None,
                   source: Address) -> None:  # fmt: skip
        if txn is not None and request.method == "REGISTER":
            self.service.registrar.on_register(node, request, txn, source)

    def on_response(self, node: Node, response: Response, txn: ClientTransaction | None,
                    source: Address) -> None:  # fmt: skip
        nat = self.service.nat
        if nat is not None and txn is not None and nat.owns(txn):
            nat.on_response(node, response, txn, source)

    def on_timeout(self, node: Node, txn: Transaction) -> None:
        nat = self.service.nat
        if nat is not None and nat.owns(txn):
            nat.on_timeout(node, txn)

    def on_tick(self, node: Node, now: float) -> None:
        self.service.registrar.on_tick(node, now)  # the sweep; the tests tick the pinger


def settings_for(url: str, **sections: dict[str, Any]) -> Settings:
    values: dict[str, Any] = {
        "node": {"name": "node-a", "drain_timeout": 0.2},
        "sip": {"host": HOST, "port": free_port(), "server_header": "sipline-test"},
        "database": {"url": url},
        "proxy": {"domains": ["example.com"]},
        "registrar": {"commit_ms": 20, "sweep_interval": 0.05, "min_expires": 60},
        "auth": {"secret": "test secret"},
        "nat": {"ping_interval": 30, "ping_failures": 3},
    }
    for name, section in sections.items():
        values[name] = values.get(name, {}) | section
    return Settings(**values)


@dataclass
class Proxy:
    service: RegistrarService
    node: Node
    clock: FakeClock
    db: Database

    @property
    def address(self) -> tuple[str, int]:
        local = self.node.local_address("UDP")
        return (local.host, local.port)


@asynccontextmanager
async def running(
    db: Database, url: str, clock: FakeClock, **sections: dict[str, Any]
) -> AsyncIterator[Proxy]:
    settings = settings_for(url, **sections)
    service = RegistrarService(settings, db, clock=clock)
    await service.start()
    node = Node(settings, RegistrarHandler(service))
    await node.start()
    try:
        yield Proxy(service, node, clock, db)
    finally:
        await node.stop()
        await service.close()
