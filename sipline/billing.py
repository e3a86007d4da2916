"""What a call costs: billed seconds by the deck's increments, then rate and connect fee.

Shared by the ACR (the CDR of a call that ended, acr.billing) and whoever shows
the running cost of a call in progress (sipline.cluster.calls, the portal):
one rule, so a call's cost shown while it runs is what its CDR will say.

A deck's increments ``first/next`` (60/60, 6/6, 1/1, 30/6 ...) bill an
answered call at least ``first`` seconds, then in whole steps of ``next``
seconds: 61 s on 60/60 is 120 s, on 6/6 66 s, on 1/1 61 s, on 30/6 66 s.
"""

from __future__ import annotations

import math

# Durations come from float clocks: 60.0000000001 s is a 60 s call, not 61.
_EPSILON = 1e-6


def billed_seconds(duration: float, first_increment: int, next_increment: int) -> int:
    """The seconds billed for a call that lasted ``duration`` seconds (0 for an unanswered one)."""
    if duration <= _EPSILON:
        return 0
    first = max(first_increment, 0)
    if duration <= first + _EPSILON:
        return first
    step = max(next_increment, 1)
    return first + math.ceil((duration - first - _EPSILON) / step) * step


def call_cost(billed: int, rate_per_minute: float, connect_fee: float) -> float:
    """The price of ``billed`` seconds at ``rate_per_minute``, plus the connect fee if billed."""
    if billed <= 0:
        return 0.0
    return round(connect_fee + billed * rate_per_minute / 60.0, 6)
