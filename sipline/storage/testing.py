"""A MariaDB server to test against: the one given, or a private one.

For test suites and benchmarks, which need real MySQL and must not depend on
one being pre-started, nor on the machine's own server (a test that kills
or fills its database must only ever touch an instance it started). ``shared_mariadb()`` finds or starts the server once per
process; each caller then makes its own throwaway databases with
``fresh_database()``, named after the process so parallel runs never collide.

- ``SIPLINE_TEST_MYSQL_URL=mysql://user:pass@host:port/db``: use that server (it
  must be reachable; the database part is not used).
- ``SIPLINE_TEST_MYSQL_URL=private`` or unset: start a private server.

A private server is ``mariadb-install-db`` into a temporary directory and
``mariadbd --skip-grant-tables`` on a free port of 127.0.0.1, with its unix
socket in that directory; it is stopped and removed when the last user leaves.
A fault test that kills its database starts a ``PrivateMariaDB`` of its own:
``kill()`` (SIGKILL, as a crash) and ``restart()`` (same port, same data).
"""

from __future__ import annotations

import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pymysql

from sipline.storage.database import StorageError
from sipline.storage.mysql import parse_mysql_url

ENV_VAR = "SIPLINE_TEST_MYSQL_URL"
PRIVATE = "private"
START_TIMEOUT = 60.0
_RUN = f"sipline_test_{os.getpid()}_{secrets.token_hex(3)}"


class MariaDBUnavailable(RuntimeError):
    """No server could be reached or started; the message says why."""


@dataclass(frozen=True)
class MariaDB:
    host: str
    port: int
    user: str = "root"
    password: str = field(default="", repr=False)
    _databases: Iterator[int] = field(default_factory=itertools.count, repr=False, compare=False)

    def connect(self, timeout: float = 5.0) -> pymysql.Connection:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            autocommit=True,
            connect_timeout=timeout,
        )

    def url(self, database: str) -> str:
        credentials = quote(self.user, safe="")
        if self.password:
            credentials += ":" + quote(self.password, safe="")
        return f"mysql://{credentials}@{self.host}:{self.port}/{database}"

    def fresh_database(self) -> str:
        """Create an empty database with a name unique to this process; its URL."""
        name = f"{_RUN}_{next(self._databases)}"
        self._admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        self._admin(f"DROP DATABASE IF EXISTS `{parse_mysql_url(url).database}`")

    def _admin(self, sql: str) -> None:
        with self.connect() as conn, conn.cursor() as cursor:
            cursor.execute(sql)


def unreachable(server: MariaDB) -> str | None:
    """Why ``server`` cannot be used, or None when it can."""
    try:
        server.connect(timeout=2.0).close()
    except (pymysql.err.MySQLError, OSError) as exc:
        return str(exc)
    return None


def server_at(url: str) -> MariaDB:
    address = parse_mysql_url(url)
    return MariaDB(address.host, address.port, address.user, address.password)


