"""A CDR billed: its billed seconds and cost from its answer and end times, by the
rule every part shares (sipline.billing: increments, rate, connect fee)."""

from __future__ import annotations

from dataclasses import replace

from sipline.billing import billed_seconds, call_cost
from sipline.carriers.model import Cdr

__all__ = ["bill", "billed_seconds", "call_cost"]


def bill(cdr: Cdr) -> Cdr:
    """``cdr`` with billed_seconds and cost filled in from its answer and end times."""
    duration = 0.0 if cdr.answer is None else max(cdr.end - cdr.answer, 0.0)
    billed = billed_seconds(duration, cdr.first_increment, cdr.next_increment)
    return replace(cdr, billed_seconds=billed, cost=call_cost(billed, cdr.rate, cdr.connect_fee))
