"""SQLite backend (aiosqlite): the embedded default, one file in WAL mode.

One connection serves the whole process; an asyncio lock keeps a transaction
from interleaving with other coroutines' statements. Other processes (the
CLI while a node runs) wait up to ``BUSY_TIMEOUT_MS`` for the write lock.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from sipline.storage.database import Database, Params, Queries, Row, StorageError, storage_error

BUSY_TIMEOUT_MS = 5000
MEMORY = ":memory:"

# aiosqlite logs every call at DEBUG with its arguments, which may be HA1 values.
logging.getLogger("aiosqlite").setLevel(logging.INFO)


def _translate(sql: str, params: Iterable[object], exc: Exception) -> StorageError:
    return storage_error(sql, params, exc, integrity=isinstance(exc, sqlite3.IntegrityError))


class _Connection(Queries):
    """Statements on the connection as it stands, with no locking of their own."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        try:
            async with self._conn.execute(sql, params) as cursor:
                return cursor.rowcount
        except sqlite3.Error as exc:
            raise _translate(sql, params, exc) from None

    async def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        rows = list(rows)
        try:
            async with self._conn.executemany(sql, rows) as cursor:
                return cursor.rowcount
        except sqlite3.Error as exc:
            raise _translate(sql, itertools.chain.from_iterable(rows), exc) from None

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            return list(await self._conn.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise _translate(sql, params, exc) from None

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self._conn = conn
        self._queries = _Connection(conn)
        self._lock = asyncio.Lock()
        self.path = path

    def __repr__(self) -> str:
        return f"<SqliteDatabase {self.path}>"

    async def execute(self, sql: str, params: Params = ()) -> int:
        async with self._lock:
            return await self._queries.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        # One transaction for the batch, not one commit (and fsync) per row.
        async with self.transaction() as tx:
            return await tx.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._lock:
            return await self._queries.fetchall(sql, params)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        async with self._lock:
            return await self._queries.fetchone(sql, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Queries]:
        async with self._lock:
            # IMMEDIATE takes the write lock now, so two processes cannot both
            # read under a shared lock and then deadlock upgrading it.
            await self._queries.execute("BEGIN IMMEDIATE")
            try:
                yield self._queries
                await self._queries.execute("COMMIT")
            except BaseException:
                await self._rollback()
                raise

    async def _rollback(self) -> None:
        try:
            await self._queries.execute("ROLLBACK")
        except StorageError:
            pass  # no transaction left to undo; the original error is the one to report

    async def stream(
        self, sql: str, params: Params = (), batch: int = 1000
    ) -> AsyncIterator[list[Row]]:
        # A reader of its own (WAL: readers never block the writer), so a long
        # export does not hold the one connection everything else waits for.
        if self.path == MEMORY:
            yield await self.fetchall(sql, params)
            return
        try:
            reader = await aiosqlite.connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open SQLite database {self.path}: {exc}") from None
        try:
            async with reader.execute(sql, params) as cursor:
                while rows := await cursor.fetchmany(batch):
                    yield list(rows)
        except sqlite3.Error as exc:
            raise _translate(sql, params, exc) from None
        finally:
            await reader.close()

    async def close(self) -> None:
        await self._conn.close()


async def open_sqlite(path: str) -> SqliteDatabase:
    """Open (creating it and its directory if needed) the SQLite file at ``path``."""
    try:
        if path != MEMORY:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit BEGIN; transaction() issues its own.
        conn = await aiosqlite.connect(path, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(f"cannot open SQLite database {path}: {exc}") from None
    db = SqliteDatabase(conn, path)
    try:
        await _configure(db)
    except StorageError:
        await db.close()
        raise
    return db


async def _configure(db: SqliteDatabase) -> None:
    await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    await db.fetchone("PRAGMA journal_mode = WAL")
    # NORMAL is durable against a crash of the process; in WAL mode only a power
    # loss can take back the last commits, never corrupt the file.
    await db.execute("PRAGMA synchronous = NORMAL")
    await db.execute("PRAGMA foreign_keys = ON")
