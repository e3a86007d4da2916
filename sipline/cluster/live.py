"""Live figures for operator commands, from the running nodes themselves.

Without Redis a node's live state (its gateways' health, its accounts' calls)
is in its memory only, so a command asks each running node of a role on its
admin endpoint (``ask``). What no node answered is not known: the command
says so (``NO_LIVE_DATA``) instead of showing a default as if it were true.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sipline.cluster import client, registry
from sipline.storage.database import Queries

NO_LIVE_DATA = "no live data (no node answered)"


async def ask(
    db: Queries, role: str, path: str, timeout: float = client.TIMEOUT
) -> tuple[list[tuple[str, Any]], int]:
    """GET ``path`` of every running node of ``role``: the (node name, JSON) of
    those that answered, and how many were asked."""
    running = [e for e in await registry.entries(db, role) if not e.stopped]
    answers = await asyncio.gather(*(client.get(e.admin, path, timeout) for e in running))
    heard = [(e.name, a.body) for e, a in zip(running, answers, strict=True) if a and a.ok]
    return heard, len(running)
