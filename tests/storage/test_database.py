"""The Database interface, on SQLite and on a real MariaDB: statements, transactions, errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sipline.storage import Database, IntegrityError, StorageError, open_database
from sipline.storage.database import operation, redact, sqlite_path
from sipline.storage.mysql import parse_mysql_url
from sipline.storage.testing import MariaDB

HA1 = "5f4dcc3b5aa765d61d8327deb882cf99"


@pytest.fixture
async def things(database: Database) -> Database:
    await database.execute(
        "CREATE TABLE things (name VARCHAR(32) NOT NULL PRIMARY KEY, size INTEGER NULL)"
    )
    return database


async def test_execute_and_fetch(things: Database) -> None:
    assert await things.execute("INSERT INTO things VALUES (?, ?)", ("a", 1)) == 1
    assert (
        await things.executemany("INSERT INTO things VALUES (?, ?)", [("b", 2), ("c", None)]) == 2
    )
    assert await things.fetchall("SELECT name, size FROM things ORDER BY name") == [
        ("a", 1),
        ("b", 2),
        ("c", None),
    ]
    assert await things.fetchone("SELECT size FROM things WHERE name = ?", ("b",)) == (2,)
    assert await things.fetchone("SELECT size FROM things WHERE name = ?", ("z",)) is None
    assert await things.execute("UPDATE things SET size = size + 1 WHERE size IS NOT NULL") == 2


async def test_an_update_counts_the_rows_it_matched(things: Database) -> None:
    await things.execute("INSERT INTO things VALUES (?, ?)", ("a", 1))
    assert await things.execute("UPDATE things SET size = ? WHERE name = ?", (1, "a")) == 1
    assert await things.execute("UPDATE things SET size = ? WHERE name = ?", (1, "z")) == 0


async def test_percent_signs_are_literal_on_every_backend(things: Database) -> None:
    await things.executemany("INSERT INTO things VALUES (?, ?)", [("100%", 1), ("50", 2)])
    rows = await things.fetchall("SELECT name FROM things WHERE name LIKE '%!%' ESCAPE '!'")
    assert rows == [("100%",)]


async def test_executemany_of_nothing_changes_nothing(things: Database) -> None:
    assert await things.executemany("INSERT INTO things VALUES (?, ?)", []) == 0


async def test_transaction_commits(things: Database) -> None:
    async with things.transaction() as tx:
        await tx.execute("INSERT INTO things VALUES (?, ?)", ("a", 1))
        assert await tx.fetchone("SELECT size FROM things WHERE name = ?", ("a",)) == (1,)
    assert await things.fetchall("SELECT name FROM things") == [("a",)]


async def test_transaction_rolls_back_on_error(things: Database) -> None:
    with pytest.raises(RuntimeError):
        async with things.transaction() as tx:
            await tx.execute("INSERT INTO things VALUES (?, ?)", ("a", 1))
            raise RuntimeError("changed my mind")
    assert await things.fetchall("SELECT name FROM things") == []


async def test_a_failed_statement_rolls_back_its_transaction(things: Database) -> None:
    with pytest.raises(IntegrityError):
        async with things.transaction() as tx:
            await tx.execute("INSERT INTO things VALUES (?, ?)", ("a", 1))
            await tx.execute("INSERT INTO things VALUES (?, ?)", ("a", 2))
    assert await things.fetchall("SELECT name FROM things") == []


async def test_executemany_is_all_or_nothing(things: Database) -> None:
    with pytest.raises(IntegrityError):
        await things.executemany("INSERT INTO things VALUES (?, ?)", [("a", 1), ("a", 2)])
    assert await things.fetchall("SELECT name FROM things") == []


async def test_concurrent_transactions_do_not_interleave(things: Database) -> None:
    await things.execute("INSERT INTO things VALUES (?, ?)", ("counter", 0))

    async def increment() -> None:
        async with things.transaction() as tx:
            row = await tx.fetchone(
                "SELECT size FROM things WHERE name = ? FOR UPDATE"
                if things.dialect == "mysql"
                else "SELECT size FROM things WHERE name = ?",
                ("counter",),
            )
            assert row is not None
            await asyncio.sleep(0)
            await tx.execute("UPDATE things SET size = ? WHERE name = ?", (row[0] + 1, "counter"))

    await asyncio.gather(*(increment() for _ in range(20)))
    assert await things.fetchone("SELECT size FROM things WHERE name = ?", ("counter",)) == (20,)


async def test_duplicate_key_is_an_integrity_error_naming_the_operation(things: Database) -> None:
    await things.execute("INSERT INTO things VALUES (?, ?)", ("a", 1))
    with pytest.raises(IntegrityError, match=r"^INSERT things failed: "):
        await things.execute("INSERT INTO things VALUES (?, ?)", ("a", 2))


async def test_driver_errors_become_storage_errors(things: Database) -> None:
    with pytest.raises(StorageError, match=r"^SELECT missing failed: ") as caught:
        await things.fetchall("SELECT * FROM missing")
    assert not isinstance(caught.value, IntegrityError)


async def test_bound_values_never_appear_in_errors(things: Database) -> None:
    # MySQL quotes the statement, values inlined, back in a syntax error.
    with pytest.raises(StorageError) as caught:
        await things.execute("INSERT INTO things VALUES (?, ?) junk ?", ("a", 1, HA1))
    assert HA1 not in str(caught.value)
    assert HA1 not in repr(caught.value)
    with pytest.raises(StorageError) as caught:
        await things.executemany("INSERT INTO things VALUES (?, ?) junk ?", [("a", 1, HA1)])
    assert HA1 not in str(caught.value)


async def test_sqlite_file_and_directory_are_created_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "x.db"
    db = await open_database(f"sqlite:///{path}")
    try:
        assert path.is_file()
        assert await db.fetchone("PRAGMA journal_mode") == ("wal",)
    finally:
        await db.close()


async def test_sqlite_relative_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    db = await open_database("sqlite:///data/x.db")
    await db.close()
    assert (tmp_path / "data" / "x.db").is_file()


async def test_sqlite_that_cannot_be_created_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StorageError, match="cannot open SQLite database"):
        await open_database(f"sqlite:///{tmp_path / 'file' / 'x.db'}")


async def test_unreachable_mysql_is_a_storage_error_without_the_password() -> None:
    with pytest.raises(StorageError, match="cannot connect to MySQL") as caught:
        await open_database("mysql://sipline:hunter2@127.0.0.1:1/sipline")
    assert "hunter2" not in str(caught.value)


async def test_wrong_mysql_password_is_a_storage_error(mariadb: MariaDB, mysql_url: str) -> None:
    # With --skip-grant-tables any password is accepted; only a real server can refuse.
    url = mysql_url.replace("mysql://root@", "mysql://nobody_here:hunter2@")
    try:
        db = await open_database(url)
    except StorageError as exc:
        assert "hunter2" not in str(exc)
    else:
        await db.close()


async def test_unknown_scheme_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="expected sqlite:// or mysql://"):
        await open_database("postgres://u:pw@h/db")


def test_mysql_url_parts() -> None:
    address = parse_mysql_url("mysql://sip%40line:p%3Ass@db.example.com:3307/calls")
    assert (address.user, address.password) == ("sip@line", "p:ss")
    assert (address.host, address.port, address.database) == ("db.example.com", 3307, "calls")
    assert "p:ss" not in repr(address)
    defaults = parse_mysql_url("mysql://h/db")
    assert (defaults.user, defaults.password, defaults.port) == ("root", "", 3306)


@pytest.mark.parametrize(
    "url", ["mysql://h:3306", "mysql://h/", "mysql://h/a/b", "mysql://h/db?ssl=1", "mysql://h:x/db"]
)
def test_bad_mysql_urls(url: str) -> None:
    with pytest.raises(StorageError, match="bad MySQL URL"):
        parse_mysql_url(url)


def test_sqlite_paths() -> None:
    assert sqlite_path("sqlite:///data/sipline.db") == "data/sipline.db"
    assert sqlite_path("sqlite:////var/lib/sipline.db") == "/var/lib/sipline.db"
    with pytest.raises(StorageError):
        sqlite_path("sqlite://data.db")


def test_redact_hides_only_the_password() -> None:
    assert redact("mysql://u:secret@h:3306/db") == "mysql://u:***@h:3306/db"
    assert redact("mysql://u@h/db") == "mysql://u@h/db"


@pytest.mark.parametrize(
    ("sql", "name"),
    [
        ("INSERT INTO subscribers VALUES (?)", "INSERT subscribers"),
        ("  select a from locations where b = ?", "SELECT locations"),
        ("UPDATE accounts SET x = 1", "UPDATE accounts"),
        ("DELETE FROM cdrs", "DELETE cdrs"),
        ("CREATE TABLE IF NOT EXISTS schema_version (x INTEGER)", "CREATE schema_version"),
        ("CREATE INDEX a_b ON a (b)", "CREATE a"),
        ("PRAGMA journal_mode = WAL", "PRAGMA"),
    ],
)
def test_operation_names(sql: str, name: str) -> None:
    assert operation(sql) == name
