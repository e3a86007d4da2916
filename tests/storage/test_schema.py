"""Versioned migrations on SQLite and MariaDB: first run, re-run, upgrades, the initial schema."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from sipline.storage import (
    Database,
    IntegrityError,
    SchemaOutdated,
    StorageError,
    migrate,
    open_database,
    pending,
    prepare_schema,
    require_current_schema,
)
from sipline.storage import schema as schema_module
from sipline.storage.schema import has_table, load_migrations, sql_statements

INITIAL_TABLES = ("accounts", "subscribers", "locations")
SHIPPED = [m.version for m in load_migrations()]
_packages = itertools.count()


async def test_first_run_applies_the_initial_schema(database: Database) -> None:
    assert await pending(database) == SHIPPED
    assert await migrate(database) == SHIPPED
    for table in ("schema_version", *INITIAL_TABLES):
        assert await has_table(database, database.dialect, table), table
    assert await pending(database) == []
    await require_current_schema(database)


async def test_running_again_applies_nothing(database: Database) -> None:
    await migrate(database)
    assert await migrate(database) == []
    recorded = await database.fetchall("SELECT version, name FROM schema_version ORDER BY version")
    assert recorded[0] == (1, "initial")
    assert [version for version, _ in recorded] == SHIPPED


async def test_an_unmigrated_database_is_refused_with_advice(database: Database) -> None:
    with pytest.raises(SchemaOutdated, match="run `sipline db migrate`"):
        await require_current_schema(database)


async def test_a_node_migrates_its_own_sqlite_file_but_only_checks_mysql(database: Database) -> None:
    if database.dialect == "sqlite":
        await prepare_schema(database)
        assert await pending(database) == []
    else:
        with pytest.raises(SchemaOutdated):
            await prepare_schema(database)
        await migrate(database)
        await prepare_schema(database)


async def test_concurrent_runs_apply_each_migration_once(database_url: str) -> None:
    first, second = await open_database(database_url), await open_database(database_url)
    try:
        results = await asyncio.gather(migrate(first), migrate(second))
        assert sorted(results) == [[], SHIPPED]
        recorded = await first.fetchall("SELECT version FROM schema_version ORDER BY version")
        assert recorded == [(version,) for version in SHIPPED]
    finally:
        await first.close()
        await second.close()


async def test_subscribers_are_unique_per_username_and_domain(migrated: Database) -> None:
    insert = (
        "INSERT INTO subscribers (username, domain, ha1_md5, ha1_sha256, account, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)"
    )
    row = ["alice", "example.com", "0" * 32, "0" * 64, None, time.time()]
    await migrated.execute(insert, row)
    await migrated.execute(insert, ["Alice", *row[1:]])  # user parts are case-sensitive
    await migrated.execute(insert, ["alice", "example.net", *row[2:]])
    with pytest.raises(IntegrityError):
        await migrated.execute(insert, row)


async def test_locations_hold_a_binding_and_are_unique_per_aor_and_contact(
    migrated: Database,
) -> None:
    columns = (
        "aor, contact, received, transport, connection_id, path, expires_at, q, call_id,"
        " cseq, user_agent, instance, reg_id, node, updated_at"
    )
    insert = f"INSERT INTO locations ({columns}) VALUES ({', '.join('?' * 15)})"
    contact = "sip:alice@192.0.2.10:5060;transport=tcp;" + "pn-prid=" + "x" * 1500
    now = time.time()
    binding = (
        "alice@example.com",
        contact,
        "198.51.100.7:40312",
        "tcp",
        "conn-17",
        "<sip:edge.example.com;lr>",
        now + 3600,
        0.5,
        "a84b4c76e66710@pc33",
        314159,
        "Yealink T46U",
        "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>",
        1,
        "proxy-1",
        now,
    )
    await migrated.execute(insert, binding)
    assert await migrated.fetchone(f"SELECT {columns} FROM locations") == binding
    with pytest.raises(IntegrityError):
        await migrated.execute(insert, binding)


async def test_accounts_have_a_licence_and_grace_state(migrated: Database) -> None:
    await migrated.execute(
        "INSERT INTO accounts (name, licence, grace_hours, created_at) VALUES (?, ?, ?, ?)",
        ("ACME", 30, 24, 0.0),
    )
    row = await migrated.fetchone("SELECT licence, grace_hours, grace_started_at FROM accounts")
    assert row == (30, 24, None)


# --- later migrations, as later issues will add them --------------------------------


def _migrations_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]
) -> None:
    """Point the runner at a package of migration files made for one test."""
    name = f"sipline_test_migrations_{next(_packages)}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for filename, text in files.items():
        (package / filename).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(schema_module, "PACKAGE", name)


INITIAL = (Path(schema_module.__file__).parent / "migrations" / "001_initial.sql").read_text()
CARRIERS = """
CREATE TABLE carriers (id {id}, name VARCHAR(64) NOT NULL) {table_options};
"""
UPGRADE = """
async def upgrade(tx, dialect):
    await tx.execute("INSERT INTO carriers (name) VALUES (?)", (dialect,))
