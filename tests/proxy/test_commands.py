"""``sipline db migrate`` and ``sipline subscriber ...`` end to end, as an operator runs them.

Each test runs the installed console script against a fresh SQLite file and a
fresh database on a real MariaDB, with debug logging on so that anything
written about a subscriber is there to be checked for secrets.
"""

from __future__ import annotations

import os
import subprocess
import sysconfig
from pathlib import Path

import pytest

from sipline.sip.auth import MD5, SHA256, compute_ha1
from sipline.storage.schema import load_migrations

REPO = Path(__file__).resolve().parents[2]
SIPLINE = Path(sysconfig.get_path("scripts")) / "sipline"
PASSWORD = "s3cret-Pa55"


def sipline(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIPLINE_")}
    env = clean | {"SIPLINE_DATABASE__URL": url, "SIPLINE_LOG__LEVEL": "debug"}
    return subprocess.run(
        [str(SIPLINE), *args],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(url: str, *args: str, stdin: str | None = None) -> str:
    result = sipline(url, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


def fails(url: str, *args: str, status: int) -> str:
    result = sipline(url, *args)
    assert result.returncode == status, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr


@pytest.fixture
def migrated_url(database_url: str) -> str:
    ok(database_url, "db", "migrate")
    return database_url


def test_migrate_creates_the_schema_then_has_nothing_to_do(database_url: str) -> None:
    shipped = load_migrations()
    last = f"{shipped[-1].version:03d}"
    applied = "".join(f"applied migration {m.version:03d} ({m.name})\n" for m in shipped)
    assert applied.startswith("applied migration 001 (initial)\n")
    assert ok(database_url, "db", "migrate") == f"{applied}schema at version {last}\n"
    assert ok(database_url, "db", "migrate") == f"schema at version {last}; nothing to apply\n"


def test_add_list_remove(migrated_url: str) -> None:
    assert (
        ok(
            migrated_url,
            "subscriber",
            "add",
            "alice@example.com",
            "--password",
            PASSWORD,
            "--account",
            "ACME",
        )
        == "added alice@example.com\n"
    )
    added = ok(
        migrated_url,
        "subscriber",
        "add",
        "sip:bob@Example.com",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert added == "added bob@example.com\n"

    header, *rows = ok(migrated_url, "subscriber", "list").splitlines()
    assert header.split() == ["AOR", "ACCOUNT", "CREATED", "ALIASES"]
    assert [row.split()[:2] for row in rows] == [
        ["alice@example.com", "ACME"],
        ["bob@example.com", "-"],
    ]

    assert (
        ok(migrated_url, "subscriber", "remove", "alice@example.com")
        == "removed alice@example.com\n"
    )
    assert [row.split()[0] for row in ok(migrated_url, "subscriber", "list").splitlines()[1:]] == [
        "bob@example.com"
    ]


def test_an_empty_list_is_just_the_header(migrated_url: str) -> None:
    assert ok(migrated_url, "subscriber", "list").split() == ["AOR", "ACCOUNT", "CREATED", "ALIASES"]


def test_aliases_are_set_shown_and_cleared(migrated_url: str) -> None:
    ok(migrated_url, "subscriber", "add", "alice@example.com", "--password", PASSWORD,
       "--alias", "15550100")  # fmt: skip
    assert ok(migrated_url, "subscriber", "list").splitlines()[1].split()[-1] == "15550100"
    assert (
        ok(migrated_url, "subscriber", "aliases", "alice@example.com", "asmith", "a@other.org")
        == "alice@example.com aliases: a@other.org asmith\n"
    )
    listed = ok(migrated_url, "subscriber", "list").splitlines()[1].split()
    assert listed[-2:] == ["a@other.org", "asmith"]
    assert ok(migrated_url, "subscriber", "aliases", "alice@example.com") == (
        "alice@example.com aliases: -\n"
    )
    assert "bad alias" in fails(
        migrated_url, "subscriber", "aliases", "alice@example.com", "a b", status=2
    )
    assert "no subscriber" in fails(
        migrated_url, "subscriber", "aliases", "bob@example.com", "x", status=1
    )


def test_ha1_and_password_appear_in_no_output_or_log(migrated_url: str) -> None:
    secrets = [PASSWORD, *(compute_ha1("alice", "example.com", PASSWORD, a) for a in (MD5, SHA256))]
    runs = [
        sipline(
            migrated_url,
            "subscriber",
            "add",
            "alice@example.com",
            "--password-stdin",
            stdin=PASSWORD,
        ),
        sipline(
            migrated_url,
            "subscriber",
            "add",
            "alice@example.com",
            "--password-stdin",
            stdin=PASSWORD,
        ),
        sipline(migrated_url, "subscriber", "list"),
        sipline(migrated_url, "subscriber", "remove", "alice@example.com"),
    ]
    assert [run.returncode for run in runs] == [0, 1, 0, 0]
    assert "event=subscriber_added" in runs[0].stderr  # the log is there, without secrets
    for run in runs:
        for secret in secrets:
            assert secret not in run.stdout
            assert secret not in run.stderr


def test_a_duplicate_subscriber_is_refused(migrated_url: str) -> None:
    ok(migrated_url, "subscriber", "add", "alice@example.com", "--password", PASSWORD)
    stderr = fails(
        migrated_url, "subscriber", "add", "alice@EXAMPLE.com", "--password", "x", status=1
    )
    assert "sipline: subscriber alice@example.com already exists" in stderr


def test_removing_an_unknown_subscriber_is_refused(migrated_url: str) -> None:
    stderr = fails(migrated_url, "subscriber", "remove", "nobody@example.com", status=1)
    assert "sipline: no subscriber nobody@example.com" in stderr


def test_a_bad_aor_is_refused(migrated_url: str) -> None:
    stderr = fails(migrated_url, "subscriber", "add", "alice", "--password", PASSWORD, status=2)
    assert "sipline: bad AOR 'alice': expected user@domain" in stderr
    stderr = fails(migrated_url, "subscriber", "remove", "alice@exa mple.com", status=2)
    assert "bad AOR" in stderr


def test_an_unmigrated_database_is_refused_with_advice(database_url: str) -> None:
    stderr = fails(database_url, "subscriber", "list", status=1)
    assert "run `sipline db migrate` first" in stderr


def test_an_unreachable_database_is_an_error_without_the_password() -> None:
    stderr = fails("mysql://sipline:hunter2@127.0.0.1:1/sipline", "subscriber", "list", status=1)
    assert "sipline: cannot connect to MySQL" in stderr
    assert "hunter2" not in stderr


def test_a_password_is_required(tmp_path: Path) -> None:
    stderr = fails(f"sqlite:///{tmp_path}/x.db", "subscriber", "add", "alice@example.com", status=2)
    assert "one of the arguments --password --password-stdin is required" in stderr


def test_help_lists_the_commands(tmp_path: Path) -> None:
    top = ok(f"sqlite:///{tmp_path}/x.db", "--help")
    assert "subscriber" in top and "db" in top
    assert "add" in ok(f"sqlite:///{tmp_path}/x.db", "subscriber", "--help")


def test_a_password_reset_replaces_the_ha1s_only(migrated_url: str) -> None:
    import asyncio

    from sipline.storage import Subscribers, open_database

    ok(migrated_url, "subscriber", "add", "alice@example.com", "--password", PASSWORD)
    out = ok(migrated_url, "subscriber", "password", "alice@example.com", "--password-stdin",
             stdin="n3w secret\n")  # fmt: skip
    assert out == "password of alice@example.com set\n" and "n3w" not in out

    async def stored() -> str:
        db = await open_database(migrated_url)
        try:
            found = await Subscribers(db).get("alice", "example.com")
        finally:
            await db.close()
        assert found is not None
        return found.ha1_md5

    assert asyncio.run(stored()) == compute_ha1("alice", "example.com", "n3w secret", MD5)
