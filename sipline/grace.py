"""Account licences, sans-IO: may a call over its account's licence go ahead?

The rules (``Licence.judge``):

- A licence is a number of concurrent calls. A call within it always goes ahead.
- The first call over it starts the account's grace period: its time is kept
  in ``accounts.grace_started_at``, so a restarted node or another B2BUA node
  counts from the same moment. The period lasts the account's own
  ``grace_hours`` when one was set for it, else ``b2bua.grace_hours`` (48).
- During the period calls over the licence go ahead; after it they are
  refused with ``Licence Exceeded`` (a 403 at the B2BUA) while calls within
  the licence still go ahead. A grace period of 0 hours: refused at once.
- Every call over the licence, admitted or refused, is audited (account,
  time, concurrent calls with it, licence).
- Going back under the licence does not end or restart the period: an
  account gets one grace period per licence setting, the time it is given to
  buy a bigger licence (an account over it every busy hour would otherwise
  never be enforced). The period starts afresh only when an operator runs
  ``sipline account set`` for the account (unless ``--keep-grace``), which is
  what raising the licence does anyway.

``LocalCalls`` counts an account's calls in one process with the same rules
as the Redis script of ``b2bua.licences``: a call is counted once however
often it is admitted, and is forgotten ``ttl`` seconds after its admission
(longer than ``b2bua.max_call_duration``), so a call whose release was lost
cannot hold a licence forever.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

HOUR = 3600.0
EXCEEDED = "Licence Exceeded"

State = Literal["within", "grace", "enforced"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a call that an account's counter has seen."""

    allowed: bool
    over: bool = False  # the account is over its licence with this call: audit it
    start_grace: bool = False  # this call starts the grace period: persist its time
    reason: str = ""


WITHIN = Verdict(allowed=True)


@dataclass(frozen=True, slots=True)
class Licence:
    """An account's licence and grace state; ``grace_hours`` already resolved to a number."""

    account: str
    calls: int
    grace_hours: float
    grace_started_at: float | None = None

    @property
    def grace_ends_at(self) -> float | None:
        if self.grace_started_at is None:
            return None
        return self.grace_started_at + self.grace_hours * HOUR

    def may_exceed(self, now: float) -> bool:
        """Whether a call over the licence would go ahead at ``now``."""
        ends = self.grace_ends_at
        if ends is None:
            return self.grace_hours > 0
        return now < ends

    def limit(self, now: float) -> int | None:
        """The most calls the counter may hold at ``now``; None: no cap (in grace)."""
        return None if self.may_exceed(now) else self.calls

    def judge(self, count: int, admitted: bool, now: float) -> Verdict:
        """The verdict on a call given what the counter did with it: ``count`` is
        the account's concurrent calls with this one, ``admitted`` whether the
        counter took it (it refuses only beyond ``limit(now)``)."""
        if not admitted:
            return Verdict(allowed=False, over=True, reason=EXCEEDED)
        if count <= self.calls:
            return WITHIN
        return Verdict(allowed=True, over=True, start_grace=self.grace_started_at is None)

    def started(self, at: float) -> Licence:
        return replace(self, grace_started_at=at)

    def state(self, now: float) -> State:
        """``within``: no grace used; ``grace``: in its grace period; ``enforced``: after it."""
        if self.grace_started_at is None:
            return "within"
        return "grace" if self.may_exceed(now) else "enforced"


class Counted(NamedTuple):
    admitted: bool
    count: int  # the account's calls with this one (when refused: had it been admitted)
    new: bool  # False: this call was already counted (nothing changed)


class LocalCalls:
    """Concurrent calls per account in this process (no Redis)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        # account -> call-id -> when it is forgotten; in admission order, so oldest first.
        self._calls: dict[str, OrderedDict[str, float]] = {}

    def admit(self, account: str, call_id: str, limit: int | None, now: float) -> Counted:
        calls = self._calls.get(account)
        if calls is None:
            calls = self._calls[account] = OrderedDict()
        _expire(calls, now)
        if call_id in calls:
            return Counted(True, len(calls), False)
        if limit is not None and len(calls) >= limit:
            return Counted(False, len(calls) + 1, True)
        calls[call_id] = now + self.ttl
        return Counted(True, len(calls), True)

    def release(self, account: str, call_id: str) -> None:
        calls = self._calls.get(account)
        if calls is not None:
            calls.pop(call_id, None)
            if not calls:
                del self._calls[account]

    def holds(self, account: str, call_id: str) -> bool:
        calls = self._calls.get(account)
        return calls is not None and call_id in calls

    def accounts(self) -> list[str]:
        """The accounts with calls counted."""
        return list(self._calls)

    def held(self, account: str) -> int:
        """The account's calls counted, those past the ttl too until the next ``count``."""
        calls = self._calls.get(account)
        return 0 if calls is None else len(calls)

    def count(self, account: str, now: float) -> int:
        calls = self._calls.get(account)
        if calls is None:
            return 0
        _expire(calls, now)
        return len(calls)


def _expire(calls: OrderedDict[str, float], now: float) -> None:
    while calls:
        call_id, until = next(iter(calls.items()))
        if until > now:
            return
        del calls[call_id]
