"""Database fixtures: a fresh SQLite file and a fresh database on a real MariaDB server.

``mariadb`` (session) is the server: ``SIPLINE_TEST_MYSQL_URL``, else the local
one at 127.0.0.1:3306, else a private instance started for the session (see
sipline.storage.testing). It fails, never skips, when none can be had.

These fixtures depend only on tests/conftest.py (``mariadbd_bin``) and are
meant to move there once other packages' tests need a database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sipline.storage import Database, migrate, open_database
from sipline.storage.testing import MariaDB, MariaDBUnavailable, shared_mariadb

BACKENDS = ("sqlite", "mysql")


@pytest.fixture(scope="session")
def mariadb(request: pytest.FixtureRequest) -> Iterator[MariaDB]:
    """A reachable MariaDB server for the whole session."""
    problem = None
    try:
        with shared_mariadb(lambda: request.getfixturevalue("mariadbd_bin")) as server:
            yield server
    except MariaDBUnavailable as exc:
        problem = str(exc)
    if problem:
        pytest.fail(f"no MariaDB server for the tests: {problem}", pytrace=False)


@pytest.fixture
def mysql_url(mariadb: MariaDB) -> Iterator[str]:
    """The URL of an empty database of its own on ``mariadb``, dropped after the test."""
    url = mariadb.fresh_database()
    yield url
    mariadb.drop_database(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a SQLite file that does not exist yet, in a directory that does not either."""
    return f"sqlite:///{tmp_path / 'db' / 'sipline.db'}"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database on each backend in turn."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """The open, empty database of ``database_url``."""
    db = await open_database(database_url)
    yield db
    await db.close()


@pytest.fixture
async def migrated(database: Database) -> Database:
    """``database`` with every migration applied."""
    await migrate(database)
    return database
