"""``python -m bench.instructions``: reading callgrind's totals, the count per call."""

from __future__ import annotations

import pytest

from bench.instructions import per_call, total_instructions

DUMP = """version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  /work/.venv/bin/python /work/.venv/bin/sipline proxy
part: 2
desc: Trigger: Client Request: load
events: Ir
summary: 1234567890
fn=(1) main
0 5
totals: 1234567890
"""


def test_the_total_is_read_from_the_dump() -> None:
    assert total_instructions(DUMP) == 1234567890
    assert total_instructions(DUMP.replace("totals: 1234567890\n", "")) == 1234567890
    with pytest.raises(ValueError):
        total_instructions("events: Ir\n")


def test_the_idle_rate_over_the_load_is_taken_off_before_dividing_by_the_calls() -> None:
    # 5 s idle: 50 M; 20 s of load: 1 000 M, of which 200 M the idle rate's.
    assert per_call(1_000_000_000, 20.0, 50_000_000, 5.0, 100) == 8_000_000
    assert per_call(1_000, 20.0, 50, 5.0, 0) is None
