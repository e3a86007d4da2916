"""Apply the versioned migrations of ``sipline.storage.migrations`` (conventions there).

``schema_version`` records one row per applied migration. ``migrate(db)``
applies the missing ones in version order under a lock, so two nodes starting
together do not both apply them; running it again applies nothing.

On SQLite the whole run is one transaction. On MySQL every DDL statement
commits on its own, so a migration that fails halfway leaves its finished
statements in place and is not recorded: fix the cause, undo them by hand,
run again.
"""

from __future__ import annotations

import importlib
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable

from sipline import logs
from sipline.storage.database import Database, Queries, StorageError

PACKAGE = "sipline.storage.migrations"
LOCK_WAIT_SECONDS = 60
_FILE = re.compile(
    r"(?P<version>\d{3,})_(?P<name>\w+?)(?:\.(?P<dialect>sqlite|mysql))?\.(?P<kind>sql|py)"
)
_COMMENT = re.compile(r"--[^\n]*")
_END_OF_STATEMENT = re.compile(r";[ \t]*$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")

SNIPPETS: dict[str, dict[str, str]] = {
    "sqlite": {
        "id": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "table_options": "",
        "ascii": "",
    },
    "mysql": {
        "id": "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY",
        "table_options": "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        "ascii": "CHARACTER SET ascii COLLATE ascii_bin",
    },
}

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    applied_at DOUBLE NOT NULL
) {table_options}
"""

log = logging.getLogger("sipline.storage")


class SchemaOutdated(StorageError):
    """The database lacks migrations this code needs."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    # The file per dialect; the key None holds the portable one.
    sources: dict[str | None, Traversable] = field(default_factory=dict, repr=False)

    def source(self, dialect: str) -> Traversable:
        source = self.sources.get(dialect) or self.sources.get(None)
        if source is None:
            raise StorageError(
                f"migration {self.version:03d}_{self.name} has no file for {dialect}"
            )
        return source

    async def apply(self, tx: Queries, dialect: str) -> None:
        source = self.source(dialect)
        if source.name.endswith(".py"):
            module = importlib.import_module(f"{PACKAGE}.{source.name.removesuffix('.py')}")
            await module.upgrade(tx, dialect)
            return
        for statement in sql_statements(source.read_text("utf-8"), dialect):
            await tx.execute(statement)


def sql_statements(text: str, dialect: str) -> list[str]:
    """The statements of a migration file, with the placeholders of ``dialect`` filled in."""
    snippets = SNIPPETS[dialect]

    def fill(match: re.Match[str]) -> str:
        if match.group(1) not in snippets:
            raise StorageError(f"unknown placeholder {match.group(0)} in a migration")
        return snippets[match.group(1)]

    text = _PLACEHOLDER.sub(fill, _COMMENT.sub("", text))
    return [s.strip() for s in _END_OF_STATEMENT.split(text) if s.strip()]


def load_migrations() -> list[Migration]:
    """Every migration shipped with this code, in version order."""
    found: dict[int, Migration] = {}
    for entry in files(PACKAGE).iterdir():
        match = _FILE.fullmatch(entry.name)
        if match is None:
            continue
        version, name = int(match["version"]), match["name"]
        migration = found.setdefault(version, Migration(version, name))
        if migration.name != name or match["dialect"] in migration.sources:
            raise StorageError(f"two migrations numbered {version:03d}: rename one")
        migration.sources[match["dialect"]] = entry
    return [found[version] for version in sorted(found)]


async def migrate(db: Database) -> list[int]:
    """Apply the pending migrations in order; the versions applied (empty when up to date)."""
    applied: list[int] = []
    # The lock is released only after the work has committed, so whoever waited sees it.
    async with _migration_lock(db), db.transaction() as tx:
        if not await has_table(tx, db.dialect, "schema_version"):
            await tx.execute(_VERSION_TABLE.format(**SNIPPETS[db.dialect]))
        done = await _applied_versions(tx)
        for migration in load_migrations():
            if migration.version in done:
                continue
            await migration.apply(tx, db.dialect)
            await tx.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
            logs.event(
                log, "migration_applied", version=migration.version, migration=migration.name
            )
            applied.append(migration.version)
    return applied


async def prepare_schema(db: Database) -> None:
    """At a node's start: a SQLite file is the node's own and migrated here;
    a MySQL schema is the operator's (``sipline db migrate``) and must be current."""
    if db.dialect == "sqlite":
        await migrate(db)  # each version applied is logged
    else:
        await require_current_schema(db)


async def applied_versions(db: Queries, dialect: str) -> set[int]:
    """The versions recorded in the database (none when it has no schema_version table)."""
    if not await has_table(db, dialect, "schema_version"):
        return set()
    return await _applied_versions(db)


async def pending(db: Database) -> list[int]:
    """The versions this code knows that the database lacks, in order."""
    done = await applied_versions(db, db.dialect)
    return [m.version for m in load_migrations() if m.version not in done]


async def require_current_schema(db: Database) -> None:
    """Raise SchemaOutdated unless every known migration has been applied."""
    missing = await pending(db)
    if missing:
        listed = ", ".join(f"{v:03d}" for v in missing)
        raise SchemaOutdated(
            f"the database schema is not up to date (missing migrations {listed}); "
            "run `sipline db migrate` first"
        )


async def has_table(db: Queries, dialect: str, table: str) -> bool:
    if dialect == "sqlite":
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    else:
        sql = (
            "SELECT 1 FROM information_schema.tables"
            " WHERE table_schema = DATABASE() AND table_name = ?"
        )
    return await db.fetchone(sql, (table,)) is not None


async def _applied_versions(db: Queries) -> set[int]:
    return {int(row[0]) for row in await db.fetchall("SELECT version FROM schema_version")}


@asynccontextmanager
async def _migration_lock(db: Database) -> AsyncIterator[None]:
    # SQLite: the migration's transaction holds the database's write lock (BEGIN IMMEDIATE).
    if db.dialect != "mysql":
        yield
        return
    # A named lock per database, held by a connection of its own for the whole run.
    name = "LEFT(CONCAT('sipline_migrate:', DATABASE()), 64)"
    async with db.transaction() as holder:
        row = await holder.fetchone(f"SELECT GET_LOCK({name}, ?)", (LOCK_WAIT_SECONDS,))
        if not row or row[0] != 1:
            raise StorageError(f"another process held the migration lock for {LOCK_WAIT_SECONDS} s")
        try:
            yield
        finally:
            await holder.fetchone(f"SELECT RELEASE_LOCK({name})")
