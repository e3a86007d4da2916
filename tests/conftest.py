"""Fixtures shared by the whole suite.

External programs are fixtures that fail, never skip, when the program is
missing: ``make test`` installs them, so a missing one means a broken set-up.

Databases: ``database_url`` / ``database`` / ``migrated`` give an empty
database on each backend in turn (a fresh SQLite file, and a fresh database
on a real MariaDB server); ``mariadb`` (session) is that server:
``SIPLINE_TEST_MYSQL_URL``, else a
private instance started for the session (see sipline.storage.testing). It
fails, never skips, when none can be had.

Redis: ``redis_url`` is an empty database (flushed) on a private
redis-server started once per session on a free port; tests that need
several clients of one Redis (two ACR nodes, two B2BUAs) share that URL.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from bench.serving import stop
from sipline.net.ports import free_port
from sipline.storage import Database, migrate, open_database
from sipline.storage.testing import MariaDB, MariaDBUnavailable, shared_mariadb

# Property tests judge correctness, never speed: on a loaded machine (the suite
# shares 2 cores with sipp, MariaDB and Redis) one example may take seconds.
hypothesis_settings.register_profile("sipline", deadline=None)
hypothesis_settings.load_profile("sipline")

BACKENDS = ("sqlite", "mysql")

# Debian puts some daemons in sbin, which is not on every PATH.
_EXTRA_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def find_program(name: str) -> str | None:
    """The path of an installed program, looking in the sbin directories too."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _EXTRA_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file():
            return str(candidate)
    return None


def require_program(name: str, package: str) -> str:
    path = find_program(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed (Debian package {package}); "
            "run `make test`, which installs it",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def sipp_bin() -> str:
    """Path of the sipp binary."""
    return require_program("sipp", "sip-tester")


@pytest.fixture(scope="session")
def baresip_bin() -> str:
    """Path of the baresip binary."""
    return require_program("baresip", "baresip-core")


@pytest.fixture(scope="session")
def redis_server_bin() -> str:
    """Path of redis-server, for tests that start their own instance."""
    return require_program("redis-server", "redis-server")


class RedisServer:
    """The session's private redis-server; ``alive`` starts it again (same port) when a
    test stopped it (tests/relay/test_publish.py shuts it down to play Redis failing)."""

    def __init__(self, binary: str) -> None:
        self.port = free_port()
        self.command = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        self.command += ["--save", "", "--appendonly", "no", "--databases", "64"]
        self.process = self._start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def _start(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return process
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    pytest.fail(f"redis-server did not start on port {self.port}", pytrace=False)
                time.sleep(0.05)

    def alive(self) -> None:
        if self.process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1.0).close()
                return
            except OSError:  # told to shut down, and on its way out
                self.process.wait(5)
        self.process = self._start()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(5)


@pytest.fixture(scope="session")
def redis_instance(redis_server_bin: str) -> Iterator[RedisServer]:
    server = RedisServer(redis_server_bin)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(redis_instance: RedisServer) -> str:
    """A private redis-server for the session: its ``redis://127.0.0.1:PORT``."""
    return redis_instance.url


_redis_databases = iter(range(1_000_000))


@pytest.fixture
def redis_url(redis_instance: RedisServer) -> str:
    """An empty database of the session's private Redis, such as ``redis://127.0.0.1:PORT/3``."""
    return empty_redis_database(redis_instance)


def empty_redis_database(redis_instance: RedisServer) -> str:
    """The URL of the next database of the session's private Redis, flushed (for a
    fixture of a wider scope than ``redis_url``)."""
    import redis

    redis_instance.alive()
    url = f"{redis_instance.url}/{next(_redis_databases) % 64}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


@pytest.fixture(scope="session")
def mariadbd_bin() -> str:
    """Path of mariadbd, for tests that start their own instance."""
    return require_program("mariadbd", "mariadb-server")


# -- databases -------------------------------------------------------------------------


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


def port_range(pairs: int = 50) -> tuple[int, int]:
    """An even-aligned range of ``pairs`` RTP/RTCP port pairs picked at random
    (relays skip a port that is taken)."""
    low = random.randrange(20_000, 60_000, 2)
    return low, low + 2 * pairs - 1


@pytest.fixture
def rtpengine() -> Iterator[int]:
    """Real rtpengine in userspace mode; its ng port. Fails (never skips) when not installed."""
    binary = require_program("rtpengine", "rtpengine-daemon")
    port = free_port()
    low, high = port_range()
    command = [
        binary, "--config-file=none", "--foreground", "--log-stderr", "--log-level=3",
        "--interface=127.0.0.1", f"--listen-ng=127.0.0.1:{port}", "--table=-1",
        f"--port-min={low}", f"--port-max={high}", "--delete-delay=0",
    ]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        yield port
    finally:
        stop(process)
