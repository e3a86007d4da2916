"""The CDR writer: the journal's CDRs into the database in batches, within cdr_batch_ms;
none lost while MariaDB is down (they wait on disk, are written when it returns, and
through a restart, once); refused rows to error_queue.

MariaDB "goes down" behind a TCP relay of the test's own: cutting the relay closes every
connection and refuses new ones, as a stopped server does, without stopping the shared server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from acr.cdrs import CdrWriter
from acr.journal import Journal
from sipline.carriers.model import Cdr
from sipline.carriers.store import AcrStore
from sipline.net.ports import free_port
from sipline.storage import Database, migrate, open_database
from sipline.storage.mysql import parse_mysql_url
from tests.support import until


def cdr(n: int, **changes: object) -> Cdr:
    values: dict[str, object] = dict(
        call_id=f"call-{n}", account="ACME", caller="alice", callee="442071234567",
        prefix="4420", carrier="acme", gateway="127.0.0.1:5090", rate=0.6,
        start=1_700_000_000.0 + n, end=1_700_000_070.0 + n, final_code=200, node="primary",
        answer=1_700_000_003.0 + n, first_increment=6, next_increment=6, billed_seconds=72,
        cost=0.72, extra={"pdd": "0.4"},
    )  # fmt: skip
    return Cdr(**(values | changes))  # type: ignore[arg-type]


async def call_ids(db: Database) -> list[str]:
    return [c.call_id for c in await AcrStore(db).cdrs(1000)]


class Node:
    """The journal and the writer of one ACR node's run, as acr.server wires them."""

    def __init__(self, db: Database, directory: Path, **options: float) -> None:
        self.journal = Journal(directory)
        self.writer = CdrWriter(db, self.journal, **options)  # type: ignore[arg-type]

    async def start(self) -> Node:
        await self.journal.open()
        await self.writer.start()
        return self

    async def close(self) -> None:
        await self.writer.close()
        await self.journal.close()


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "journal"


@pytest.fixture
async def node(migrated: Database, journal: Path) -> AsyncIterator[Node]:
    started = await Node(migrated, journal, batch_rows=3, batch_ms=20).start()
    yield started
    await started.close()


# -- the database up, on SQLite and MariaDB -------------------------------------------------


async def test_cdrs_are_written_in_batches(node: Node, migrated: Database) -> None:
    for n in range(7):
        node.journal.add(cdr(n))
    await until(lambda: node.writer.written == 7)
    assert await AcrStore(migrated).cdrs(10) == [cdr(n) for n in range(7)]
    assert node.writer.rejected == 0 and not node.writer.backlog


async def test_a_lone_cdr_is_written_within_cdr_batch_ms_not_at_the_next_retry(
    migrated: Database, journal: Path
) -> None:
    node = await Node(migrated, journal, batch_rows=500, batch_ms=50, retry_s=60).start()
    try:
        await asyncio.sleep(0.2)  # the writer is idle
        start = time.monotonic()
        node.journal.add(cdr(1))
        await until(lambda: node.writer.written == 1, timeout=10)
        assert time.monotonic() - start < 5  # not retry_s: the writer waited 1 s, then 60
    finally:
        await node.close()


async def test_close_writes_what_is_queued(migrated: Database, journal: Path) -> None:
    node = await Node(migrated, journal, batch_rows=100, batch_ms=60_000).start()
    node.journal.add(cdr(1))
    node.journal.ended(cdr(2))
    await node.close()
    assert await call_ids(migrated) == ["call-1", "call-2"]


async def test_a_refused_row_goes_to_error_queue_and_the_rest_of_its_batch_is_written(
    node: Node, migrated: Database
) -> None:
    refused = [cdr(2, caller=None)]  # NOT NULL
    if migrated.dialect == "mysql":  # SQLite does not hold VARCHAR to its length; MariaDB does
        refused.append(cdr(3, callee="4" * 65))
    for row in [cdr(1), *refused, cdr(4)]:
        node.journal.add(row)
    writer = node.writer
    await until(lambda: writer.written + writer.rejected == 2 + len(refused))
    assert await call_ids(migrated) == ["call-1", "call-4"]
    errors = await AcrStore(migrated).errors("cdrs")
    assert [payload["call_id"] for _, _, payload in errors] == [c.call_id for c in refused]
    assert all(reason.startswith("INSERT cdrs failed") for _, reason, _ in errors)
    assert errors[0][2]["caller"] is None and errors[0][2]["cost"] == 0.72  # the whole row
    assert writer.rejected == len(refused)


