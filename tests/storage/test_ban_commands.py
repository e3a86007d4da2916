"""``sipline ban list|add|remove`` end to end, as an operator runs them: against a
fresh database on each backend, and against a real Redis when ``[redis]`` is set."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sysconfig
import time
from pathlib import Path

import pytest

from sipline.storage.bans import RedisBans

REPO = Path(__file__).resolve().parents[2]
SIPLINE = Path(sysconfig.get_path("scripts")) / "sipline"
UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def sipline(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIPLINE_")}
    return subprocess.run(
        [str(SIPLINE), *args], cwd=REPO, env=clean | env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def ok(env: dict[str, str], *args: str) -> str:
    result = sipline(env, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def fails(env: dict[str, str], *args: str, status: int) -> str:
    result = sipline(env, *args)
    assert result.returncode == status, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr


@pytest.fixture(params=["sqlite", "mysql", "redis"])
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment of a ``sipline ban`` on a migrated database, or on a Redis."""
    if request.param == "redis":
        return {"SIPLINE_REDIS__URL": request.getfixturevalue("redis_url")}
    env = {"SIPLINE_DATABASE__URL": request.getfixturevalue(f"{request.param}_url")}
    ok(env, "db", "migrate")
    return env


def test_an_operator_adds_lists_and_removes_bans(store_env: dict[str, str]) -> None:
    assert ok(store_env, "ban", "add", "192.0.2.1") == "banned 192.0.2.1 until removed\n"
    added = ok(store_env, "ban", "add", "2001:db8:1:2::99", "--for", "15m")
    assert re.fullmatch(rf"banned 2001:db8:1:2::/64 until {UTC}\n", added)
    lines = ok(store_env, "ban", "list").splitlines()
    assert lines[0].split() == ["ADDRESS", "REASON", "BY", "SINCE", "UNTIL"]
    assert re.fullmatch(rf"192\.0\.2\.1 +manual +operator +{UTC} +removed", lines[1])
    assert re.fullmatch(rf"2001:db8:1:2::/64 +manual +operator +{UTC} +{UTC}", lines[2])
    assert ok(store_env, "ban", "remove", "192.0.2.1") == "removed the ban of 192.0.2.1\n"
    assert "192.0.2.1 is not banned" in fails(store_env, "ban", "remove", "192.0.2.1", status=1)
    assert len(ok(store_env, "ban", "list").splitlines()) == 2


def test_bad_values_are_refused_with_status_2(store_env: dict[str, str]) -> None:
    assert "bad address 'example.com'" in fails(store_env, "ban", "add", "example.com", status=2)
    assert "bad duration '5x'" in fails(store_env, "ban", "add", "192.0.2.1", "--for", "5x", status=2)
    assert ok(store_env, "ban", "list").splitlines()[1:] == []


def test_a_ban_for_a_time_ends_then(redis_url: str) -> None:
    env = {"SIPLINE_REDIS__URL": redis_url}
    ok(env, "ban", "add", "198.51.100.4", "--for", "90s")

    async def active() -> list[float | None]:
        store = RedisBans(redis_url)
        try:
            return [ban.ends_at for ban in await store.active(time.time())]
        finally:
            await store.close()

    (ends,) = asyncio.run(active())
    assert ends is not None and 85 < ends - time.time() <= 90


def test_a_store_that_cannot_be_reached_is_a_message_and_status_1() -> None:
    env = {"SIPLINE_REDIS__URL": "redis://127.0.0.1:1/0"}
    assert "Redis failed" in fails(env, "ban", "list", status=1)
