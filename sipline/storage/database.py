"""The database interface every role uses: the same calls on SQLite and MySQL/MariaDB.

SQL is written once with ``?`` placeholders and portable types; each backend
translates the placeholders for its driver, so a literal ``?`` must not appear
in the SQL text (pass it as a value). Rows come back as tuples.

Each call made on the ``Database`` itself is atomic on its own; several calls
that must stand or fall together go through ``transaction()``::

    async with db.transaction() as tx:
        await tx.execute("UPDATE accounts SET licence = ? WHERE name = ?", (10, "ACME"))
        await tx.execute("DELETE FROM subscribers WHERE account = ?", ("ACME",))

Inside the block use ``tx``, never ``db``: on SQLite the block holds the one
connection, so a call on ``db`` would wait for the block to end.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

Row = tuple[Any, ...]
Params = Sequence[Any]


class StorageError(Exception):
    """A database operation failed; the message names the operation, never bound values."""


class InvalidValue(ValueError):
    """A value given to storage is unacceptable (a malformed AOR, an empty password)."""


class IntegrityError(StorageError):
    """A constraint rejected the change (a duplicate unique key, a NULL in a NOT NULL column)."""


class Queries(ABC):
    """Statements on one connection (a transaction) or on the database (each call atomic)."""

    @abstractmethod
    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; the number of rows it changed."""

    @abstractmethod
    async def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        """Run one statement once per parameter row; the number of rows changed."""

    @abstractmethod
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """All rows of a query."""

    @abstractmethod
    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of a query, or None; meant for queries returning at most one row."""


class Database(Queries):
    """An open database: a pool of connections (MySQL) or one file (SQLite)."""

    dialect: ClassVar[str]

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Queries]:
        """Commit when the block ends normally, roll back when it raises."""

    @abstractmethod
    def stream(self, sql: str, params: Params = (), batch: int = 1000) -> AsyncIterator[list[Row]]:
        """The rows of a query in batches of at most ``batch``, read as they are consumed
        (a server-side cursor on a connection of its own): a million rows are never in
        memory at once. Stop early inside ``contextlib.aclosing(...)``: closing the
        iterator releases the cursor (and its connection) at once."""

    @abstractmethod
    async def close(self) -> None:
        """Release every connection; the object is unusable afterwards."""


async def open_database(url: str) -> Database:
    """Open ``sqlite:///relative/path``, ``sqlite:////absolute/path`` or ``mysql://...``."""
    # The backends are imported on demand: a node on SQLite never loads the MySQL driver.
    if url.startswith("sqlite://"):
        from sipline.storage.sqlite import open_sqlite

        return await open_sqlite(sqlite_path(url))
    if url.startswith("mysql://"):
        from sipline.storage.mysql import open_mysql

        return await open_mysql(url)
    raise StorageError(f"unsupported database URL {redact(url)!r}: expected sqlite:// or mysql://")


def sqlite_path(url: str) -> str:
    """The file of a sqlite:// URL: ``sqlite:///data/x.db`` is relative, ``sqlite:////x.db`` absolute."""
    path = url.removeprefix("sqlite://")
    if not path.startswith("/") or path == "/":
        raise StorageError(f"bad SQLite URL {url!r}: expected sqlite:///path/to/file.db")
    return path[1:]


def redact(url: str) -> str:
    """The URL with its password replaced, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))


_VERB = re.compile(r"\s*(\w+)")
_TABLE = re.compile(
    r"\b(?:FROM|INTO|UPDATE|JOIN|ON|TABLE(?:\s+IF\s+(?:NOT\s+)?EXISTS)?)\s+[`\"]?(\w+)",
    re.IGNORECASE,
)


def operation(sql: str) -> str:
    """A short name for a statement, such as ``INSERT subscribers``, for error messages."""
    verb = _VERB.match(sql)
    table = _TABLE.search(sql)
    words = [verb.group(1).upper() if verb else "SQL"]
    if table:
        words.append(table.group(1))
    return " ".join(words)


def scrub(message: str, params: Iterable[Any]) -> str:
    """``message`` with every bound text value blanked out.

    Drivers quote values back in some errors (MySQL syntax errors show the
    statement with its values inlined), and a value may be a digest HA1.
    """
    for value in params:
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and len(value) >= 3:
            message = message.replace(value, "***")
    return message


def storage_error(
    sql: str, params: Iterable[Any], exc: BaseException, *, integrity: bool = False
) -> StorageError:
    """The StorageError to raise in place of driver error ``exc`` from running ``sql``."""
    kind = IntegrityError if integrity else StorageError
    reason = scrub(str(exc), params) or type(exc).__name__
    return kind(f"{operation(sql)} failed: {reason}")
