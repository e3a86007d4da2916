"""Counts that several nodes share in one Redis hash, each node its own field.

A hash per counted thing (an ACR carrier's calls, a B2BUA account's calls)
holds, for every node run (``NODE.RANDOM``, a fresh one at every start), two
fields: its count, and ``<run>:exp``, until when that count holds. A node
writes only its own fields, and always its absolute count, never a change to
it: after a Redis restart (empty, or from an old snapshot) the nodes' next
writes make the totals right again. The total is the sum of the live counts;
a node that stops writing (dead, restarted, cut off) drops out of it when its
count expires. ``acr.counters`` and ``b2bua.licences`` build their admission
scripts on ``LIVE_TOTAL``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

STALE = 60.0  # seconds after its expiry that a run's fields may be deleted

# Lua: the sum of the live counts of the hash ``key`` but ``member``'s, at ``now``.
LIVE_TOTAL = """
local function live_total(key, member, now)
  local fields = redis.call('HGETALL', key)
  local values = {}
  for i = 1, #fields, 2 do values[fields[i]] = fields[i + 1] end
  local total = 0
  for name, value in pairs(values) do
    if string.sub(name, -4) ~= ':exp' and name ~= member then
      if tonumber(values[name .. ':exp'] or '0') >= now then
        total = total + math.max(0, tonumber(value) or 0)
      end
    end
  end
  return total
end
"""


def new_member(node: str) -> str:
    """This run's field name: a count a crashed run left behind just expires."""
    return f"{node}.{secrets.token_hex(4)}"


def own_fields(member: str, count: int, expires: float) -> dict[str, str | int]:
    """What a node writes of itself: its count and until when it holds."""
    return {member: count, f"{member}:exp": f"{expires:.3f}"}


@dataclass(slots=True)
class Others:
    """The other nodes' counts in one hash as this node last read them (``read``).

    A run that vanished from the hash before its count expired is still counted
    until it expires: Redis lost it (a restart), and its node writes it again at
    its next sync. ``assumed`` of ``total`` are such counts; while there are any,
    an admission is decided on this picture, not by a script over what Redis holds
    (which would let one node take the room of another's calls for a second).
    """

    runs: dict[str, tuple[int, float]] = field(default_factory=dict)  # run -> count, expiry
    total: int = 0
    assumed: int = 0

    def read(self, fields: dict[bytes, bytes], now: float, me: str = "") -> list[str]:
        """Take a fresh read of the hash; the fields of runs expired more than STALE
        seconds ago (for the caller to delete)."""
        live: dict[str, tuple[int, float]] = {}
        stale: list[str] = []
        for key, value in fields.items():
            name = key.decode(errors="replace")
            if name == me or name.endswith(":exp"):
                continue
            try:
                expires = float(fields.get(key + b":exp", b"0"))
                if expires >= now:
                    live[name] = (max(0, int(value)), expires)
                elif expires < now - STALE:
                    stale += [name, f"{name}:exp"]
            except ValueError:
                continue
        vanished = {r: v for r, v in self.runs.items() if r not in live and v[1] >= now}
        self.runs = live | vanished
        self.assumed = sum(count for count, _ in vanished.values())
        self.total = sum(count for count, _ in self.runs.values())
        return stale


def live_total(fields: dict[bytes, bytes], now: float) -> int:
    """The sum of the live counts of a hash (what ``sipline`` commands show)."""
    others = Others()
    others.read(fields, now)
    return others.total
