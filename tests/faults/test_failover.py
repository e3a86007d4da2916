"""Issue 12, point 3: the primary ACR SIGKILLed under load and left dead.

A node that fails one call is skipped by the next calls at once, so only the
calls in flight at the crash wait the failover timeout. The issue's figures
(no set-up longer than failover_timeout + 100 ms, under 1 % over 200 ms) are
the bench's (python -m bench faults); here, on a shared machine, the bounds
are looser (SLACK, SLOW_SHARE) and the count that cannot be noisy is exact:
no new call is sent to the dead node once one has failed there.
"""

from __future__ import annotations

import pytest

from bench.faults.callpath import Load
from bench.faults.experiments import failover
from bench.faults.lab import Lab

pytestmark = pytest.mark.e2e

LOAD = Load(rate=50, seconds=18, hold=2, failover_timeout=1.0)
SLACK_MS = 400  # over failover_timeout + 100 ms, for a loaded CI machine
SLOW_SHARE = 0.03  # of the calls over 200 ms (the issue: 1 %)


@pytest.mark.timeout(300)
def test_calls_skip_a_dead_acr_node_once_it_failed_one(mysql_url: str, lab: Lab) -> None:
    outcome = failover(lab, mysql_url, LOAD)
    # Every call answered: one the primary had passed to the carrier when it died is
    # failed over under a fresh Call-ID, a new call to the carrier, not a stray.
    assert outcome.failed == 0 and outcome.refused == 0, outcome.brief()
    assert outcome.sent_to_dead_node == 0, outcome.brief()
    worst = outcome.setup_worst_ms
    assert worst is not None and worst <= LOAD.failover_timeout * 1000 + 100 + SLACK_MS, (
        outcome.brief()
    )
    assert outcome.setup_over(200) <= SLOW_SHARE * outcome.calls, outcome.brief()
