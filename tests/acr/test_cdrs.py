"""The CDR writer: batches into the database, no CDR lost while MariaDB is down (Redis stream or
local journal, written back when it returns and after a restart), refused rows to error_queue.

MariaDB "goes down" behind a TCP relay of the test's own: cutting the relay closes every
connection and refuses new ones, as a stopped server does, without stopping the shared server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio

from acr.cdrs import STREAM, CdrWriter, Journal
from acr.model import Cdr
from acr.store import AcrStore
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


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "journal"


@pytest.fixture
async def writer(migrated: Database, journal: Path) -> AsyncIterator[CdrWriter]:
    writer = CdrWriter(migrated, redis_url=None, journal_dir=journal, batch_rows=3, batch_ms=20)
    await writer.start()
    yield writer
    await writer.close()


# -- the database up, on SQLite and MariaDB -------------------------------------------------


async def test_cdrs_are_written_in_batches(writer: CdrWriter, migrated: Database) -> None:
    for n in range(7):
        writer.add(cdr(n))
    await until(lambda: writer.written == 7)
    assert await AcrStore(migrated).cdrs(10) == [cdr(n) for n in range(7)]
    assert writer.spooled == writer.rejected == 0


async def test_close_writes_what_is_queued(migrated: Database, journal: Path) -> None:
    writer = CdrWriter(
        migrated, redis_url=None, journal_dir=journal, batch_rows=100, batch_ms=60_000
    )
    await writer.start()
    writer.add(cdr(1))
    writer.add(cdr(2))
    await writer.close()
    assert await call_ids(migrated) == ["call-1", "call-2"]


async def test_a_refused_row_goes_to_error_queue_and_the_rest_of_its_batch_is_written(
    writer: CdrWriter, migrated: Database
) -> None:
    refused = [cdr(2, caller=None)]  # NOT NULL
    if migrated.dialect == "mysql":  # SQLite does not hold VARCHAR to its length; MariaDB does
        refused.append(cdr(3, callee="4" * 65))
    for row in [cdr(1), *refused, cdr(4)]:
        writer.add(row)
    await until(lambda: writer.written + writer.rejected == 2 + len(refused))
    assert await call_ids(migrated) == ["call-1", "call-4"]
    errors = await AcrStore(migrated).errors("cdrs")
    assert [payload["call_id"] for _, _, payload in errors] == [c.call_id for c in refused]
    assert all(reason.startswith("INSERT cdrs failed") for _, reason, _ in errors)
    assert errors[0][2]["caller"] is None and errors[0][2]["cost"] == 0.72  # the whole row
    assert writer.rejected == len(refused) and writer.spooled == 0


async def test_what_the_journal_holds_from_before_is_written_at_start_and_only_once(
    migrated: Database, journal: Path
) -> None:
    await Journal(journal).append([cdr(1), cdr(2)])
    await Journal(journal).append([cdr(2), cdr(3)])  # call-2 twice: a batch replayed after a crash
    writer = CdrWriter(migrated, redis_url=None, journal_dir=journal, batch_rows=10, batch_ms=20)
    await writer.start()
    try:
        await until(lambda: not writer.backlog)
    finally:
        await writer.close()
    assert await call_ids(migrated) == ["call-1", "call-2", "call-3"]
    assert Journal(journal).files() == []


async def test_an_unreadable_journal_line_is_set_aside_not_fatal(
    migrated: Database, journal: Path
) -> None:
    await Journal(journal).append([cdr(1)])
    [path] = Journal(journal).files()
    path.write_bytes(path.read_bytes() + b"{not json\n")
    writer = CdrWriter(migrated, redis_url=None, journal_dir=journal, batch_rows=10, batch_ms=20)
    await writer.start()
    await until(lambda: not writer.backlog)
    await writer.close()
    assert await call_ids(migrated) == ["call-1"]
    assert (journal / "unreadable.jsonl").read_bytes() == b"{not json\n"


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


def down_writer(db: Database, journal: Path, redis_url: str | None = None) -> CdrWriter:
    return CdrWriter(
        db, redis_url=redis_url, journal_dir=journal, batch_rows=3, batch_ms=20, retry_s=0.1
    )


async def test_cdrs_wait_in_the_journal_while_mariadb_is_down_and_are_written_when_it_is_back(
    relayed: Database, direct: Database, outage: Outage, journal: Path
) -> None:
    writer = down_writer(relayed, journal)
    await writer.start()
    try:
        writer.add(cdr(0))
        await until(lambda: writer.written == 1)
        await outage.cut()
        for n in range(1, 6):
            writer.add(cdr(n))
        await until(lambda: writer.spooled == 5, timeout=10)
        assert writer.down and len(Journal(journal).files()) >= 2
        assert await call_ids(direct) == ["call-0"]
        for n in range(6, 8):  # more calls end while it is down
            writer.add(cdr(n))
        await until(lambda: writer.spooled == 7, timeout=10)
        await outage.restore()
        await until(lambda: not writer.backlog, timeout=10)
    finally:
        await writer.close()
    assert sorted(await call_ids(direct)) == [f"call-{n}" for n in range(8)]
    assert Journal(journal).files() == [] and writer.rejected == 0


async def test_with_redis_cdrs_wait_in_the_stream_and_either_node_writes_them_back(
    relayed: Database, direct: Database, outage: Outage, journal: Path, redis_url: str
) -> None:
    writer = down_writer(relayed, journal, redis_url)
    await writer.start()
    await outage.cut()
    for n in range(4):
        writer.add(cdr(n))
    await until(lambda: writer.spooled == 4, timeout=10)
    await writer.close()  # this node stops while the database is down
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await client.xlen(STREAM) == 4
        assert Journal(journal).files() == []
        # The other node, which reaches the database, writes them back at its start.
        other = CdrWriter(
            direct, redis_url=redis_url, journal_dir=journal.with_name("other"), batch_rows=3,
            batch_ms=20,
        )  # fmt: skip
        await other.start()
        await until(lambda: not other.backlog, timeout=10)
        await other.close()
        assert await client.xlen(STREAM) == 0
    finally:
        await client.aclose()
    assert sorted(await call_ids(direct)) == [f"call-{n}" for n in range(4)]


async def test_with_redis_away_too_cdrs_wait_in_the_journal(
    relayed: Database, direct: Database, outage: Outage, journal: Path
) -> None:
    writer = down_writer(relayed, journal, f"redis://127.0.0.1:{free_port()}/0")
    await writer.start()
    await outage.cut()
    writer.add(cdr(1))
    await until(lambda: writer.spooled == 1, timeout=10)
    assert len(Journal(journal).files()) == 1
    await outage.restore()
    await until(lambda: writer.written == 1, timeout=10)
    await writer.close()
    assert await call_ids(direct) == ["call-1"]


async def test_the_journal_outlives_a_restart_with_the_database_down(
    relayed: Database, direct: Database, outage: Outage, journal: Path
) -> None:
    writer = down_writer(relayed, journal)
    await writer.start()
    await outage.cut()
    writer.add(cdr(1))
    writer.add(cdr(2))
    await writer.close()  # stops before the database is back: the CDRs are on disk
    assert writer.spooled == 2 and len(Journal(journal).files()) == 1
    # The node restarts, now reaching the database.
    restarted = down_writer(direct, journal)
    await restarted.start()
    await until(lambda: not restarted.backlog, timeout=10)
    await restarted.close()
    assert await call_ids(direct) == ["call-1", "call-2"]