class PrivateMariaDB:
    """A mariadbd of our own in a temporary directory, reachable over TCP on 127.0.0.1.

    With ``server_id`` it writes a binary log (row-based) so that another
    private instance can replicate it (``replicate``): a primary and its
    replica, as a cluster's database runs. ``restart`` stops it and starts it
    again on the same port with the same data (a database restart)."""

    def __init__(self, mariadbd: str, server_id: int | None = None) -> None:
        self.mariadbd = mariadbd
        self.server_id = server_id
        self.install_db = _program("mariadb-install-db") or _program("mysql_install_db")
        self.directory = Path(tempfile.mkdtemp(prefix="sipline-mariadb-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None  # once started: restart() listens there again

    def start(self) -> MariaDB:
        if self.install_db is None:
            raise MariaDBUnavailable("mariadb-install-db is not installed (mariadb-server)")
        self._install()
        for _ in range(3):  # another process may take the free port before mariadbd binds it
            server = self._run(_free_port())
            if server is not None:
                return server
        raise MariaDBUnavailable(f"mariadbd did not start; its log ends:\n{self._log_tail()}")

    def kill(self) -> None:
        """SIGKILL the server, as a crash: no shutdown, InnoDB recovers at the next start."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self, down: float = 0.0) -> MariaDB:
        """Kill it (a crash, nothing flushed) if it runs, wait ``down`` seconds, and start
        it again on its port with its data."""
        if self.port is None:
            raise MariaDBUnavailable("restart() before start()")
        self.kill()
        time.sleep(down)
        server = self._run(self.port)
        if server is None:
            raise MariaDBUnavailable(f"mariadbd did not start again:\n{self._log_tail()}")
        return server

    def replicate(self, primary: MariaDB) -> None:
        """Make this (started, empty) instance a replica of ``primary`` from its
        first binary log on (both started empty: everything after is copied)."""
        assert self.port is not None
        server = MariaDB("127.0.0.1", self.port)
        with server.connect() as conn, conn.cursor() as cursor:
            cursor.execute(
                f"CHANGE MASTER TO MASTER_HOST='{primary.host}', MASTER_PORT={primary.port},"
                " MASTER_USER='root', MASTER_PASSWORD='', MASTER_USE_GTID=no, MASTER_CONNECT_RETRY=1,"
                " MASTER_LOG_FILE='binlog.000001', MASTER_LOG_POS=4"
            )
            cursor.execute("START SLAVE")

    def _run(self, port: int) -> MariaDB | None:
        self.process = subprocess.Popen(
            self._command(port), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        server = MariaDB("127.0.0.1", port)
        if self._wait_ready(server):
            self.port = port
            return server
        self.stop()
        return None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _install(self) -> None:
        data = self.directory / "data"
        command = [
            str(self.install_db),
            "--no-defaults",
            f"--datadir={data}",
            f"--user={_user()}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            f"--tmpdir={self._tmpdir()}",  # passed on to the bootstrap mariadbd
        ]
        # Once more on a fresh directory: on a machine where others bootstrap their
        # own instances at the same moment, an install has failed on a temporary
        # table it could not remove ("Unknown table 'mysql.tmp_proxies_priv'").
        for _ in range(2):
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                return
            shutil.rmtree(data, ignore_errors=True)
        output = (done.stdout + done.stderr)[-2000:]
        raise MariaDBUnavailable(f"mariadb-install-db failed ({done.returncode}):\n{output}")

    def _tmpdir(self) -> Path:
        """The instance's own temporary directory (never the machine's /tmp, shared)."""
        tmp = self.directory / "tmp"
        tmp.mkdir(exist_ok=True)
        return tmp

    def _command(self, port: int) -> list[str]:
        d = self.directory
        return [
            self.mariadbd,
            "--no-defaults",
            f"--datadir={d / 'data'}",
            f"--socket={d / 'mariadbd.sock'}",
            f"--pid-file={d / 'mariadbd.pid'}",
            f"--log-error={d / 'error.log'}",
            f"--port={port}",
            f"--tmpdir={self._tmpdir()}",
            "--bind-address=127.0.0.1",
            f"--user={_user()}",
            "--skip-grant-tables",
            "--skip-name-resolve",
            *self._binlog(),
            "--innodb-buffer-pool-size=32M",
            # Test data need not survive a power cut; commits then cost no fsync.
            "--innodb-flush-log-at-trx-commit=2",
        ]

    def _binlog(self) -> list[str]:
        if self.server_id is None:
            return ["--skip-log-bin"]
        return [f"--server-id={self.server_id}", f"--log-bin={self.directory / 'data' / 'binlog'}",
                "--binlog-format=ROW", "--log-slave-updates"]  # fmt: skip

    def _wait_ready(self, server: MariaDB) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            if unreachable(server) is None:
                return True
            time.sleep(0.1)
        return False

    def _log_tail(self) -> str:
        try:
            return (self.directory / "error.log").read_text(errors="replace")[-2000:]
        except OSError as exc:
            return f"(no log: {exc})"


_shared: MariaDB | None = None
_private: PrivateMariaDB | None = None
_users = 0


@contextmanager
def shared_mariadb(find_mariadbd: Callable[[], str]) -> Iterator[MariaDB]:
    """The process's server, found or started on first use; a private one stops after the last.

    ``find_mariadbd`` gives the mariadbd path and is called only to start a private server.
    """
    global _shared, _users
    if _shared is None:
        _shared = _find_or_start(os.environ.get(ENV_VAR, ""), find_mariadbd)
    _users += 1
    try:
        yield _shared
    finally:
        _users -= 1
        if _users == 0:
            _release()


def _release() -> None:
    global _shared, _private
    if _private is not None:
        _private.remove()
    _shared = _private = None


def _find_or_start(setting: str, find_mariadbd: Callable[[], str]) -> MariaDB:
    global _private
    if setting and setting != PRIVATE:
        server = _given(setting)
        reason = unreachable(server)
        if reason:
            raise MariaDBUnavailable(f"{ENV_VAR} names a server that cannot be used: {reason}")
        return server
    _private = PrivateMariaDB(find_mariadbd())
    try:
        return _private.start()
    except BaseException:
        _private.remove()
        _private = None
        raise


def _given(url: str) -> MariaDB:
    try:
        return server_at(url)
    except StorageError as exc:
        raise MariaDBUnavailable(f"{ENV_VAR}: {exc}") from None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _user() -> str:
    # mariadbd refuses to run as root unless told to, and cannot switch to another user unless root.
    return pwd.getpwuid(os.geteuid()).pw_name


def _program(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
