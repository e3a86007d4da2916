"""Configuration changes, pushed: what an operator command does after it changed
the database, so every node applies the change within a second or two.

``announce(settings, db, topic, keys)`` bumps ``config_version`` (migration
007) and tells the nodes: with ``[redis] url`` by PUBLISH on ``CHANNEL``;
without, by POST /config to each running node of the ``nodes`` table, whose
answers say who applied it. A topic names what changed, so a node reloads
only that: ``subscribers`` (keys: the AORs), ``accounts`` (licences), ``acr``
(carriers, gateways, rates, profiles, DIDs). A node that missed a version
(a gap) reloads everything, so none is ever skipped.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

import orjson

from sipline.cluster import client, registry
from sipline.cluster.key import admin_key
from sipline.logs import event
from sipline.storage.database import Database, Queries
from sipline.storage.live import open_redis, redis_errors

log = logging.getLogger("sipline.cluster.changes")

CHANNEL = "sipline:config"
TOPICS = ("subscribers", "accounts", "acr")
MAX_KEYS = 1000  # keys named in one change; more and the nodes reload the whole topic


@dataclass(frozen=True, slots=True)
class Change:
    version: int
    topic: str
    keys: tuple[str, ...] = ()  # what changed within the topic; () = all of it

    def to_json(self) -> bytes:
        return orjson.dumps({"version": self.version, "topic": self.topic, "keys": self.keys})

    @classmethod
    def from_json(cls, data: Any) -> Change:
        """ValueError unless ``data`` (parsed JSON) is a change."""
        if not isinstance(data, dict):
            raise ValueError("a change is a JSON object")
        version, topic, keys = data.get("version"), data.get("topic"), data.get("keys", [])
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError("version: a whole number, 1 or more")
        if topic not in TOPICS:
            raise ValueError(f"topic: one of {', '.join(TOPICS)}")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError("keys: a list of strings")
        return cls(version, topic, tuple(keys) if len(keys) <= MAX_KEYS else ())


async def bump(db: Database) -> int:
    """The next configuration version, recorded."""
    async with db.transaction() as tx:
        await tx.execute(
            "UPDATE config_version SET version = version + 1, changed_at = ? WHERE id = 1",
            (time.time(),),
        )
        return await current(tx)


async def current(db: Queries) -> int:
    row = await db.fetchone("SELECT version FROM config_version WHERE id = 1")
    return int(row[0]) if row else 0


async def announce(settings: Any, db: Database, topic: str, keys: tuple[str, ...] = ()) -> str:
    """Record and push a change; a line for the operator (also written to stderr)."""
    change = Change(await bump(db), topic, keys[:MAX_KEYS] if len(keys) <= MAX_KEYS else ())
    if settings.redis.url:
        line = await _publish(settings.redis.url, change)
    else:
        line = await _push(settings, db, change)
    event(log, "config_announced", version=change.version, topic=topic, outcome=line)
    print(f"sipline: {line}", file=sys.stderr)
    return line


async def _publish(url: str, change: Change) -> str:
    redis = open_redis(url)
    try:
        listeners = await redis.publish(CHANNEL, change.to_json())
    except redis_errors() as exc:
        return (
            f"config version {change.version} ({change.topic}) stored, but Redis did not take"
            f" the notification ({exc}): nodes apply it at their next poll"
        )
    finally:
        await redis.aclose()
    return f"config version {change.version} ({change.topic}) published to {listeners} node(s)"


async def _push(settings: Any, db: Database, change: Change) -> str:
    running = [e for e in await registry.entries(db) if not e.stopped]
    key = admin_key(settings)
    if not running:
        return f"config version {change.version} ({change.topic}) stored; no node is running"
    if key is None:
        return (
            f"config version {change.version} ({change.topic}) stored; no admin key to push it"
            " with: nodes apply it at their next poll"
        )
    body = {"version": change.version, "topic": change.topic, "keys": list(change.keys)}
    answers = await asyncio.gather(
        *(
            client.post(e.admin, "/config", {**body, "node": e.name}, key,
                        settings.admin.push_timeout)
            for e in running
        )
    )  # fmt: skip
    applied = [e.name for e, a in zip(running, answers, strict=True) if a is not None and a.ok]
    failed = [
        f"{e.name} ({_why(a)})"
        for e, a in zip(running, answers, strict=True)
        if a is None or not a.ok
    ]
    line = (
        f"config version {change.version} ({change.topic}) applied by"
        f" {len(applied)} of {len(running)} node(s)"
    )
    return line + (f"; not by {', '.join(failed)}" if failed else "")


def _why(answer: client.Answer | None) -> str:
    if answer is None:
        return "no answer"
    error = answer.body.get("error") if isinstance(answer.body, dict) else None
    return str(error or f"HTTP {answer.status}")
