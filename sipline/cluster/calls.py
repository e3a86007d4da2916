"""Calls in progress, from the nodes that hold them, and hanging one up.

The ACR nodes know every answered call to a carrier (caller, callee, account,
carrier, rate, answer time: the CDR so far) and show them on ``/live/calls``;
``live_calls`` asks each running one and adds each call's duration and running
cost (sipline.billing, the rule its CDR will be billed by). ``hang_up`` asks
the B2BUA nodes, which hold both legs of every call, to end one: an admin
action (POST ``/hangup``, a token signed with the admin key, usable once),
never a bare request; the node holding the call answers 200, the others 404.
``sipline calls`` and the portal both use these.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sipline.billing import billed_seconds, call_cost
from sipline.cluster import client, live, registry
from sipline.cluster.key import admin_key
from sipline.storage.database import Database

_TEXT = ("call_id", "caller", "callee", "carrier", "gateway", "prefix")
_NUMBERS = ("rate", "connect_fee", "started_at")
# What an account's own users see of a call in progress: the carrier's name, never
# its gateway, our buy rate and connect fee, the prefix or the node.
CUSTOMER_FIELDS = (
    "call_id", "account", "caller", "callee", "carrier", "started_at", "answered_at",
    "duration", "cost",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class LiveCall:
    call_id: str
    node: str  # the ACR node holding it
    account: str | None
    caller: str
    callee: str
    carrier: str
    gateway: str
    prefix: str
    rate: float
    connect_fee: float
    first_increment: int
    next_increment: int
    started_at: float
    answered_at: float | None

    def duration(self, now: float) -> float:
        return 0.0 if self.answered_at is None else max(now - self.answered_at, 0.0)

    def cost(self, now: float) -> float:
        """What the call would cost if it ended now."""
        billed = billed_seconds(self.duration(now), self.first_increment, self.next_increment)
        return call_cost(billed, self.rate, self.connect_fee)

    def to_json(self, now: float) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}
        data["duration"] = round(self.duration(now), 1)
        data["cost"] = self.cost(now)
        return data

    @classmethod
    def from_json(cls, node: str, data: Any) -> LiveCall:
        """ValueError unless ``data`` is a call as /live/calls lists it."""
        if not isinstance(data, dict):
            raise ValueError("a call is a JSON object")
        if not all(isinstance(data.get(k), str) for k in _TEXT):
            raise ValueError("a call's text fields are strings")
        numbers = [data.get(k) for k in (*_NUMBERS, "first_increment", "next_increment")]
        if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers):
            raise ValueError("a call's figures are numbers")
        account, answered = data.get("account"), data.get("answered_at")
        if account is not None and not isinstance(account, str):
            raise ValueError("account: a string or null")
        if answered is not None and not isinstance(answered, int | float):
            raise ValueError("answered_at: a number or null")
        return cls(
            data["call_id"], node, account, data["caller"], data["callee"], data["carrier"],
            data["gateway"], data["prefix"], float(data["rate"]), float(data["connect_fee"]),
            int(data["first_increment"]), int(data["next_increment"]),
            float(data["started_at"]), None if answered is None else float(answered),
        )  # fmt: skip


async def live_calls(db: Database) -> tuple[list[LiveCall], str]:
    """Every call in progress, oldest first, and a note when some node did not answer
    (what it holds is then not shown: not known is not zero)."""
    heard, asked = await live.ask(db, "acr", "/live/calls")
    calls: list[LiveCall] = []
    for node, body in heard:
        for item in body.get("calls", []) if isinstance(body, dict) else []:
            try:
                calls.append(LiveCall.from_json(node, item))
            except ValueError:
                continue  # one bad entry does not hide the others
    calls.sort(key=lambda c: c.started_at)
    note = "" if len(heard) == asked else f"{asked - len(heard)} of {asked} ACR node(s) did not answer"
    if not asked:
        note = "no ACR node is running"
    return calls, note


async def hang_up(settings: Any, db: Database, call_id: str) -> str | None:
    """End the call ``call_id`` (either leg's Call-ID) on the B2BUA that holds it:
    the node's name, or None when no running B2BUA holds such a call. ValueError
    when there is no admin key to sign the request with."""
    key = admin_key(settings)
    if key is None:
        raise ValueError("no admin key: set admin.secret, or run where the nodes' data directory is")
    running = [e for e in await registry.entries(db, "b2bua") if not e.stopped]
    answers = await asyncio.gather(*(
        client.post(e.admin, "/hangup", {"node": e.name, "call_id": call_id}, key,
                    settings.admin.push_timeout)
        for e in running
    ))  # fmt: skip
    for entry, answer in zip(running, answers, strict=True):
        if answer is not None and answer.ok:
            return entry.name
    return None
