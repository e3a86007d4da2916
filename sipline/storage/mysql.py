"""MySQL/MariaDB backend (aiomysql): a pool of utf8mb4 connections, autocommit off.

With autocommit off every call is a transaction that ends in COMMIT, reads
included: an open read would otherwise keep a stale REPEATABLE READ snapshot
and a metadata lock (blocking migrations) on a pooled connection.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import aiomysql
import pymysql
import pymysql.constants

from sipline.storage.database import (
    Database,
    Params,
    Queries,
    Row,
    StorageError,
    redact,
    storage_error,
)

POOL_SIZE = 10
CONNECT_TIMEOUT = 10
# Below MariaDB's default wait_timeout (8 h), so the server never drops an idle pooled connection.
POOL_RECYCLE = 3600
_DRIVER_ERRORS = (pymysql.err.MySQLError, OSError)


@dataclass(frozen=True)
class MysqlAddress:
    """Where to connect, from ``mysql://user:password@host:port/database``."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str


def parse_mysql_url(url: str) -> MysqlAddress:
    try:
        parts = urlsplit(url)
        port = parts.port or 3306
    except ValueError as exc:
        raise StorageError(f"bad MySQL URL {redact(url)!r}: {exc}") from None
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database or parts.query or parts.fragment:
        raise StorageError(
            f"bad MySQL URL {redact(url)!r}: expected mysql://user:password@host:port/database"
        )
    return MysqlAddress(
        host=parts.hostname or "127.0.0.1",
        port=port,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=database,
    )


@functools.lru_cache(maxsize=1024)
def _placeholders(sql: str) -> str:
    # PyMySQL interpolates with %: a literal % must be doubled, ? becomes %s.
    return sql.replace("%", "%%").replace("?", "%s")


def _translate(sql: str, params: Iterable[object], exc: Exception) -> StorageError:
    return storage_error(sql, params, exc, integrity=isinstance(exc, pymysql.err.IntegrityError))


class _Connection(Queries):
    """Statements on one pooled connection, inside its current transaction."""

    def __init__(self, conn: aiomysql.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        try:
            async with self._conn.cursor() as cursor:
                return await cursor.execute(_placeholders(sql), tuple(params))
        except _DRIVER_ERRORS as exc:
            raise _translate(sql, params, exc) from None

    async def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        rows = [tuple(row) for row in rows]
        if not rows:
            return 0
        try:
            async with self._conn.cursor() as cursor:
                return await cursor.executemany(_placeholders(sql), rows)
        except _DRIVER_ERRORS as exc:
            raise _translate(sql, itertools.chain.from_iterable(rows), exc) from None

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            async with self._conn.cursor() as cursor:
                await cursor.execute(_placeholders(sql), tuple(params))
                return list(await cursor.fetchall())
        except _DRIVER_ERRORS as exc:
            raise _translate(sql, params, exc) from None

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None


class MysqlDatabase(Database):
    dialect = "mysql"

    def __init__(self, pool: aiomysql.Pool, address: MysqlAddress) -> None:
        self._pool = pool
        self.address = address

    def __repr__(self) -> str:
        a = self.address
        return f"<MysqlDatabase {a.user}@{a.host}:{a.port}/{a.database}>"

    async def execute(self, sql: str, params: Params = ()) -> int:
        async with self.transaction() as tx:
            return await tx.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        async with self.transaction() as tx:
            return await tx.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        async with self.transaction() as tx:
            return await tx.fetchall(sql, params)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        async with self.transaction() as tx:
            return await tx.fetchone(sql, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Queries]:
        conn = await self._acquire()
        try:
            yield _Connection(conn)
            await _commit(conn)
        except BaseException:
            await _rollback(conn)
            raise
        finally:
            self._pool.release(conn)

    async def stream(
        self, sql: str, params: Params = (), batch: int = 1000
    ) -> AsyncIterator[list[Row]]:
        conn = await self._acquire()
        done = False
        try:
            cursor = await conn.cursor(aiomysql.SSCursor)
            try:
                await cursor.execute(_placeholders(sql), tuple(params))
                while rows := await cursor.fetchmany(batch):
                    yield list(rows)
                done = True
            except _DRIVER_ERRORS as exc:
                raise _translate(sql, params, exc) from None
            if done:
                await cursor.close()
                await _commit(conn)
        finally:
            if not done:
                # Rows left unread would have to be read to the end before the
                # connection could serve again: drop it instead.
                conn.close()
            self._pool.release(conn)

    async def _acquire(self) -> aiomysql.Connection:
        try:
            return await self._pool.acquire()
        except _DRIVER_ERRORS as exc:
            raise StorageError(f"cannot connect to MySQL at {self._where()}: {exc}") from None

    def _where(self) -> str:
        return f"{self.address.host}:{self.address.port}/{self.address.database}"

    async def close(self) -> None:
        self._pool.close()
        await self._pool.wait_closed()


async def _commit(conn: aiomysql.Connection) -> None:
    try:
        await conn.commit()
    except _DRIVER_ERRORS as exc:
        raise _translate("COMMIT", (), exc) from None


async def _rollback(conn: aiomysql.Connection) -> None:
    try:
        await conn.rollback()
    except _DRIVER_ERRORS:
        conn.close()  # a connection that cannot roll back must not go back to the pool


async def open_mysql(url: str, pool_size: int = POOL_SIZE) -> MysqlDatabase:
    """A pool of connections to the database of ``url``; fails now if none can be made."""
    address = parse_mysql_url(url)
    try:
        pool = await aiomysql.create_pool(
            minsize=1,
            maxsize=pool_size,
            host=address.host,
            port=address.port,
            user=address.user,
            password=address.password,
            db=address.database,
            charset="utf8mb4",
            autocommit=False,
            connect_timeout=CONNECT_TIMEOUT,
            pool_recycle=POOL_RECYCLE,
            # Rows matched, not rows changed, as SQLite counts them: an UPDATE that
            # finds its row but changes nothing still reports 1.
            client_flag=pymysql.constants.CLIENT.FOUND_ROWS,
            # LOAD DATA LOCAL INFILE: acr.deck loads a rate deck from a file it wrote,
            # several times faster than INSERT. The server is our trusted system of record.
            local_infile=True,
        )
    except _DRIVER_ERRORS as exc:
        raise StorageError(f"cannot connect to MySQL at {redact(url)}: {exc}") from None
    return MysqlDatabase(pool, address)
