"""What the fault tests share: a ``Lab`` per test, a MariaDB a test may kill.

Every server a fault test kills is one it started: its own redis-server (the
``Lab``), its own mariadbd (``own_mariadb``), its own sipline nodes and sipp
peers. Tests that kill no database take ``mysql_url`` (a database of their own
on the session's MariaDB) before ``lab``, so their nodes are gone before it is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.faults.lab import Lab
from sipline.storage.testing import MariaDBUnavailable, PrivateMariaDB


@pytest.fixture
def lab(sipp_bin: str, redis_server_bin: str, tmp_path: Path) -> Iterator[Lab]:
    """The test's processes; whatever is left of them is killed at the end."""
    made = Lab(tmp_path / "lab", sipp_bin)
    yield made
    made.close()


@pytest.fixture
def own_mariadb(mariadbd_bin: str) -> Iterator[PrivateMariaDB]:
    """A mariadbd of the test's own, started; the test may kill and restart it."""
    server = PrivateMariaDB(mariadbd_bin)
    try:
        server.start()
    except MariaDBUnavailable as exc:
        server.remove()
        pytest.fail(f"no private MariaDB: {exc}", pytrace=False)
    yield server
    server.remove()
