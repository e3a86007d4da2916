"""The live bindings of subscribers, read for people (the portal's subscriber page
and dashboard). The proxies write and cache the ``locations`` table
(proxy.location_store); a removed binding stays as a tombstone with
``expires_at`` 0, which ``expires_at > now`` leaves out.
"""

from __future__ import annotations

from typing import Any

from sipline.storage.database import Database

_SHOWN = ("aor", "contact", "received", "transport", "node", "proxy", "expires_at", "user_agent")


async def bindings_of(db: Database, aor: str, now: float) -> list[dict[str, Any]]:
    """The live bindings of ``aor``, with the seconds each has left."""
    rows = await db.fetchall(
        f"SELECT {', '.join(_SHOWN)} FROM locations WHERE aor = ? AND expires_at > ?"
        " ORDER BY contact",
        (aor, now),
    )
    shown = [dict(zip(_SHOWN, row, strict=True)) for row in rows]
    for binding in shown:
        binding["expires_in"] = max(0, int(binding["expires_at"] - now))
    return shown


async def registered(db: Database, now: float, account: str | None = None) -> int:
    """Live bindings in all, or of the subscribers of ``account``."""
    if account is None:
        row = await db.fetchone("SELECT COUNT(*) FROM locations WHERE expires_at > ?", (now,))
    else:
        # locations.aor is user@domain, as subscribers keep it in two columns.
        concat = (
            "s.username || '@' || s.domain" if db.dialect == "sqlite"
            else "CONCAT(s.username, '@', s.domain)"
        )  # fmt: skip
        row = await db.fetchone(
            f"SELECT COUNT(*) FROM locations l JOIN subscribers s ON l.aor = {concat}"
            " WHERE l.expires_at > ? AND s.account = ?",
            (now, account),
        )
    return int(row[0]) if row else 0