async def test_what_the_journal_holds_from_before_is_written_at_start_and_only_once(
    migrated: Database, journal: Path
) -> None:
    first = Journal(journal)
    await first.open()
    for n in (1, 2, 3):
        first.add(cdr(n))
    await first.close()  # no writer ran: as if it was killed before its batch
    for _ in range(2):  # started twice: the second start finds them written
        node = await Node(migrated, journal, batch_rows=2, batch_ms=20).start()
        await until(lambda: not node.writer.backlog)  # noqa: B023
        await node.close()
    assert await call_ids(migrated) == ["call-1", "call-2", "call-3"]


async def test_a_batch_written_twice_is_skipped_by_the_unique_key(
    migrated: Database, journal: Path
) -> None:
    node = await Node(migrated, journal, batch_rows=10, batch_ms=20).start()
    node.journal.add(cdr(1))
    await until(lambda: node.writer.written == 1)
    node.journal.cursor = (node.journal.cursor[0], 0)  # as if the checkpoint never got to disk
    node.journal.unread = 1
    node.journal.add(cdr(2))
    await until(lambda: node.writer.written == 3)
    await node.close()
    assert await call_ids(migrated) == ["call-1", "call-2"]


# -- MariaDB down --------------------------------------------------------------------------------


class Outage:
    """A TCP relay to a server that the test can cut (as if the server stopped) and restore."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, upstream_writer}
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self.writers.discard(writer)


@pytest.fixture
async def direct(mysql_url: str) -> AsyncIterator[Database]:
    """The test's own connection to the database, never cut."""
    db = await open_database(mysql_url)
    await migrate(db)
    yield db
    await db.close()


@pytest.fixture
async def outage(mysql_url: str) -> AsyncIterator[Outage]:
    address = parse_mysql_url(mysql_url)
    outage = Outage(address.host, address.port)
    await outage.restore()
    yield outage
    with contextlib.suppress(AssertionError):
        await outage.cut()


@pytest.fixture
async def relayed(mysql_url: str, outage: Outage, direct: Database) -> AsyncIterator[Database]:
    """The database as the writer reaches it: through the relay."""
    address = parse_mysql_url(mysql_url)
    db = await open_database(mysql_url.replace(f":{address.port}/", f":{outage.port}/"))
    yield db
    await db.close()


def down_node(db: Database, journal: Path) -> Node:
    return Node(db, journal, batch_rows=3, batch_ms=20, retry_s=0.1)


async def test_cdrs_wait_on_disk_while_mariadb_is_down_and_are_written_when_it_is_back(
    relayed: Database, direct: Database, outage: Outage, journal: Path
) -> None:
    node = await down_node(relayed, journal).start()
    try:
        node.journal.add(cdr(0))
        await until(lambda: node.writer.written == 1)
        await outage.cut()
        for n in range(1, 8):
            node.journal.add(cdr(n))
        await until(lambda: node.writer.down, timeout=10)
        await node.journal.sync()
        assert node.journal.unread == 7 and await call_ids(direct) == ["call-0"]
        await outage.restore()
        await until(lambda: not node.writer.backlog, timeout=10)
    finally:
        await node.close()
    assert sorted(await call_ids(direct)) == [f"call-{n}" for n in range(8)]
    assert node.writer.rejected == 0


async def test_the_journal_outlives_a_restart_with_the_database_down(
    relayed: Database, direct: Database, outage: Outage, journal: Path
) -> None:
    node = await down_node(relayed, journal).start()
    await outage.cut()
    node.journal.add(cdr(1))
    node.journal.ended(cdr(2))
    await node.close()  # stops before the database is back: the CDRs are on disk
    assert node.journal.unread == 2
    # The node restarts, now reaching the database.
    restarted = await down_node(direct, journal).start()
    await until(lambda: not restarted.writer.backlog, timeout=10)
    await restarted.close()
    assert await call_ids(direct) == ["call-1", "call-2"]
