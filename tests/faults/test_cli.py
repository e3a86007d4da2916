"""python -m bench faults: its arguments and what it calls a broken demand (no process started)."""

from __future__ import annotations

import pytest

from bench.faults import cli
from bench.faults.callpath import Load, Outcome
from bench.faults.counting import Billing

LOAD = Load(rate=100, seconds=30, hold=3, failover_timeout=2.0)


def test_the_defaults_are_the_issue_s_experiments_at_100_calls_a_second() -> None:
    args = cli.parse_args([])
    assert (args.rate, args.seconds, args.capacity) == (100, 30.0, 200)
    assert args.only == list(cli.EXPERIMENTS)
    assert cli.parse_args(["--only", "acr-kill,redis-kill"]).only == ["acr-kill", "redis-kill"]


def test_an_unknown_experiment_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.parse_args(["--only", "acr-kill,meteor"])
    assert exited.value.code == 2
    assert "meteor" in capsys.readouterr().err


def test_a_lost_cdr_a_ghost_and_a_retransmission_are_each_a_broken_demand() -> None:
    clean = Outcome("acr-kill", 3000, 3000, cdrs=Billing(3000, 3000, 0, 0, 0, 0, 0))
    clean.ghost_invites = clean.retransmitted_after_failover = 0
    assert cli.demands(clean, LOAD) == []
    broken = Outcome("acr-kill", 3000, 3000, cdrs=Billing(3000, 2856, 5, 0, 0, 0, 0))
    broken.ghost_invites, broken.retransmitted_after_failover = 456, 30
    problems = " | ".join(cli.demands(broken, LOAD))
    assert "144 answered calls without a CDR" in problems
    assert "456 ghost INVITEs" in problems and "30 INVITEs retransmitted" in problems


def test_failover_demands_the_issue_s_set_up_times() -> None:
    quick = Outcome("failover", 1000, 1000, setup_ms=[20.0] * 995 + [2050.0] * 5)
    assert cli.demands(quick, LOAD) == []
    slow = Outcome("failover", 1000, 1000, setup_ms=[20.0] * 980 + [2150.0] * 20)
    problems = cli.demands(slow, LOAD)
    assert any("worst set-up 2150 ms" in p for p in problems)
    assert any("20 set-ups over 200 ms" in p for p in problems)


def test_redis_kill_demands_no_admission_past_the_limit_and_state_back_within_2_s() -> None:
    healed = Outcome("redis-kill", peak=230, limit=200, over_limit=0)
    healed.figures["admitted_in_outage"] = 40
    healed.converged_s = {"health": 0.8, "stats": 1.1}
    assert cli.demands(healed, LOAD) == []
    broken = Outcome("redis-kill", peak=282, limit=200, over_limit=82)
    broken.figures["admitted_in_outage"] = 40
    broken.converged_s = {"health": None, "stats": 1.1}
    problems = " | ".join(cli.demands(broken, LOAD))
    assert "82 calls admitted past the limit" in problems
    assert "peak 282 > limit + calls admitted in the outage (240)" in problems
    assert "health not back within 2 s" in problems