"""


async def test_new_migrations_upgrade_an_existing_database(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _migrations_package(tmp_path, monkeypatch, {"001_initial.sql": INITIAL})
    await migrate(database)
    _migrations_package(
        tmp_path,
        monkeypatch,
        {"001_initial.sql": INITIAL, "002_carriers.sql": CARRIERS, "003_seed.py": UPGRADE},
    )
    assert await pending(database) == [2, 3]
    assert await migrate(database) == [2, 3]
    assert await database.fetchall("SELECT name FROM carriers") == [(database.dialect,)]
    assert await migrate(database) == []


async def test_a_dialect_file_replaces_the_portable_one(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _migrations_package(
        tmp_path,
        monkeypatch,
        {
            "001_t.sql": "CREATE TABLE t (portable INTEGER);",
            "001_t.mysql.sql": "CREATE TABLE t (mysql_only INTEGER) ENGINE=InnoDB;",
        },
    )
    await migrate(database)
    column = "mysql_only" if database.dialect == "mysql" else "portable"
    assert await database.fetchall(f"SELECT {column} FROM t") == []


async def test_a_failing_migration_is_not_recorded(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _migrations_package(tmp_path, monkeypatch, {"001_bad.sql": "CREATE TABLE t (x INTEGER) junk;"})
    with pytest.raises(StorageError, match="CREATE t failed"):
        await migrate(database)
    assert await pending(database) == [1]


def test_two_migrations_with_one_number_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _migrations_package(tmp_path, monkeypatch, {"002_a.sql": "", "002_b.sql": ""})
    with pytest.raises(StorageError, match="two migrations numbered 002"):
        load_migrations()


def test_migrations_are_found_in_version_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _migrations_package(
        tmp_path,
        monkeypatch,
        {"010_c.sql": "", "002_b.py": "", "001_a.sql": "", "README.txt": "", "1_x.sql": ""},
    )
    assert [(m.version, m.name) for m in load_migrations()] == [(1, "a"), (2, "b"), (10, "c")]


def test_statements_are_split_and_placeholders_filled() -> None:
    text = """
    -- a comment; with a semicolon
    CREATE TABLE a (id {id}, u VARCHAR(9) {ascii}) {table_options};
    CREATE INDEX a_u ON a (u);  -- trailing
    """
    assert sql_statements(text, "sqlite") == [
        "CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, u VARCHAR(9) )",
        "CREATE INDEX a_u ON a (u)",
    ]
    mysql = sql_statements(text, "mysql")
    assert "AUTO_INCREMENT" in mysql[0] and "utf8mb4_bin" in mysql[0] and "ascii" in mysql[0]


def test_an_unknown_placeholder_is_refused() -> None:
    with pytest.raises(StorageError, match=r"unknown placeholder \{serial\}"):
        sql_statements("CREATE TABLE a (id {serial});", "sqlite")


def test_the_shipped_migrations_start_at_one_in_order() -> None:
    # Numbers are handed out per branch (005 the proxy's, 006 the bans', 007 the
    # nodes'), so one branch alone may skip some; none is ever used twice.
    versions = [m.version for m in load_migrations()]
    assert versions[0] == 1 and versions == sorted(set(versions))
