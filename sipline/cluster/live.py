"""Live figures for operator commands, from the running nodes themselves.

Without Redis a node's live state (its gateways' health, its accounts' calls)
is in its memory only, so a command asks each running node of a role on its
admin endpoint (``ask``). What no node answered is not known: the command
says so (``NO_LIVE_DATA``) instead of showing a default as if it were true.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
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


async def gateway_states(db: Queries) -> tuple[dict[str, str], str]:
    """Each gateway's probe state (up, down, backoff; unknown: never probed) as the
    running ACR nodes see it, and a note when none answered."""
    heard, asked = await ask(db, "acr", "/live/gateways")
    if not heard:
        return {}, NO_LIVE_DATA if asked else "no live data (no ACR node is running)"
    return merge_gateways([body for _, body in heard]), ""


def merge_gateways(views: Sequence[Any]) -> dict[str, str]:
    """One status per gateway from several nodes' views: the newest probe verdict,
    and backoff when any node passes the gateway over."""
    newest: dict[str, tuple[float, str]] = {}
    backoff: set[str] = set()
    for view in views:
        gateways = view.get("gateways", {}) if isinstance(view, dict) else {}
        for address, seen in gateways.items():
            if not isinstance(seen, dict):
                continue
            status, changed = str(seen.get("status", "unknown")), seen.get("changed", 0.0)
            if status == "backoff":
                backoff.add(address)
            elif not isinstance(changed, int | float):
                continue
            elif address not in newest or changed > newest[address][0]:
                newest[address] = (float(changed), status)
    merged = {address: status for address, (_, status) in newest.items()}
    merged.update(dict.fromkeys(backoff, "backoff"))
    return merged


async def explain(db: Queries, number: str) -> tuple[dict[str, Any] | None, str]:
    """How a running ACR node would route ``number`` (digits) now: its explanation
    ({"json": ..., "text": ...}, the text ``sipline acr explain`` prints) and which
    node gave it; None and why when no node answered."""
    heard, asked = await ask(db, "acr", f"/explain?number={number}")
    for name, body in heard:
        if isinstance(body, dict) and "json" in body and "text" in body:
            return body, f"live, from ACR node {name}"
    return None, NO_LIVE_DATA if asked else "no live data (no ACR node is running)"


async def account_calls(
    db: Queries, names: Sequence[str], shared: bool
) -> tuple[dict[str, int] | None, str]:
    """Each account's calls up, from the running B2BUA nodes (/live/accounts), or None
    and why. Without Redis (``shared`` False) each node counts its own calls: they are
    added up; with Redis each node reports the total all nodes share: the highest wins."""
    heard, asked = await ask(db, "b2bua", "/live/accounts")
    if not heard:
        return None, NO_LIVE_DATA if asked else "no live data (no B2BUA is running)"
    calls = dict.fromkeys(names, 0)
    for _, body in heard:
        counts = body.get("calls", {}) if isinstance(body, dict) else {}
        for name, count in counts.items():
            if name in calls and isinstance(count, int) and not isinstance(count, bool):
                calls[name] = max(calls[name], count) if shared else calls[name] + count
    return calls, ""
