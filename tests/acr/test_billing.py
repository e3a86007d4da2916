"""Billing: increments (first/next), rate per minute, connect fee, a CDR's billed seconds and cost."""

from __future__ import annotations

import pytest

from acr.billing import bill, billed_seconds, call_cost
from sipline.carriers.model import Cdr


@pytest.mark.parametrize(
    ("duration", "first", "step", "billed"),
    [
        (0.0, 60, 60, 0),  # unanswered
        (-1.0, 60, 60, 0),
        (0.2, 60, 60, 60),  # at least the first increment
        (60.0, 60, 60, 60),
        (60.0000000001, 60, 60, 60),  # float noise is not a second
        (61.0, 60, 60, 120),
        (61.0, 6, 6, 66),
        (61.0, 1, 1, 61),
        (0.4, 1, 1, 1),
        (61.0, 30, 6, 66),
        (29.0, 30, 6, 30),
        (5.0, 0, 6, 6),  # no minimum: straight to the steps
        (12.0, 6, 6, 12),
        (12.5, 6, 6, 18),
    ],
)
def test_billed_seconds_by_increments(duration: float, first: int, step: int, billed: int) -> None:
    assert billed_seconds(duration, first, step) == billed


def test_cost_is_rate_per_minute_plus_connect_fee_rounded_to_six_decimals() -> None:
    assert call_cost(120, 0.01, 0.0) == 0.02
    assert call_cost(66, 0.012, 0.05) == round(0.05 + 66 * 0.012 / 60, 6) == 0.0632
    assert call_cost(1, 1 / 3, 0.0) == 0.005556


def test_an_unbilled_call_costs_nothing_not_even_the_connect_fee() -> None:
    assert call_cost(0, 0.5, 0.1) == 0.0


def _cdr(answer: float | None, end: float, first: int = 6, step: int = 6) -> Cdr:
    return Cdr(
        call_id="c1",
        account="ACME",
        caller="alice",
        callee="442071234567",
        prefix="4420",
        carrier="cheap",
        gateway="127.0.0.1:5090",
        rate=0.6,
        start=1000.0,
        end=end,
        final_code=200 if answer else 503,
        node="primary",
        answer=answer,
        connect_fee=0.01,
        first_increment=first,
        next_increment=step,
    )


def test_bill_fills_billed_seconds_and_cost_from_answer_to_end() -> None:
    billed = bill(_cdr(answer=1002.0, end=1063.0))  # 61 s talk on 6/6: 66 s
    assert (billed.billed_seconds, billed.cost) == (66, round(0.01 + 66 * 0.6 / 60, 6))
    assert billed.call_id == "c1" and billed.start == 1000.0  # the rest is kept


def test_bill_of_an_unanswered_call_is_zero() -> None:
    billed = bill(_cdr(answer=None, end=1004.0))
    assert (billed.billed_seconds, billed.cost) == (0, 0.0)


def test_bill_of_a_clock_step_backwards_is_zero() -> None:
    billed = bill(_cdr(answer=1010.0, end=1009.0))
    assert (billed.billed_seconds, billed.cost) == (0, 0.0)
