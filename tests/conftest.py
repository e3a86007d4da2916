"""Fixtures shared by the whole suite.

External programs are fixtures that fail, never skip, when the program is
missing: ``make test`` installs them, so a missing one means a broken set-up.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def mariadbd_bin() -> str:
    """Path of mariadbd, for tests that start their own instance."""
    return require_program("mariadbd", "mariadb-server")
