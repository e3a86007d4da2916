"""Issue 12, point 4: Redis SIGKILLed under load and started again, empty.

The shared state heals within 2 s of Redis returning: no call is admitted
past a carrier's capacity (shared by both ACR nodes), nor past an account's
licence (shared by the B2BUAs), once that time is over; the gateway's health
and the carrier's statistics are back. Concurrent calls are counted where
they are real: at the sipp peer that answered them (its 200s and BYEs).
Calls are held 1 to 7 s at random, so calls a restarted Redis never knew
outlive calls it knows: a count that forgot them lets new calls in on top.
"""

from __future__ import annotations

import pytest

from bench.faults.callpath import Load
from bench.faults.lab import Lab
from bench.faults.shared import CONVERGENCE, licence_redis_kill, redis_kill

pytestmark = pytest.mark.e2e

LOAD = Load(rate=40, seconds=18, hold=4, spread=3, failover_timeout=1.0)  # 160 calls up offered
CAPACITY = 60
LICENCE = 40
SLACK_S = 1.0  # over CONVERGENCE, for a loaded CI machine (the bench reports the figure)


@pytest.mark.timeout(300)
def test_a_carrier_s_capacity_holds_and_health_and_statistics_return_after_a_redis_restart(
    mysql_url: str, lab: Lab
) -> None:
    outcome = redis_kill(lab, mysql_url, LOAD, CAPACITY)
    figures = outcome.figures
    assert outcome.answered > 0 and outcome.refused > 0, outcome.brief()  # the capacity did bind
    assert figures["health_before"] == "up", outcome.brief()
    assert outcome.over_limit == 0, outcome.brief()
    assert outcome.peak is not None
    assert outcome.peak <= CAPACITY + figures["admitted_in_outage"], outcome.brief()
    health = outcome.converged_s["health"]
    assert health is not None and health <= CONVERGENCE + SLACK_S, outcome.brief()
    # Nothing counted before the kill was lost for good (decay over the run: < 1 %).
    assert figures["attempts_at_end"] >= 0.95 * figures["carrier_invites"], outcome.brief()
    assert figures["attempts_at_end"] <= 1.1 * figures["carrier_invites"], outcome.brief()


@pytest.mark.timeout(300)
def test_an_account_s_licence_holds_after_a_redis_restart(lab: Lab) -> None:
    outcome = licence_redis_kill(lab, LOAD, LICENCE)
    assert outcome.answered > 0 and outcome.refused > 0, outcome.brief()  # the licence did bind
    assert outcome.over_limit == 0, outcome.brief()
    assert outcome.peak is not None
    assert outcome.peak <= LICENCE + outcome.figures["admitted_in_outage"], outcome.brief()
