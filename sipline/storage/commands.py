"""``sipline db migrate``, ``run_with_database`` for every command that needs the
database, and ``run_node`` for every command that runs a role's node on it.

Exit status: 0 done, 1 the database refused or failed (the message says why),
2 a value given on the command line is unacceptable.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from sipline import config
from sipline.config import Settings
from sipline.storage.database import (
    Database,
    InvalidValue,
    StorageError,
    open_database,
    redact,
    sqlite_path,
)
from sipline.storage.schema import applied_versions, load_migrations, migrate
from sipline.storage.schema import require_current_schema as _require_current_schema

EXIT_STORAGE_ERROR = 1
EXIT_INVALID_VALUE = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = subparsers.add_parser("db", help="manage the database schema (database.url)")
    actions = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    run = actions.add_parser("migrate", help="create or upgrade the schema; print what was applied")
    run.set_defaults(func=cmd_db_migrate)


def run_with_database(
    settings: Settings,
    work: Callable[[Database], Awaitable[int]],
    *,
    require_current_schema: bool = True,
) -> int:
    """Open ``database.url``, run ``work(db)``, close; errors become a message and a status
    that say which database was meant (and from which config). A SQLite file that does
    not exist is not created, unless to migrate it (``require_current_schema`` False)."""
    url = settings.database.url
    where = f"database {redact(url)}, from {config.loaded_from}"
    if require_current_schema and url.startswith("sqlite://"):
        path = Path(sqlite_path(url))
        if not path.is_file():
            print(
                f"sipline: no database at {path.resolve()} ({where}); run `sipline db migrate`"
                " first (`make run` does), or name another config with --config",
                file=sys.stderr,
            )
            return EXIT_STORAGE_ERROR

    async def run() -> int:
        db = await open_database(url)
        try:
            if require_current_schema:
                await _require_current_schema(db)
            return await work(db)
        finally:
            await db.close()

    return run_command(run(), where)


def run_command(work: Coroutine[Any, Any, int], where: str = "") -> int:
    """Run a command's ``work``: its status, or a message and the status of the failure
    (InvalidValue: a bad value given; StorageError: the store refused or failed;
    ``where`` says which database or store the command meant)."""
    try:
        return asyncio.run(work)
    except InvalidValue as exc:
        print(f"sipline: {exc}", file=sys.stderr)
        return EXIT_INVALID_VALUE
    except StorageError as exc:
        print(f"sipline: {exc}" + (f" ({where})" if where else ""), file=sys.stderr)
        return EXIT_STORAGE_ERROR


def run_node(serve: Coroutine[Any, Any, None]) -> int:
    """Run a role's node (``serve``, such as ``serve_proxy(settings)``) on uvloop until it
    returns: 0; the database unreachable or its schema outdated (StorageError) is a
    message and status 1."""
    # Imported here so that other commands do not pay for the event loop.
    import uvloop

    try:
        uvloop.run(serve)
    except StorageError as exc:
        print(f"sipline: {exc}", file=sys.stderr)
        return EXIT_STORAGE_ERROR
    return 0


def cmd_db_migrate(args: argparse.Namespace, settings: Settings) -> int:
    return run_with_database(settings, _migrate, require_current_schema=False)


async def _migrate(db: Database) -> int:
    names = {m.version: m.name for m in load_migrations()}
    applied = await migrate(db)
    for version in applied:
        print(f"applied migration {version:03d} ({names[version]})")
    current = max(await applied_versions(db, db.dialect), default=0)
    suffix = "" if applied else "; nothing to apply"
    print(f"schema at version {current:03d}{suffix}")
    return 0


def password_options(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--password`` or ``--password-stdin``, for every command that takes a secret."""
    secret = parser.add_mutually_exclusive_group(required=required)
    secret.add_argument("--password", help="the password (visible to ps; see --password-stdin)")
    secret.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of stdin")  # fmt: skip


def given_password(args: argparse.Namespace) -> str | None:
    """The password ``password_options`` took (None: neither option given)."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str | None = args.password
    return password


def table(rows: Sequence[Sequence[str]]) -> str:
    """Rows (the first a header) as aligned columns, for a command's listing."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def utc(timestamp: float) -> str:
    """Epoch seconds as an ISO 8601 UTC time, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
