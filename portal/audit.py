"""The portal's audit log (``portal_audit``, migration 009): every change, who made
it, when, from where, and the values before and after."""

from __future__ import annotations

import time
from typing import Any

import orjson

from sipline.storage.database import Database

_COLUMNS = "at, username, account, source, action, target, before_json, after_json"


async def record(
    db: Database,
    *,
    username: str,
    account: str | None,
    source: str,
    action: str,
    target: str,
    before: Any = None,
    after: Any = None,
) -> None:
    await db.execute(
        f"INSERT INTO portal_audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (time.time(), username, account, source[:64], action, target[:255],
         _json(before), _json(after)),
    )  # fmt: skip


async def entries(db: Database, account: str | None, limit: int) -> list[dict[str, Any]]:
    """The latest entries, newest first; only those about ``account`` when one is given."""
    where, params = ("WHERE account = ?", (account,)) if account is not None else ("", ())
    rows = await db.fetchall(
        f"SELECT {_COLUMNS} FROM portal_audit {where} ORDER BY id DESC LIMIT ?", (*params, limit)
    )
    return [
        {
            "at": at, "username": username, "account": acct, "source": source,
            "action": action, "target": target,
            "before": orjson.loads(before) if before else None,
            "after": orjson.loads(after) if after else None,
        }
        for at, username, acct, source, action, target, before, after in rows
    ]  # fmt: skip


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()
