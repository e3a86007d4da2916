"""``sipline account set|list|audit`` as an operator runs them, on both databases."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sysconfig
import time
from pathlib import Path

import pytest

from sipline.storage import open_database
from sipline.storage.accounts import Accounts, AuditRow

REPO = Path(__file__).resolve().parents[2]
SIPLINE = Path(sysconfig.get_path("scripts")) / "sipline"
COMMAND = [str(SIPLINE)]


def sipline(url: str, *args: str, redis: str = "") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIPLINE_")}
    env = clean | {"SIPLINE_DATABASE__URL": url, "SIPLINE_REDIS__URL": redis}
    return subprocess.run(
        [*COMMAND, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def ok(url: str, *args: str, redis: str = "") -> str:
    result = sipline(url, *args, redis=redis)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def migrated_url(database_url: str) -> str:
    ok(database_url, "db", "migrate")
    return database_url


def test_set_creates_then_changes_and_list_shows_licence_and_grace(migrated_url: str) -> None:
    assert ok(migrated_url, "account", "set", "ACME", "--licence", "10") == (
        "ACME: licence 10, grace 48 h\n"
    )
    assert ok(migrated_url, "account", "set", "BETA", "--licence", "2", "--grace-hours", "0") == (
        "BETA: licence 2, grace 0 h\n"
    )
    assert ok(migrated_url, "account", "set", "ACME", "--licence", "12") == (
        "ACME: licence 12, grace 48 h\n"
    )
    lines = ok(migrated_url, "account", "list").splitlines()
    assert lines[0].split() == ["ACCOUNT", "LICENCE", "GRACE", "STATE", "CALLS"]
    assert lines[1].split() == ["ACME", "12", "48", "h", "(default)", "within", "-"]
    assert lines[2].split() == ["BETA", "2", "0", "h", "within", "-"]


def test_a_new_account_needs_a_licence_and_bad_values_are_refused(migrated_url: str) -> None:
    missing = sipline(migrated_url, "account", "set", "NEW")
    assert missing.returncode == 2 and "give it a --licence" in missing.stderr
    negative = sipline(migrated_url, "account", "set", "NEW", "--licence", "-1")
    assert negative.returncode == 2 and "whole number" in negative.stderr
    assert "Traceback" not in missing.stderr + negative.stderr


def test_set_starts_a_fresh_grace_period_unless_keep_grace(migrated_url: str) -> None:
    ok(migrated_url, "account", "set", "ACME", "--licence", "1", "--grace-hours", "1")
    two_hours_ago = time.time() - 2 * 3600

    async def start_grace() -> None:
        db = await open_database(migrated_url)
        try:
            await Accounts(db).start_grace("ACME", two_hours_ago)  # 1 h grace: enforced
            rows = [AuditRow("ACME", 1_000_000.0, 2, 1, True, "call-1", "b2bua-1")]
            await Accounts(db).add_audit(rows)
        finally:
            await db.close()

    asyncio.run(start_grace())
    ended = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(two_hours_ago + 3600))
    assert f"enforced since {ended}" in ok(migrated_url, "account", "list")
    ok(migrated_url, "account", "set", "ACME", "--grace-hours", "default", "--keep-grace")
    ends = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(two_hours_ago + 48 * 3600))
    assert f"in grace until {ends}" in ok(migrated_url, "account", "list")
    ok(migrated_url, "account", "set", "ACME", "--licence", "2")
    assert ok(migrated_url, "account", "list").splitlines()[1].split()[-2] == "within"

    audit = ok(migrated_url, "account", "audit", "ACME").splitlines()
    assert audit[0].split() == ["TIME", "ACCOUNT", "CALLS", "LICENCE", "OUTCOME", "NODE", "CALL-ID"]
    assert audit[1].split() == [
        "1970-01-12T13:46:40Z", "ACME", "2", "1", "allowed", "(grace)", "b2bua-1", "call-1",
    ]  # fmt: skip


def test_list_shows_the_calls_up_across_nodes_with_redis(migrated_url: str, redis_url: str) -> None:
    import redis

    ok(migrated_url, "account", "set", "ACME", "--licence", "5")
    with redis.Redis.from_url(redis_url) as client:  # two nodes' counts, one long expired
        client.hset(
            "sipline:b2bua:calls:ACME",
            mapping={"b2bua-1.x": 1, "b2bua-1.x:exp": 4e9, "b2bua-2.y": 1, "b2bua-2.y:exp": 4e9,
                     "gone.z": 5, "gone.z:exp": 1.0},
        )  # fmt: skip
    line = ok(migrated_url, "account", "list", redis=redis_url).splitlines()[1]
    assert line.split()[-1] == "2"


def test_help_explains_when_grace_starts_again() -> None:
    text = sipline("sqlite:///unused.db", "account", "set", "--help").stdout
    assert "--keep-grace" in text and "starts afresh only when this command is run" in text
