"""``python -m bench.proxyserve call|register``: the proxy as the bench runner's server.

The runner starts a server on a free port (``SIPLINE_SIP__PORT``), waits until
its ``ready`` check passes, loads it with sipp and samples the CPU of the
process it started. So this process becomes
``sipline proxy`` (exec: same pid) once a helper it starts has the database
ready; the helper then, beside the proxy:

- for ``call``, registers bob from a port and runs a sipp UAS there
  (``call_uas.xml``), then leaves a marker file that ``ready`` (the runner's
  readiness check, with an OPTIONS to the proxy itself) looks for;
- when the proxy has exited, stops that UAS and drops the database.

``call``: a SQLite file in a temporary directory with alice (the caller, from
``bench/scenarios/call-caller.csv``) and bob. ``register``: a fresh
database on MariaDB (``SIPLINE_TEST_MYSQL_URL``, else a private one the
helper starts and stops) with
``SIPLINE_BENCH_USERS`` (default 60000) numbered users, written to
``bench/results/register-users.csv`` for sipp's ``-inf``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import serving
from bench.proxystack import (
    REPO,
    Phone,
    free_port,
    numbered_phones,
    provision,
    proxy_command,
    proxy_env,
    register_phones,
    users_csv,
    wait_until_answering,
)
from sipline.storage import open_database

SCENARIOS = REPO / "bench" / "scenarios"
CALLER_CSV = SCENARIOS / "call-caller.csv"
REGISTER_CSV = REPO / "bench" / "results" / "register-users.csv"
DEFAULT_USERS = 60000
START_TIMEOUT = 60.0  # seconds for the proxy to answer once exec'd
UAS_TIMEOUT = "3600s"  # a UAS left behind by a killed helper still ends
BOB = Phone("bob", "bob-pw")
NAME = "proxy"


def ready(port: int) -> bool:
    """The helper of the proxy on ``port`` has its phones up, and the proxy answers OPTIONS."""
    return serving.ready(NAME, port)


def main(argv: list[str]) -> int:
    if argv[:1] == ["helper"]:
        return helper(argv[1], int(argv[2]), int(argv[3]))
    if len(argv) != 1 or argv[0] not in ("call", "register"):
        print("usage: python -m bench.proxyserve call|register", file=sys.stderr)
        return 2
    return serve(argv[0])


def serve(kind: str) -> int:
    """Start the helper, wait for its database URL, become the proxy."""
    port = int(os.environ["SIPLINE_SIP__PORT"])
    helper = serving.start_helper("bench.proxyserve", kind, port)
    url = serving.first_line(helper)
    if not url:
        return helper.wait() or 1
    extra = serving.sipline_settings() | {"SIPLINE_DATABASE__URL": url}
    serving.become(proxy_command(), proxy_env(port, url, extra))


def helper(kind: str, port: int, parent: int) -> int:
    workdir = Path(tempfile.mkdtemp(prefix=f"sipline-bench-{kind}-"))
    try:
        with database(kind, workdir) as url:
            asyncio.run(provision(url, phones_for(kind)))
            print(url, flush=True)
            os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # the runner's server log
            run_beside_proxy(kind, port, parent, workdir)
            print(f"proxyserve: {asyncio.run(stored_bindings(url))} bindings stored", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


async def stored_bindings(url: str) -> int:
    db = await open_database(url)
    try:
        row = await db.fetchone("SELECT COUNT(*) FROM locations")
        return int(row[0]) if row else 0
    finally:
        await db.close()


def phones_for(kind: str) -> list[Phone]:
    if kind == "call":
        user, domain, password = CALLER_CSV.read_text().splitlines()[1].split(";")
        return [Phone(user, password, domain), BOB]
    phones = numbered_phones(int(os.environ.get("SIPLINE_BENCH_USERS", DEFAULT_USERS)))
    REGISTER_CSV.parent.mkdir(parents=True, exist_ok=True)
    REGISTER_CSV.write_text(users_csv(phones))
    return phones


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "call":
        yield f"sqlite:///{workdir / 'sipline.db'}"
        return
    from sipline.storage.testing import shared_mariadb

    def mariadbd() -> str:
        return shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin:/sbin") or "mariadbd"

    with shared_mariadb(mariadbd) as server:
        url = server.fresh_database()
        try:
            yield url
        finally:
            server.drop_database(url)


def run_beside_proxy(kind: str, port: int, parent: int, workdir: Path) -> None:
    sipp = shutil.which("sipp") or "/usr/bin/sipp"
    if not serving.wait_for(lambda: wait_until_answering(port, 0.5), parent, START_TIMEOUT):
        return
    with callee(kind, sipp, port, workdir):
        serving.beside(NAME, port, parent)


@contextmanager
def callee(kind: str, sipp: str, port: int, workdir: Path) -> Iterator[None]:
    """For ``call``: bob registered from a port and a sipp UAS answering there."""
    if kind != "call":
        yield
        return
    uas_port = free_port()
    register_phones(sipp, SCENARIOS / "register.xml", port, [BOB], uas_port, workdir)
    uas = subprocess.Popen(
        [sipp, "-sf", str(SCENARIOS / "call_uas.xml"), "-s", BOB.user,
         "-i", "127.0.0.1", "-p", str(uas_port), "-timeout", UAS_TIMEOUT, "-nostdin",
         "-trace_err", "-error_file", str(workdir / "uas-errors.log")],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield
    finally:
        serving.stop(uas)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
